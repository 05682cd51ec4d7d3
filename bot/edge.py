"""The edge: every request to the Slack endpoint is checked and normalised here, before anything trusts it.

Anyone can POST to the bot, and even a signed request may carry what the rest of the bot can't take (a
channel ID like `../../x`, `event: null`, a lone surrogate that no database can store). So `Edge.screen`,
the one entry point, runs before Bolt sees the request and before anything is stored:

1. size: bodies over `MAX_BODY` get 413 (Slack's payloads are a few KB; `bot.server` also has waitress
   refuse them before it buffers them);
2. signature: Slack's v0 HMAC over the raw bytes, 5-minute replay window; 401 otherwise. Done here, not
   by Bolt, because Bolt parses the body before checking it and logs the body of every refused request;
3. parsing: UTF-8, then JSON (events) or a form (slash commands); garbage gets 400;
4. validation: every field the bot uses, by type and by Slack's ID formats, copied into a new payload
   that holds nothing else; text with characters that can't be encoded is repaired. Socket Mode
   payloads (parsed and authenticated by the WebSocket) go through this step too (`screen_payload`).

A signed request that fails step 4 comes from Slack (or someone with the signing secret) and would only
fail again, so it gets a 200 (an ephemeral note for a slash command) that Slack won't retry. Each
refusal is one WARNING line naming the reason, never the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.replies import COMMAND_REFUSED

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes
REPLAY_WINDOW = 5 * 60  # seconds a signature stays valid, as Slack (and Bolt) have it
MAX_FORM_FIELDS = 64
MAX_URL = 2048

TEAM_ID = re.compile(r"[TE][A-Z0-9]{1,31}", re.ASCII)  # a workspace, or an Enterprise Grid org
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{1,31}", re.ASCII)  # public, private (or group DM), DM
USER_ID = re.compile(r"[UW][A-Z0-9]{1,31}", re.ASCII)  # W: Enterprise Grid users
TS = re.compile(r"\d{1,20}\.\d{1,20}", re.ASCII)
EVENT_ID = re.compile(r"Ev[A-Za-z0-9]{1,62}", re.ASCII)
TRIGGER_ID = re.compile(r"[A-Za-z0-9.]{1,255}", re.ASCII)
NAME = re.compile(r"[a-z_]{1,64}", re.ASCII)  # event types, subtypes, channel types
COMMAND = re.compile(r"/[a-z0-9_-]{1,31}", re.ASCII)
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{1,256}", re.ASCII)
REQUEST_TIMESTAMP = re.compile(r"\d{1,12}", re.ASCII)
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}", re.ASCII)
_SURROGATES = re.compile("[\ud800-\udfff]")  # only lone ones survive JSON decoding; UTF-8 can't encode them

MESSAGE_EVENTS = frozenset({"app_mention", "message"})
INVALID_SIGNATURE = {"error": "invalid request"}


@dataclass(frozen=True)
class Admitted:
    """A request that passed: `payload` holds only validated, normalised fields, in Slack's shape."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    """A request that did not: the HTTP answer to give, and the reason to log (never the body)."""

    status: int
    body: dict[str, Any] | str
    reason: str


Verdict = Admitted | Refused


class InvalidFieldError(ValueError):
    """A field of a signed payload the bot can't use; the message names the field, not its value."""


class Edge:
    """Screens requests to the Slack endpoint with the app's signing secret."""

    def __init__(self, signing_secret: str) -> None:
        self._secret = signing_secret.encode()

    def screen(self, body: bytes, headers: Mapping[str, str]) -> Verdict:
        """Admit the request, normalised, or refuse it with one WARNING line; `headers` have lowercase names."""
        verdict = self._screen(body, headers)
        if isinstance(verdict, Refused):
            logger.warning("refused a Slack request (HTTP %d, %d bytes): %s", verdict.status, len(body), verdict.reason)
        return verdict

    def _screen(self, body: bytes, headers: Mapping[str, str]) -> Verdict:
        if len(body) > MAX_BODY:
            return Refused(413, {"error": "request too large"}, f"body over {MAX_BODY} bytes")
        if not self._signed(body, headers):
            return Refused(401, INVALID_SIGNATURE, "missing, bad or stale signature")
        try:
            payload = _parse(body, headers.get("content-type", ""))
        except (ValueError, RecursionError) as error:  # RecursionError: JSON nested too deep to decode
            return Refused(
                400, {"error": "malformed body"}, f"signed, but the body is unreadable ({type(error).__name__})"
            )
        return _screen_payload(payload)

    @staticmethod
    def screen_payload(payload: Mapping[str, Any]) -> Verdict:
        """Steps 4 alone, for payloads that arrive parsed and authenticated (Socket Mode)."""
        verdict = _screen_payload(payload)
        if isinstance(verdict, Refused):
            logger.warning("refused a Slack request (Socket Mode): %s", verdict.reason)
        return verdict

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Slack's v0 signature: HMAC-SHA256 of `v0:{timestamp}:{body}`, over the raw bytes.

        Not slack_sdk's `SignatureVerifier`: it decodes the body as UTF-8 first, and raises on bytes that
        aren't, or on a timestamp that isn't a number.
        """
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not (REQUEST_TIMESTAMP.fullmatch(timestamp) and SIGNATURE.fullmatch(signature)):
            return False
        if abs(time.time() - int(timestamp)) > REPLAY_WINDOW:
            return False
        signed = b"v0:" + timestamp.encode() + b":" + body
        expected = "v0=" + hmac.new(self._secret, signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)


def _parse(body: bytes, content_type: str) -> dict[str, Any]:
    """The payload: a JSON object (events, as Bolt detects them) or form fields (slash commands)."""
    text = body.decode("utf-8")
    if content_type.split(";")[0].strip().lower() == "application/json" or text.lstrip().startswith("{"):
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise ValueError("the JSON body is not an object")
        return payload
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))


def _screen_payload(payload: Mapping[str, Any]) -> Verdict:
    try:
        return Admitted(_normalised(payload))
    except InvalidFieldError as error:
        return _refusal(payload, str(error))


def _refusal(payload: Mapping[str, Any], reason: str) -> Refused:
    """A signed but unusable request: acknowledged (so Slack doesn't retry it); a user is told why."""
    if "command" in payload:
        return Refused(200, {"response_type": "ephemeral", "text": COMMAND_REFUSED}, f"slash command: {reason}")
    event_id = payload.get("event_id")
    if isinstance(event_id, str) and EVENT_ID.fullmatch(event_id):
        reason = f"event {event_id}: {reason}"
    return Refused(200, "", reason)


def _normalised(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the bot (and Bolt's routing) use, checked; anything else in the payload is dropped."""
    if "command" in payload:
        return _command(payload)
    if payload.get("ssl_check") == "1":  # Slack checking the certificate: Bolt answers 200
        return {"ssl_check": "1"}
    kind = payload.get("type")
    if kind == "url_verification":
        return {"type": kind, "challenge": _required(payload, "challenge", CHALLENGE)}
    if kind == "event_callback":
        return {
            "type": kind,
            "team_id": _required(payload, "team_id", TEAM_ID),
            "event_id": _required(payload, "event_id", EVENT_ID),
            "event": _event(payload.get("event")),
        }
    raise InvalidFieldError("a payload of a type the bot doesn't handle")


def _event(event: object) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidFieldError("event is not an object")
    kind = _required(event, "type", NAME, "event.")
    if kind not in MESSAGE_EVENTS:
        return {"type": kind}  # not one the bot listens to: routing needs only the type
    clean: dict[str, Any] = {
        "type": kind,
        "channel": _required(event, "channel", CHANNEL_ID, "event."),
        "ts": _required(event, "ts", TS, "event."),
        "text": _text(event, "text", "event."),
    }
    optional = {"user": USER_ID, "thread_ts": TS, "subtype": NAME, "channel_type": NAME}
    for name, pattern in optional.items():
        if name in event:
            clean[name] = _required(event, name, pattern, "event.")
    if "bot_id" in event:  # only ever tested for presence: any bot's message is ignored
        clean["bot_id"] = _string(event, "bot_id", "event.")
    if clean.get("subtype") == "message_changed":
        clean["message"] = _edited_message(event.get("message"))
    elif clean.get("subtype") == "message_deleted":
        clean["deleted_ts"] = _required(event, "deleted_ts", TS, "event.")
    return clean


def _edited_message(message: object) -> dict[str, Any]:
    """The new version of an edited message (`message_changed`): its ts, text, author and thread."""
    if not isinstance(message, dict):
        raise InvalidFieldError("event.message is not an object")
    clean = {"ts": _required(message, "ts", TS, "event.message."), "text": _text(message, "text", "event.message.")}
    for name, pattern in {"user": USER_ID, "thread_ts": TS, "subtype": NAME}.items():
        if name in message:
            clean[name] = _required(message, name, pattern, "event.message.")
    if "bot_id" in message:
        clean["bot_id"] = _string(message, "bot_id", "event.message.")
    return clean


def _command(payload: Mapping[str, Any]) -> dict[str, Any]:
    clean = {
        "command": _required(payload, "command", COMMAND),
        "team_id": _required(payload, "team_id", TEAM_ID),
        "channel_id": _required(payload, "channel_id", CHANNEL_ID),
        "user_id": _required(payload, "user_id", USER_ID),
        "text": _text(payload, "text"),
        "response_url": _response_url(payload),
    }
    if "trigger_id" in payload:
        clean["trigger_id"] = _required(payload, "trigger_id", TRIGGER_ID)
    return clean


def _required(data: Mapping[str, Any], name: str, pattern: re.Pattern[str], where: str = "") -> str:
    value = data.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidFieldError(f"{where}{name} is missing or not in Slack's format")
    return value


def _string(data: Mapping[str, Any], name: str, where: str = "") -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise InvalidFieldError(f"{where}{name} is not a string")
    return _SURROGATES.sub("\ufffd", value)


def _text(data: Mapping[str, Any], name: str, where: str = "") -> str:
    """Text as the user wrote it, with characters UTF-8 can't encode replaced by U+FFFD; missing is empty."""
    return _string(data, name, where) if name in data else ""


def _response_url(payload: Mapping[str, Any]) -> str:
    url = _string(payload, "response_url")
    if len(url) > MAX_URL or not url.isprintable() or not _is_http_url(url):
        raise InvalidFieldError("response_url is not an http(s) URL")
    return url


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("https", "http") and bool(parts.netloc)
