"""Self-tests of the fake's workspaces and OAuth installs: the real slack_sdk and Bolt's OAuth flow against it.

An app distributed with OAuth answers each workspace with that workspace's token; these tests pin down
that the fake tells the tokens apart, hands them out the way Slack does and refuses them once revoked, so
that the bot's tests of installs and uninstalls can trust it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from slack_bolt.oauth.oauth_flow import OAuthFlow
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.web import SlackResponse

from tests.fake_slack import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    DEFAULT_BOT_SCOPES,
    INSTALLER_ID,
    TEAM_ID,
    TEAM_NAME,
    TEAM_URL,
    FakeSlack,
    OAuthGrant,
    Workspace,
)
from tests.slack_requests import APP_ID, app_uninstalled, event_callback, mention, message, tokens_revoked
from tests.specs import SLACK_SPECS_DIR

WRAPPER_SCHEMA = SLACK_SPECS_DIR / "slack_common_event_wrapper_schema.json"
EVENT_SAMPLES = SLACK_SPECS_DIR / "samples" / "events"
CLIENT_ID, CLIENT_SECRET = "111.222", "the-client-secret"
OTHER = "T0002"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        server.set_oauth_app(CLIENT_ID, CLIENT_SECRET)
        yield server
        assert server.spec_errors == []


def client(fake: FakeSlack, token: str | None = None) -> WebClient:
    return WebClient(token=token, base_url=fake.base_url)


def data(response: SlackResponse) -> dict[str, Any]:
    """A response's JSON object, typed."""
    assert isinstance(response.data, dict)
    return response.data


def error_of(call: Any) -> str:
    """The Slack error code a WebClient call raised."""
    with pytest.raises(SlackApiError) as raised:
        call()
    error: str = raised.value.response["error"]
    return error


def exchange(fake: FakeSlack, code: str, secret: str = CLIENT_SECRET, **kwargs: Any) -> dict[str, Any]:
    """`oauth.v2.access` as Bolt's OAuth flow calls it: the client credentials go as HTTP basic auth."""
    return data(client(fake).oauth_v2_access(client_id=CLIENT_ID, client_secret=secret, code=code, **kwargs))


# -- workspaces ----------------------------------------------------------------------------------------
def test_each_workspace_answers_auth_test_for_its_own_bot_token(fake: FakeSlack) -> None:
    other = fake.add_workspace(OTHER, name="Other Co", enterprise_id="E0001")

    default = data(client(fake, BOT_TOKEN).auth_test())
    assert default == {
        "ok": True,
        "url": TEAM_URL,
        "team": TEAM_NAME,
        "user": "pixelbot",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }
    assert data(client(fake, other.bot_token).auth_test()) == {
        "ok": True,
        "url": "https://t0002.slack.com/",
        "team": "Other Co",
        "user": "pixelbot",
        "team_id": OTHER,
        "user_id": "UBOT0002",
        "bot_id": "BBOT0002",
        "is_enterprise_install": False,
        "enterprise_id": "E0001",
    }
    assert [call.team_id for call in fake.calls("auth.test")] == [TEAM_ID, OTHER]
    assert other == fake.workspace(OTHER) == Workspace.for_team(OTHER, name="Other Co", enterprise_id="E0001")
    assert fake.workspaces() == [Workspace.for_team(TEAM_ID), other]


def test_any_token_passes_for_the_default_workspace_until_a_second_one_is_added(fake: FakeSlack) -> None:
    assert client(fake, "xoxb-anything").auth_test()["team_id"] == TEAM_ID
    assert not fake.strict_tokens

    fake.add_workspace(OTHER)

    assert fake.strict_tokens
    assert error_of(client(fake, "xoxb-anything").auth_test) == "invalid_auth"
    assert error_of(lambda: client(fake, "xoxb-anything").chat_postMessage(channel="C1", text="hi")) == "invalid_auth"
    assert fake.spec_errors == []  # a bad token is Slack's answer, not a malformed call


def test_a_call_without_a_token_is_still_not_authed(fake: FakeSlack) -> None:
    fake.add_workspace(OTHER)

    assert httpx.post(fake.base_url + "auth.test").json() == {"ok": False, "error": "not_authed"}
    assert len(fake.spec_errors) == 1
    fake.spec_errors.clear()


def test_what_a_bot_posts_shows_its_own_workspace_bot(fake: FakeSlack) -> None:
    other = fake.add_workspace(OTHER)

    posted = client(fake, other.bot_token).chat_postMessage(channel="C2", text="hi")["message"]
    user = client(fake, other.bot_token).users_info(user=other.bot_user_id)["user"]

    assert (posted["user"], posted["bot_id"], posted["team"]) == ("UBOT0002", "BBOT0002", OTHER)
    assert fake.messages("C2")[0]["user"] == "UBOT0002"
    assert (user["team_id"], user["is_bot"]) == (OTHER, True)
    assert client(fake, BOT_TOKEN).chat_postMessage(channel="C1", text="hi")["message"]["user"] == BOT_USER_ID


def test_add_workspace_refuses_a_team_or_token_already_known(fake: FakeSlack) -> None:
    fake.add_workspace(OTHER)

    with pytest.raises(ValueError, match="already known"):
        fake.add_workspace(OTHER)
    with pytest.raises(ValueError, match="already another"):
        fake.add_workspace("T0003", bot_token=BOT_TOKEN)


# -- OAuth ---------------------------------------------------------------------------------------------
def test_a_granted_code_is_exchanged_once_for_the_workspace_bot_token(fake: FakeSlack) -> None:
    grant = fake.grant("code-1", OTHER)
    other = fake.workspace(OTHER)

    answer = exchange(fake, "code-1", redirect_uri="https://bot.example.com/slack/oauth_redirect")

    assert answer == {
        "ok": True,
        "app_id": APP_ID,
        "authed_user": {"id": INSTALLER_ID},
        "scope": DEFAULT_BOT_SCOPES,
        "token_type": "bot",
        "access_token": other.bot_token,
        "bot_user_id": other.bot_user_id,
        "team": {"id": OTHER, "name": other.name},
        "enterprise": None,
        "is_enterprise_install": False,
    }
    assert client(fake, answer["access_token"]).auth_test()["bot_id"] == other.bot_id  # Bolt's next call
    assert fake.used_grants() == [grant]
    call = fake.calls("oauth.v2.access")[0]
    assert call.headers["authorization"].startswith("Basic ") and call.token is None and call.team_id is None
    assert error_of(lambda: exchange(fake, "code-1")) == "invalid_code"
    assert error_of(lambda: exchange(fake, "never-granted")) == "invalid_code"


def test_the_exchange_checks_the_client_credentials_and_redirect_uri(fake: FakeSlack) -> None:
    fake.grant("code-1", OTHER, redirect_uri="https://bot.example.com/slack/oauth_redirect")

    assert error_of(lambda: exchange(fake, "code-1", secret="wrong")) == "bad_client_secret"
    wrong_id = client(fake).oauth_v2_access
    assert error_of(lambda: wrong_id(client_id="999.999", client_secret=CLIENT_SECRET, code="code-1")) == (
        "invalid_client_id"
    )
    assert error_of(lambda: exchange(fake, "code-1", redirect_uri="https://elsewhere.example/")) == "bad_redirect_uri"
    assert fake.used_grants() == []  # refused exchanges leave the code usable

    form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": "code-1"}
    form["redirect_uri"] = "https://bot.example.com/slack/oauth_redirect"
    answer = httpx.post(fake.base_url + "oauth.v2.access", data=form).json()  # credentials as form fields

    assert answer["ok"] and answer["team"]["id"] == OTHER


def test_user_scopes_hand_out_the_installer_token(fake: FakeSlack) -> None:
    fake.grant("code-1", OTHER, user="U0ADMIN", user_scopes="search:read")

    installer = exchange(fake, "code-1")["authed_user"]

    assert installer["id"] == "U0ADMIN" and installer["scope"] == "search:read" and installer["token_type"] == "user"
    identity = data(client(fake, installer["access_token"]).auth_test())
    assert (identity["user_id"], identity["team_id"], "bot_id" in identity) == ("U0ADMIN", OTHER, False)


def test_bolt_oauth_flow_installs_against_the_fake(fake: FakeSlack, tmp_path: Path) -> None:
    store = FileInstallationStore(base_dir=str(tmp_path / "installations"))
    settings = OAuthSettings(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scopes=DEFAULT_BOT_SCOPES.split(","),
        installation_store=store,
        state_store=FileOAuthStateStore(expiration_seconds=60, base_dir=str(tmp_path / "states")),
    )
    fake.grant("code-1", OTHER)

    installation = OAuthFlow(client=client(fake), settings=settings).run_installation("code-1")

    other = fake.workspace(OTHER)
    assert installation is not None
    assert (installation.team_id, installation.bot_token) == (OTHER, other.bot_token)
    assert (installation.bot_id, installation.bot_user_id, installation.user_id) == (
        other.bot_id,
        other.bot_user_id,
        INSTALLER_ID,
    )
    assert fake.calls("auth.test")[0].token == other.bot_token


# -- revocation ----------------------------------------------------------------------------------------
def test_a_revoked_workspace_token_is_refused_until_a_reinstall_hands_out_a_new_one(fake: FakeSlack) -> None:
    other = fake.add_workspace(OTHER)

    fake.revoke(OTHER)

    assert error_of(client(fake, other.bot_token).auth_test) == "token_revoked"
    assert error_of(lambda: client(fake, other.bot_token).chat_postMessage(channel="C2", text="hi")) == (
        "token_revoked"
    )
    assert fake.calls("auth.test")[0].team_id == OTHER
    assert client(fake, BOT_TOKEN).auth_test()["team_id"] == TEAM_ID  # the other workspace is untouched

    fake.grant("code-2", OTHER)
    reinstalled = exchange(fake, "code-2")["access_token"]

    assert reinstalled != other.bot_token and reinstalled == fake.workspace(OTHER).bot_token
    assert client(fake, reinstalled).auth_test()["team_id"] == OTHER
    assert error_of(client(fake, other.bot_token).auth_test) == "token_revoked"


def test_auth_revoke_revokes_the_calling_token_unless_testing(fake: FakeSlack) -> None:
    assert client(fake, BOT_TOKEN).auth_revoke(test=True)["revoked"] is False
    assert client(fake, BOT_TOKEN).auth_test()["ok"]

    assert client(fake, BOT_TOKEN).auth_revoke()["revoked"] is True

    assert error_of(client(fake, BOT_TOKEN).auth_test) == "token_revoked"


def test_reset_forgets_workspaces_grants_and_revocations(fake: FakeSlack) -> None:
    fake.grant("code-1", OTHER)
    fake.revoke(TEAM_ID)

    fake.reset()

    assert fake.workspaces() == [Workspace.for_team(TEAM_ID)] and not fake.strict_tokens
    assert client(fake, BOT_TOKEN).auth_test()["team_id"] == TEAM_ID
    fake.set_oauth_app(CLIENT_ID, CLIENT_SECRET)
    assert error_of(lambda: exchange(fake, "code-1")) == "invalid_code"


def test_grants_are_single_use_codes(fake: FakeSlack) -> None:
    assert fake.grant("code-1", OTHER) == OAuthGrant("code-1", OTHER, INSTALLER_ID, DEFAULT_BOT_SCOPES)
    with pytest.raises(ValueError, match="single-use"):
        fake.grant("code-1", "T0003")


# -- events from other workspaces ----------------------------------------------------------------------
def test_events_name_their_workspace_and_its_bot() -> None:
    schema = json.loads(WRAPPER_SCHEMA.read_text())
    requests = [
        mention("hi", team_id=OTHER),
        message("yo", team_id=OTHER, channel_type="im"),
        app_uninstalled(team_id=OTHER),
        tokens_revoked(bot_users=["UBOT0002"], oauth_users=["U0ADMIN"], team_id=OTHER),
    ]

    for request in requests:
        payload = json.loads(request.body)
        # The wrapper schema asks every event for an event_ts; Slack's samples of the two app events have none.
        jsonschema.validate(payload | {"event": {"event_ts": "1.2"} | payload["event"]}, schema)
        assert payload["team_id"] == payload["authorizations"][0]["team_id"] == OTHER
        assert payload["authorizations"][0]["user_id"] == "UBOT0002"
    assert requests[0].payload["event"]["text"] == "<@UBOT0002> hi"
    assert requests[1].payload["event"]["team"] == OTHER
    assert requests[2].payload["event"] == sample_event("AppUninstalledPayload.json")
    assert requests[3].payload["event"] == {
        "type": "tokens_revoked",
        "tokens": {"oauth": ["U0ADMIN"], "bot": ["UBOT0002"]},
    }
    assert requests[3].payload["event"].keys() == sample_event("TokensRevokedPayload.json").keys()
    assert mention("hi").payload["authorizations"][0]["user_id"] == BOT_USER_ID


def test_events_of_an_enterprise_workspace_name_the_org() -> None:
    payload = mention("hi", team_id=OTHER).payload
    enterprise = json.loads(event_callback({"type": "x", "event_ts": "1.2"}, team_id=OTHER, enterprise_id="E1").body)

    assert "enterprise_id" not in payload and payload["context_enterprise_id"] is None
    assert enterprise["enterprise_id"] == enterprise["context_enterprise_id"] == "E1"
    assert enterprise["authorizations"][0]["enterprise_id"] == "E1"


def sample_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENT_SAMPLES / name).read_text())["event"]
    return event
