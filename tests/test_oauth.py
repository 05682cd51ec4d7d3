"""OAuth distribution: any workspace installs pixelbot through Bolt's flow, each is answered with its
own token, and an uninstall or a revocation stops the bot there (deleting its memory if so set)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agent import ConfigError
from bot.channels import ChannelKey, channels_with_agents
from bot.workspaces import WorkspaceTokens, installation_store
from tests.conftest import RunningBot, bot_settings, serve_in_process, wait_until
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.slack_requests import app_uninstalled, mention, next_ts, slash_command, tokens_revoked

CLIENT = {"SLACK_CLIENT_ID": "1111.2222", "SLACK_CLIENT_SECRET": "client-secret", "SLACK_STATE_SECRET": "state-key"}
OAUTH = CLIENT | {"SLACK_BOT_TOKEN": ""}


@pytest.fixture
def oauth_bot(model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path) -> Iterator[RunningBot]:
    slack.set_oauth_app(CLIENT["SLACK_CLIENT_ID"], CLIENT["SLACK_CLIENT_SECRET"])
    with serve_in_process(bot_settings(slack, model, **OAUTH)) as running:
        yield running


def install(bot: RunningBot, slack: FakeSlack, team_id: str) -> httpx.Response:
    """The install flow, as a browser goes through it: the install page, Slack's consent, the redirect."""
    with httpx.Client(base_url=bot.root_url) as browser:
        page = browser.get("/slack/install")
        assert page.status_code == 200, page.text
        authorize_url = re.search(r'href="(https://slack.com/oauth/v2/authorize[^"]+)"', page.text)
        assert authorize_url is not None, page.text
        state = parse_qs(urlsplit(authorize_url.group(1).replace("&amp;", "&")).query)["state"][0]
        code = f"code-{team_id}-{next_ts()}"
        slack.grant(code, team_id)
        cookie = page.headers["set-cookie"].split(";")[0]  # Secure: a browser sends it back over https only
        return browser.get("/slack/oauth_redirect", params={"code": code, "state": state}, headers={"Cookie": cookie})


def answered_with(slack: FakeSlack, channel_id: str) -> list[str | None]:
    """The workspace of each answer posted in `channel_id`: which token it was posted with."""
    return [call.team_id for call in slack.calls("chat.postMessage") if call.params["channel"] == channel_id]


def test_two_workspaces_install_and_each_is_answered_with_its_own_token(
    oauth_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    for team in ("T0002", "T0003"):
        done = install(oauth_bot, slack, team)
        assert done.status_code == 200, done.text
    assert [grant.team_id for grant in slack.used_grants()] == ["T0002", "T0003"]

    for team, channel in (("T0002", channel_id), ("T0003", channel_id[:-1] + "Z")):
        oauth_bot.send(mention(f"hello from {team}", channel=channel, team_id=team))
        wait_until(lambda channel=channel: bool(answered_with(slack, channel)), timeout=30, what=f"{team}'s answer")  # type: ignore[misc]

    assert answered_with(slack, channel_id) == ["T0002"]
    assert answered_with(slack, channel_id[:-1] + "Z") == ["T0003"]
    assert not slack.spec_errors


def test_a_forged_oauth_state_installs_nothing(oauth_bot: RunningBot, slack: FakeSlack) -> None:
    slack.grant("code-forged", "T0004")
    with httpx.Client(base_url=oauth_bot.root_url) as browser:
        done = browser.get("/slack/oauth_redirect", params={"code": "code-forged", "state": "made-up.0000"})
    assert done.status_code != 200
    assert slack.used_grants() == []


def test_an_uninstalled_workspace_is_no_longer_answered_and_its_memory_is_kept_by_default(
    oauth_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    install(oauth_bot, slack, "T0002")
    oauth_bot.send(mention("remember me", channel=channel_id, team_id="T0002"))
    wait_until(lambda: bool(answered_with(slack, channel_id)), timeout=30, what="the answer")
    assert oauth_bot.bot.answerer.wait_idle(30)

    assert oauth_bot.send(app_uninstalled(team_id="T0002")).status == 200
    oauth_bot.send(mention("are you there?", channel=channel_id, team_id="T0002"))

    assert oauth_bot.bot.answerer.wait_idle(30)
    assert answered_with(slack, channel_id) == ["T0002"], "nothing more is sent in its name"
    memory = oauth_bot.bot.agents.get(ChannelKey("T0002", channel_id)).tables.memory
    assert memory.count() == 2, "kept (PIXELBOT_ON_UNINSTALL=keep)"


def test_on_uninstall_delete_removes_the_workspaces_memory(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    slack.set_oauth_app(CLIENT["SLACK_CLIENT_ID"], CLIENT["SLACK_CLIENT_SECRET"])
    with serve_in_process(bot_settings(slack, model, **OAUTH, PIXELBOT_ON_UNINSTALL="delete")) as bot:
        install(bot, slack, "T0002")
        bot.send(mention("remember me", channel=channel_id, team_id="T0002"))
        wait_until(lambda: bool(answered_with(slack, channel_id)), timeout=30, what="the answer")
        assert bot.bot.answerer.wait_idle(30)
        agent = bot.bot.agents.get(ChannelKey("T0002", channel_id))

        bot.send(app_uninstalled(team_id="T0002"))

        wait_until(lambda: agent.tables.memory.count() == 0, timeout=30, what="the memory deleted")


def test_a_revoked_bot_token_is_deleted(oauth_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    install(oauth_bot, slack, "T0002")
    bot_user = slack.workspace("T0002").bot_user_id
    slack.revoke("T0002")

    assert oauth_bot.send(tokens_revoked(bot_users=[bot_user], team_id="T0002")).status == 200
    oauth_bot.send(mention("still there?", channel=channel_id, team_id="T0002"))

    assert oauth_bot.bot.answerer.wait_idle(30)
    assert answered_with(slack, channel_id) == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"SLACK_CLIENT_ID": "1", "SLACK_BOT_TOKEN": ""}, "missing: SLACK_CLIENT_SECRET, SLACK_STATE_SECRET"),
        (CLIENT, "not both"),  # beside SLACK_BOT_TOKEN
    ],
)
def test_oauth_settings_are_all_or_nothing(
    model: ScriptedOpenAI, slack: FakeSlack, given: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        bot_settings(slack, model, **given)


def test_a_channel_shared_by_two_workspaces_has_one_memory_and_each_side_is_answered_with_its_token(
    oauth_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    """A Slack Connect channel: its events arrive through either workspace, with that team's ID."""
    for team in ("T0002", "T0003"):
        assert install(oauth_bot, slack, team).status_code == 200
    shared = {"is_ext_shared_channel": True}
    oauth_bot.send(mention("the launch code is 4711", channel=channel_id, team_id="T0002", extra=shared))
    wait_until(lambda: len(answered_with(slack, channel_id)) == 1, timeout=30, what="the first answer")
    oauth_bot.send(mention("what is the launch code?", channel=channel_id, team_id="T0003", extra=shared))
    wait_until(lambda: len(answered_with(slack, channel_id)) == 2, timeout=30, what="the second answer")

    assert answered_with(slack, channel_id) == ["T0002", "T0003"]
    assert "the launch code is 4711" in str(model.requests[-1]["messages"])  # one memory, seen from both sides
    assert oauth_bot.bot.answerer.wait_idle(30), "the turns not stored"  # answers are posted before they are stored
    mine = [key for key in channels_with_agents() if key.channel_id == channel_id]
    assert mine == [ChannelKey("T0002", channel_id)]


def test_a_shared_channel_event_is_answered_by_the_installation_it_is_visible_to(
    oauth_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    """Slack Connect: the event happened in the host workspace (the envelope's `team_id`), which never
    installed pixelbot; `authorizations` names the installation that sees it, and its token answers."""
    assert install(oauth_bot, slack, "T0002").status_code == 200
    slack.add_workspace("T0HOST")
    shared = {"is_ext_shared_channel": True}
    oauth_bot.send(mention("hello across orgs", channel=channel_id, team_id="T0HOST", authorized_team="T0002",
                           extra=shared))  # fmt: skip
    wait_until(lambda: bool(answered_with(slack, channel_id)), timeout=30, what="the answer")

    assert answered_with(slack, channel_id) == ["T0002"]


def test_an_org_wide_install_answers_every_workspace_of_the_organisation_with_its_token(
    oauth_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    """Enterprise Grid: one installation for the whole organisation. Its events name the workspace they
    came from but no installing team; each is answered with the organisation's token, also after a
    restart (which workspace belongs to which organisation is kept), and its uninstall stops them all."""
    grant = f"code-org-{next_ts()}"
    with httpx.Client(base_url=oauth_bot.root_url) as browser:
        page = browser.get("/slack/install")
        url = re.search(r'href="(https://slack.com/oauth/v2/authorize[^"]+)"', page.text)
        assert url is not None
        state = parse_qs(urlsplit(url.group(1).replace("&amp;", "&")).query)["state"][0]
        slack.grant(grant, "E0ORG", org_wide=True)
        cookie = page.headers["set-cookie"].split(";")[0]
        done = browser.get("/slack/oauth_redirect", params={"code": grant, "state": state}, headers={"Cookie": cookie})
    assert done.status_code == 200, done.text
    org_bot = slack.workspace("E0ORG").bot_user_id
    for team, channel in (("T0GRID1", channel_id), ("T0GRID2", channel_id[:-1] + "Z")):
        oauth_bot.send(mention(f"hello from {team}", channel=channel, team_id=team, enterprise_id="E0ORG",
                               org_wide=True, bot_user_id=org_bot))  # fmt: skip
        wait_until(lambda channel=channel: bool(answered_with(slack, channel)), timeout=30, what=f"{team}'s answer")  # type: ignore[misc]

    assert answered_with(slack, channel_id) == ["E0ORG"]
    assert answered_with(slack, channel_id[:-1] + "Z") == ["E0ORG"]
    command = slash_command("/tool", "what time is it?", team_id="T0GRID3", channel_id=channel_id,
                            enterprise_id="E0ORG", org_wide=True, response_url=slack.response_url("org"))  # fmt: skip
    assert oauth_bot.send(command).status == 200
    [answer] = slack.wait_for_responses(1, name="org", timeout=30)
    assert answer.payload["text"] == "echo: what time is it?", "answered with the organisation's installation"
    engine, namespace = oauth_bot.bot.inbox.engine, oauth_bot.bot.inbox.namespace
    after_restart = WorkspaceTokens(installation_store(CLIENT["SLACK_CLIENT_ID"], engine, namespace), engine, namespace)
    assert after_restart.token("T0GRID1") == slack.workspace("E0ORG").bot_token

    uninstalled = app_uninstalled(team_id="T0GRID1", enterprise_id="E0ORG", org_wide=True, bot_user_id=org_bot)
    assert oauth_bot.send(uninstalled).status == 200
    oauth_bot.send(mention("still there?", channel=channel_id, team_id="T0GRID1", enterprise_id="E0ORG",
                           org_wide=True, bot_user_id=org_bot))  # fmt: skip
    assert oauth_bot.bot.answerer.wait_idle(30)
    assert answered_with(slack, channel_id) == ["E0ORG"], "nothing more is sent in its name"
    assert not slack.spec_errors
