"""Signed HTTP requests exactly as Slack sends them to an app, and a client that posts them.

End-to-end tests drive the bot through its real HTTP endpoint: Events API `event_callback`s (JSON),
slash commands (form-encoded), interactivity payloads (a form whose one `payload` field is JSON) and
`url_verification`, each signed with the v0 HMAC-SHA256 scheme so the app's request verification runs
for real. Events are addressed to the bot of `tests.fake_slack`: by default the one of its default
workspace, with `team_id` that of another workspace (`FakeSlack.add_workspace`), as an app distributed
with OAuth receives every workspace's events at the one Request URL.

    request = mention("hello", channel="C1")
    assert sender.send(app_url, request).status == 200
    sender.send(app_url, request.retry(1))  # Slack's redelivery: same body, retry headers
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlencode

import httpx

from tests.fake_slack import BOT_ID, Workspace
from tests.fake_slack import BOT_USER_ID as BOT_USER_ID
from tests.fake_slack import TEAM_ID as TEAM_ID

SIGNING_SECRET = "test-signing-secret"
VERIFICATION_TOKEN = "test-verification-token"
APP_ID = "A0001"
TEAM_DOMAIN = "pixelbot-test"
CHANNEL_ID = "C0001"
CHANNEL_NAME = "general"
USER_ID = "U0001"
USER_NAME = "alice"
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

_RUN = uuid.uuid4().hex[:6].upper()  # keeps event ids unique across runs sharing a database
_counter = itertools.count(1)
_ts_lock = threading.Lock()
_last_ts_micros = 0


def unique_id(prefix: str) -> str:
    """An id unique in this process and very likely across runs, e.g. `Ev3F9A1C000007`."""
    return f"{prefix}{_RUN}{next(_counter):06d}"


def next_ts() -> str:
    """A message ts from the wall clock, strictly increasing within the process."""
    global _last_ts_micros
    with _ts_lock:
        _last_ts_micros = max(time.time_ns() // 1000, _last_ts_micros + 1)
        return f"{_last_ts_micros // 1_000_000}.{_last_ts_micros % 1_000_000:06d}"


def sign(body: bytes, *, signing_secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers: HMAC-SHA256 of `v0:{timestamp}:{body}` keyed by the signing secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(signing_secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


@dataclass(frozen=True)
class SlackRequest:
    """A request ready to POST to the app: the exact body bytes, headers, and the decoded payload."""

    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]
    """The JSON object (events), the form fields (slash commands) or the interaction payload (the JSON
    in the form's `payload` field) that `body` encodes."""
    signing_secret: str = field(default=SIGNING_SECRET, repr=False)

    def signed(self, *, signing_secret: str | None = None, timestamp: int | None = None) -> SlackRequest:
        """Signed again, now or with another secret or timestamp (to test refusal of forged/stale ones)."""
        secret = self.signing_secret if signing_secret is None else signing_secret
        headers = {**self.headers, **sign(self.body, signing_secret=secret, timestamp=timestamp)}
        return dataclasses.replace(self, headers=headers, signing_secret=secret)

    def retry(self, num: int = 1, reason: str = "http_timeout") -> SlackRequest:
        """Slack's redelivery of this request: same body (same event_id), fresh signature, retry headers."""
        fresh = self.signed()
        headers = {**fresh.headers, "X-Slack-Retry-Num": str(num), "X-Slack-Retry-Reason": reason}
        return dataclasses.replace(fresh, headers=headers)


def _request(payload: dict[str, Any], *, form: bool, signing_secret: str) -> SlackRequest:
    if form:
        body, content_type = urlencode(payload).encode(), "application/x-www-form-urlencoded"
    else:
        body, content_type = json.dumps(payload).encode(), "application/json"
    headers = {"Content-Type": content_type, "User-Agent": SLACK_USER_AGENT}
    headers |= sign(body, signing_secret=signing_secret)
    return SlackRequest(body, headers, payload, signing_secret)


def event_callback(
    event: Mapping[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str | None = None,
    enterprise_id: str | None = None,
    signing_secret: str = SIGNING_SECRET,
    authorized_team: str | None = None,
    org_wide: bool = False,
) -> SlackRequest:
    """Any Events API event wrapped in an `event_callback`, as Slack delivers it to the bot `bot_user_id`
    (default: the bot of workspace `team_id`, see `bot_user_of`) of workspace `team_id`; in a shared
    channel the installation it is visible to may be another workspace's (`authorized_team`), and with
    `org_wide` it is organisation `enterprise_id`'s org-wide installation.

    The workspace is named where Bolt looks for it to find the installation whose token answers: the
    envelope's `team_id` (and `enterprise_id`, for a workspace of an Enterprise Grid org) and `authorizations`.
    """
    bot_user_id = bot_user_id or bot_user_of(authorized_team or team_id)
    authorization = {
        "enterprise_id": enterprise_id,
        "team_id": None if org_wide else authorized_team or team_id,  # an org-wide install names no team
        "user_id": bot_user_id,
        "is_bot": True,
        "is_enterprise_install": org_wide,
    }
    payload = {
        "token": VERIFICATION_TOKEN,
        **({"enterprise_id": enterprise_id} if enterprise_id else {}),
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or unique_id("Ev"),
        "event_time": int(time.time()),
        "authorizations": [authorization],
        "is_ext_shared_channel": False,
        "event_context": unique_id("4-"),
        "authed_users": [bot_user_id],
    }
    return _request(payload, form=False, signing_secret=signing_secret)


def bot_user_of(team_id: str) -> str:
    """The bot's user ID in workspace `team_id`, as `FakeSlack.add_workspace(team_id)` derives it (a test
    that names another one passes it as `bot_user_id`)."""
    return Workspace.for_team(team_id).bot_user_id


def _message_event(
    kind: str, text: str, channel: str, user: str, ts: str | None, thread_ts: str | None, team_id: str
) -> dict[str, Any]:
    ts = ts or next_ts()
    event = {
        "type": kind,
        "client_msg_id": str(uuid.uuid4()),
        "user": user,
        "text": text,
        "ts": ts,
        "team": team_id,
        "channel": channel,
        "event_ts": ts,
    }
    return event if thread_ts is None else event | {"thread_ts": thread_ts}


def mention(
    text: str,
    *,
    channel: str = CHANNEL_ID,
    user: str = USER_ID,
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    bot_user_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    files: list[dict[str, Any]] | None = None,
    signing_secret: str = SIGNING_SECRET,
    authorized_team: str | None = None,
    enterprise_id: str | None = None,
    org_wide: bool = False,
) -> SlackRequest:
    """An `app_mention` event in workspace `team_id`, seen by the installation of `authorized_team`
    (default: `team_id`'s). `text` is prefixed with `<@bot_user_id> ` (default: that installation's bot)
    unless it already mentions the bot.

    `files` (Slack file objects, e.g. from `FakeSlack.host_file`) are the files attached to the mention;
    `extra` fields are merged into the event last.
    """
    bot_user_id = bot_user_id or bot_user_of(authorized_team or team_id)
    mention_tag = f"<@{bot_user_id}>"
    text = text if mention_tag in text else f"{mention_tag} {text}"
    event = _message_event("app_mention", text, channel, user, ts, thread_ts, team_id) | _files(files)
    event |= dict(extra or {})
    return event_callback(
        event, event_id=event_id, team_id=team_id, bot_user_id=bot_user_id, signing_secret=signing_secret,
        authorized_team=authorized_team, enterprise_id=enterprise_id, org_wide=org_wide,
    )  # fmt: skip


def message(
    text: str,
    *,
    channel: str = CHANNEL_ID,
    user: str = USER_ID,
    channel_type: str = "channel",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    bot_user_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    files: list[dict[str, Any]] | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """A `message` event in workspace `team_id`, delivered to its bot (or `bot_user_id`); `channel_type`
    is "channel", "group", "im" or "mpim".

    With `files` (Slack file objects, e.g. from `FakeSlack.host_file`) it is a `file_share` message, as
    Slack sends a message with attachments, unless `extra` gives another subtype. `extra` fields are
    merged into the event last, e.g. `{"bot_id": "BBOT"}` for the bot's own message or
    `{"subtype": "message_changed"}`.
    """
    event = _message_event("message", text, channel, user, ts, thread_ts, team_id) | {"channel_type": channel_type}
    if files is not None:
        event |= {"subtype": "file_share", "upload": False, "display_as_bot": False} | _files(files)
    return event_callback(
        event | dict(extra or {}),
        event_id=event_id,
        team_id=team_id,
        bot_user_id=bot_user_id,
        signing_secret=signing_secret,
    )


def _files(files: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The `files` field of a message event, copied so that a test changing its file objects later
    cannot change a request already built."""
    return {} if files is None else {"files": copy.deepcopy(files)}


def file_deleted(
    file_id: str,
    *,
    channel_ids: list[str] | None = None,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """`file_deleted`: a user deleted the file `file_id` (the bot should forget what it kept of it).

    Recent payloads also list the channels the file was shared in, as `channel_ids`; None leaves it out.
    """
    event: dict[str, Any] = {"type": "file_deleted", "file_id": file_id, "event_ts": next_ts()}
    if channel_ids is not None:
        event["channel_ids"] = list(channel_ids)
    return event_callback(event, event_id=event_id, team_id=team_id, signing_secret=signing_secret)


def app_uninstalled(
    *,
    team_id: str = TEAM_ID,
    bot_user_id: str | None = None,
    event_id: str | None = None,
    signing_secret: str = SIGNING_SECRET,
    enterprise_id: str | None = None,
    org_wide: bool = False,
) -> SlackRequest:
    """`app_uninstalled`: the app was removed from workspace `team_id` (with `org_wide`, from organisation
    `enterprise_id`), whose tokens Slack has revoked (`FakeSlack.revoke`); the app should forget the
    installation. The event has no other field."""
    return event_callback(
        {"type": "app_uninstalled"},
        event_id=event_id,
        team_id=team_id,
        bot_user_id=bot_user_id,
        signing_secret=signing_secret,
        enterprise_id=enterprise_id,
        org_wide=org_wide,
    )


def tokens_revoked(
    *,
    bot_users: list[str],
    oauth_users: list[str] | None = None,
    team_id: str = TEAM_ID,
    bot_user_id: str | None = None,
    event_id: str | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """`tokens_revoked`: tokens of workspace `team_id` were revoked, named by the user IDs they spoke for:
    `bot_users` the bot users whose bot tokens died, `oauth_users` the users whose user tokens did."""
    tokens = {"oauth": list(oauth_users or []), "bot": list(bot_users)}
    return event_callback(
        {"type": "tokens_revoked", "tokens": tokens},
        event_id=event_id,
        team_id=team_id,
        bot_user_id=bot_user_id,
        signing_secret=signing_secret,
    )


def slash_command(
    command: str,
    text: str = "",
    *,
    response_url: str,
    channel_id: str = CHANNEL_ID,
    channel_name: str = CHANNEL_NAME,
    user_id: str = USER_ID,
    user_name: str = USER_NAME,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    signing_secret: str = SIGNING_SECRET,
    enterprise_id: str | None = None,
    org_wide: bool = False,
) -> SlackRequest:
    """A slash command invocation (form-encoded); pass `FakeSlack.response_url(name)` as `response_url`.
    In a workspace of organisation `enterprise_id` (that installed the app org-wide, with `org_wide`)."""
    payload = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        **({"enterprise_id": enterprise_id} if enterprise_id else {}),
        "is_enterprise_install": "true" if org_wide else "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{next(_counter)}.{int(time.time())}.{uuid.uuid4().hex}",
    }
    return _request(payload, form=True, signing_secret=signing_secret)


def dm_channel(user: str) -> str:
    """The ID of the bot's direct-message channel with `user` (made up, stable per user)."""
    return f"D{user[1:]}"


def app_home_opened(
    *,
    user: str = USER_ID,
    tab: str = "home",
    channel: str | None = None,
    event_id: str | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """`app_home_opened`: `user` opened the app's Home ("home") or its DM ("messages") tab.

    Like Slack, a "home" event carries the view the app published last (a user who opened it before).
    """
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user,
        "channel": channel or dm_channel(user),
        "tab": tab,
        "event_ts": next_ts(),
    }
    if tab == "home":
        event["view"] = _published_home_view()
    return event_callback(event, event_id=event_id, signing_secret=signing_secret)


def _published_home_view() -> dict[str, Any]:
    return {
        "id": unique_id("V"),
        "team_id": TEAM_ID,
        "type": "home",
        "blocks": [{"type": "section", "block_id": "about", "text": {"type": "mrkdwn", "text": "Hi"}}],
        "private_metadata": "",
        "callback_id": "",
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
        "app_id": APP_ID,
        "app_installed_team_id": TEAM_ID,
        "bot_id": BOT_ID,
    }


def _assistant_thread_event(
    kind: str,
    user: str,
    channel: str | None,
    thread_ts: str | None,
    context_channel: str | None,
    event_id: str | None,
    signing_secret: str,
) -> SlackRequest:
    context = {"channel_id": context_channel, "team_id": TEAM_ID, "enterprise_id": None} if context_channel else {}
    event = {
        "type": kind,
        "assistant_thread": {
            "user_id": user,
            "context": context,
            "channel_id": channel or dm_channel(user),
            "thread_ts": thread_ts or next_ts(),
        },
        "event_ts": next_ts(),
    }
    return event_callback(event, event_id=event_id, signing_secret=signing_secret)


def assistant_thread_started(
    *,
    user: str = USER_ID,
    channel: str | None = None,
    thread_ts: str | None = None,
    context_channel: str | None = None,
    event_id: str | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """`user` opened a thread with the assistant (in the DM `channel`, default theirs) while looking at
    `context_channel` (None: at no channel, so the context is empty)."""
    return _assistant_thread_event(
        "assistant_thread_started", user, channel, thread_ts, context_channel, event_id, signing_secret
    )


def assistant_thread_context_changed(
    *,
    user: str = USER_ID,
    channel: str | None = None,
    thread_ts: str | None = None,
    context_channel: str | None = None,
    event_id: str | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """With the assistant thread open, `user` moved to `context_channel`."""
    return _assistant_thread_event(
        "assistant_thread_context_changed", user, channel, thread_ts, context_channel, event_id, signing_secret
    )


def interactive(payload: Mapping[str, Any], *, signing_secret: str = SIGNING_SECRET) -> SlackRequest:
    """Any interaction payload as Slack POSTs it: form-encoded, its JSON in the one field `payload`."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": SLACK_USER_AGENT}
    headers |= sign(body, signing_secret=signing_secret)
    return SlackRequest(body, headers, dict(payload), signing_secret)


def block_action(
    action_id: str,
    value: str,
    *,
    message_ts: str,
    response_url: str,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    thread_ts: str | None = None,
    block_id: str = "pixelbot_actions",
    element_type: str = "button",
    metadata: Mapping[str, Any] | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """A `block_actions` payload: `user` clicked the `element_type` element `action_id` (a "button", or
    one of the "feedback_buttons", which sends the chosen button's `value`) of the bot's message
    `message_ts` in `channel`. `metadata` is the message's, as the bot posted it."""
    element = _clicked_element(element_type, action_id, value)
    message = _clicked_message(message_ts, thread_ts, block_id, element_type, element, metadata)
    container = {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False}
    if thread_ts is not None:
        container["thread_ts"] = thread_ts
    action = {
        "type": element_type,
        "action_id": action_id,
        "block_id": block_id,
        "text": element["text"] if element_type == "button" else {"type": "plain_text", "text": "👍"},
        "value": value,
        "action_ts": next_ts(),
    }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": USER_NAME, "name": USER_NAME, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": f"{next(_counter)}.{int(time.time())}.{uuid.uuid4().hex}",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": CHANNEL_NAME},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    return interactive(payload, signing_secret=signing_secret)


def _clicked_element(element_type: str, action_id: str, value: str) -> dict[str, Any]:
    if element_type == "feedback_buttons":
        return {
            "type": "feedback_buttons",
            "action_id": action_id,
            "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": value},
            "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": f"not {value}"},
        }
    return {"type": element_type, "action_id": action_id, "text": {"type": "plain_text", "text": "OK"}, "value": value}


def _clicked_message(
    ts: str,
    thread_ts: str | None,
    block_id: str,
    element_type: str,
    element: dict[str, Any],
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The bot's message holding the element, as Slack includes it in the payload."""
    block_type = "context_actions" if element_type == "feedback_buttons" else "actions"
    message: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": "an answer",
        "ts": ts,
        "team": TEAM_ID,
        "blocks": [
            {"type": "section", "block_id": "answer", "text": {"type": "mrkdwn", "text": "an answer"}},
            {"type": block_type, "block_id": block_id, "elements": [element]},
        ],
    }
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
    if metadata is not None:
        message["metadata"] = dict(metadata)
    return message


def view_submission(
    view: Mapping[str, Any],
    answers: Mapping[str, Any] | None = None,
    *,
    user: str = USER_ID,
    team_id: str = TEAM_ID,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """`user` submitted the modal `view` (as `views.open` answered it). Like Slack, the state holds
    every input: what `answers` gives by block_id (a text, an option's value, a list of values, or
    None for emptied), else the input's initial value."""
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user, "username": USER_NAME, "name": USER_NAME, "team_id": team_id},
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": f"{next(_counter)}.{int(time.time())}.{uuid.uuid4().hex}",
        "view": dict(view) | {"state": {"values": modal_state(view, answers or {})}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return interactive(payload, signing_secret=signing_secret)


_UNSET = object()


def modal_state(view: Mapping[str, Any], answers: Mapping[str, Any]) -> dict[str, Any]:
    """`view.state.values` as Slack sends it: `{block_id: {action_id: {"type": ..., value}}}`."""
    values: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        kind, given = element["type"], answers.get(block["block_id"], _UNSET)
        options = {option["value"]: option for option in element.get("options", [])}
        state: dict[str, Any] = {"type": kind}
        if kind in ("plain_text_input", "number_input"):
            state["value"] = element.get("initial_value") if given is _UNSET else given
        elif kind in ("static_select", "radio_buttons"):
            forged = {"text": {"type": "plain_text", "text": str(given)}, "value": given}  # not offered
            state["selected_option"] = element.get("initial_option") if given is _UNSET else options.get(given, forged)
        else:  # checkboxes, multi_static_select
            chosen = element.get("initial_options", []) if given is _UNSET else [options[v] for v in given]
            state["selected_options"] = chosen
        values[block["block_id"]] = {element["action_id"]: state}
    return values


def url_verification(challenge: str | None = None, *, signing_secret: str = SIGNING_SECRET) -> SlackRequest:
    """The handshake Slack sends when a Request URL is configured; the app must echo `challenge`."""
    payload = {
        "token": VERIFICATION_TOKEN,
        "challenge": challenge or uuid.uuid4().hex,
        "type": "url_verification",
    }
    return _request(payload, form=False, signing_secret=signing_secret)


class AppResponse(NamedTuple):
    """The app's HTTP answer to a request from Slack; unpacks as `(status, body)`."""

    status: int
    body: bytes
    elapsed: float
    """Seconds until the answer: Slack gives up (and retries events) after 3."""

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class SlackSender:
    """Posts requests to the app under test as Slack's servers would."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._client = httpx.Client(timeout=timeout)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AppResponse:
        started = time.monotonic()
        response = self._client.post(url, content=body, headers=dict(headers))
        return AppResponse(response.status_code, response.content, time.monotonic() - started)

    def send(self, url: str, request: SlackRequest) -> AppResponse:
        return self.post(url, request.body, request.headers)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SlackSender:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
