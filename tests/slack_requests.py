"""Signed HTTP requests exactly as Slack sends them to an app, and a client that posts them.

End-to-end tests drive the bot through its real HTTP endpoint: Events API `event_callback`s (JSON),
slash commands (form-encoded) and `url_verification`, each signed with the v0 HMAC-SHA256 scheme so
the app's request verification runs for real. Events are addressed to the bot of `tests.fake_slack`.

    request = mention("hello", channel="C1")
    assert sender.send(app_url, request).status == 200
    sender.send(app_url, request.retry(1))  # Slack's redelivery: same body, retry headers
"""

from __future__ import annotations

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
    """The JSON object (events) or the form fields (slash commands) that `body` encodes."""
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
    bot_user_id: str = BOT_USER_ID,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """Any Events API event wrapped in an `event_callback`, as Slack delivers it to the bot `bot_user_id`."""
    authorization = {
        "enterprise_id": None,
        "team_id": team_id,
        "user_id": bot_user_id,
        "is_bot": True,
        "is_enterprise_install": False,
    }
    payload = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
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


def _message_event(
    kind: str, text: str, channel: str, user: str, ts: str | None, thread_ts: str | None
) -> dict[str, Any]:
    ts = ts or next_ts()
    event = {
        "type": kind,
        "client_msg_id": str(uuid.uuid4()),
        "user": user,
        "text": text,
        "ts": ts,
        "team": TEAM_ID,
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
    bot_user_id: str = BOT_USER_ID,
    extra: Mapping[str, Any] | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """An `app_mention` event. `text` is prefixed with `<@bot_user_id> ` unless it already mentions the bot.

    `extra` fields are merged into the event (e.g. `{"files": [...]}`).
    """
    mention_tag = f"<@{bot_user_id}>"
    text = text if mention_tag in text else f"{mention_tag} {text}"
    event = _message_event("app_mention", text, channel, user, ts, thread_ts) | dict(extra or {})
    return event_callback(event, event_id=event_id, bot_user_id=bot_user_id, signing_secret=signing_secret)


def message(
    text: str,
    *,
    channel: str = CHANNEL_ID,
    user: str = USER_ID,
    channel_type: str = "channel",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    signing_secret: str = SIGNING_SECRET,
) -> SlackRequest:
    """A `message` event; `channel_type` is "channel", "group", "im" or "mpim".

    `extra` fields are merged into the event, e.g. `{"bot_id": "BBOT"}` for the bot's own message or
    `{"subtype": "message_changed"}`.
    """
    event = _message_event("message", text, channel, user, ts, thread_ts) | {"channel_type": channel_type}
    return event_callback(event | dict(extra or {}), event_id=event_id, signing_secret=signing_secret)


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
) -> SlackRequest:
    """A slash command invocation (form-encoded); pass `FakeSlack.response_url(name)` as `response_url`."""
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
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{next(_counter)}.{int(time.time())}.{uuid.uuid4().hex}",
    }
    return _request(payload, form=True, signing_secret=signing_secret)


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
