"""The edge: every request to the Slack endpoint is checked and normalised here, before anything trusts it.

Anyone can POST to the bot, and even a signed request may carry what the rest of the bot can't take (a
channel ID like `../../x`, `event: null`, a lone surrogate that no database can store). So `Edge.screen`,
the one entry point, runs before Bolt sees the request and before anything is stored:

1. size: bodies over `MAX_BODY` get 413 (Slack's payloads are a few KB; `bot.server` also has waitress
   refuse them before it buffers them);
2. signature: Slack's v0 HMAC over the raw bytes, 5-minute replay window; 401 otherwise. Done here, not
   by Bolt, because Bolt parses the body before checking it and logs the body of every refused request;
3. parsing: UTF-8, then JSON (events), a form (slash commands), or a form whose one `payload` field
   holds JSON (interactivity: a click on a message's button); garbage gets 400;
4. validation: every field the bot uses, by type and by Slack's ID formats, copied into a new payload
   that holds nothing else; text with characters that can't be encoded is repaired. Socket Mode
   payloads (parsed and authenticated by the WebSocket) go through this step too (`screen_payload`).
   Admitted: `url_verification`, slash commands, `block_actions`, `view_submission`s of the bot's
   modals, and `event_callback`s, whose
   events are copied field by field if the bot reads them (messages and mentions with the files
   shared in them, `app_home_opened`, the assistant's thread events, `file_deleted`) and reduced to
   their type otherwise.

A message's files are screened like its other fields: one file the bot can't use (a bad ID, a
`url_private_download` that isn't an http(s) URL) refuses the whole event, text and all, rather than
passing the message on without it. Slack makes these objects, so a malformed one means a forged or
broken payload, and a message admitted with some of its files silently missing would be answered as if
the user had shared less than they did.

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

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes
REPLAY_WINDOW = 5 * 60  # seconds a signature stays valid, as Slack (and Bolt) have it
MAX_FORM_FIELDS = 64
MAX_URL = 2048

TEAM_ID = re.compile(r"[TE][A-Z0-9]{1,31}", re.ASCII)  # a workspace, or an Enterprise Grid org
ENTERPRISE_ID = re.compile(r"E[A-Z0-9]{1,31}", re.ASCII)
APP_ID = re.compile(r"A[A-Z0-9]{1,31}", re.ASCII)
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{1,31}", re.ASCII)  # public, private (or group DM), DM
DM_ID = re.compile(r"D[A-Z0-9]{1,31}", re.ASCII)
USER_ID = re.compile(r"[UW][A-Z0-9]{1,31}", re.ASCII)  # W: Enterprise Grid users
TS = re.compile(r"\d{1,20}\.\d{1,20}", re.ASCII)
EVENT_ID = re.compile(r"Ev[A-Za-z0-9]{1,62}", re.ASCII)
VIEW_ID = re.compile(r"V[A-Z0-9]{1,31}", re.ASCII)
FILE_ID = re.compile(r"F[A-Z0-9]{1,31}", re.ASCII)
FILETYPE = re.compile(r"[a-z0-9_+.-]{1,64}", re.ASCII)  # a file's type as Slack names it: "png", "gdoc", "text"
TRIGGER_ID = re.compile(r"[A-Za-z0-9.]{1,255}", re.ASCII)
NAME = re.compile(r"[a-z_]{1,64}", re.ASCII)  # event types, subtypes, channel types, element types
ENTRY_POINT = re.compile(r"[a-z0-9_]{1,64}", re.ASCII)  # where an assistant thread was opened from
METADATA_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,255}", re.ASCII)  # a message metadata's event_type
COMMAND = re.compile(r"/[a-z0-9_-]{1,31}", re.ASCII)
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{1,256}", re.ASCII)
REQUEST_TIMESTAMP = re.compile(r"\d{1,12}", re.ASCII)
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}", re.ASCII)
_SURROGATES = re.compile("[\ud800-\udfff]")  # only lone ones survive JSON decoding; UTF-8 can't encode them

MESSAGE_EVENTS = frozenset({"app_mention", "message"})
ASSISTANT_EVENTS = frozenset({"assistant_thread_started", "assistant_thread_context_changed"})
HOME_TABS = frozenset({"home", "messages"})
INVALID_SIGNATURE = {"error": "invalid request"}
# the edge's own replies (here, not in `bot.replies`: the edge imports no Pixeltable, for `bot.receiver`)
FORM_REFUSED = (
    ":warning: I couldn't read that form (it came with data I can't use); nothing was saved. Please try again."
)
COMMAND_REFUSED = ":warning: I couldn't read that command (it came with data I can't use). Please try again."
MAX_ACTIONS = 5  # actions in one block_actions payload (Slack sends one; a context_actions block holds 5)
MAX_ID_TEXT = 255  # characters of an action_id, a block_id, a user name (Slack's limit for the ids)
MAX_VALUE = 2000  # characters of an action's value (Slack's limit)
MAX_METADATA_FIELDS = 50  # fields of a message metadata's event_payload
MAX_PRIVATE_METADATA = 3000  # characters of a view's private_metadata (Slack's limit)
MAX_VIEW_INPUTS = 100  # blocks of a view
MAX_INPUT_TEXT = 3000  # characters of a plain-text input (Slack's limit)
MAX_OPTIONS = 100  # options of a select menu
MAX_OPTION_VALUE = 150  # characters of an option's value (Slack's limit)
MAX_FILES = 20  # files shared in one message
MAX_FILE_NAME = 1000  # characters of a file's name or title
MAX_MIMETYPE = 255  # characters of a file's MIME type (RFC 6838 allows 127 for each half)
MAX_FILE_SIZE = 2**63 - 1  # bytes: what a signed 64-bit column holds
MAX_CHANNEL_IDS = 100  # channels a deleted file was shared in, as `file_deleted` lists them
NAME_SAFE = "<id>"  # how an error names a block or input id (never its value)


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
    """The payload: a JSON object (events, as Bolt detects them), form fields (slash commands), or the
    JSON object in the form's `payload` field (interactivity, as Bolt reads it)."""
    text = body.decode("utf-8")
    if content_type.split(";")[0].strip().lower() == "application/json" or text.lstrip().startswith("{"):
        return _json_object(text)
    fields = dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    if "payload" in fields:
        return _json_object(fields["payload"])
    return fields


def _json_object(text: str) -> dict[str, Any]:
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError("the JSON body is not an object")
    return payload


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
    elif payload.get("type") == "block_actions":
        reason = f"block_actions: {reason}"
    elif payload.get("type") == "view_submission":  # the modal says so, instead of closing as if saved
        return Refused(200, _REFUSED_FORM, f"view_submission: {reason}")
    return Refused(200, "", reason)


_REFUSED_FORM = {
    "response_action": "update",
    "view": {
        "type": "modal",
        "title": {"type": "plain_text", "text": "pixelbot"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": FORM_REFUSED}}],
    },
}


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
        clean = {
            "type": kind,
            "team_id": _required(payload, "team_id", TEAM_ID),
            "event_id": _required(payload, "event_id", EVENT_ID),
            "event": _event(payload.get("event")),
        }
        if payload.get("authorizations"):
            clean["authorizations"] = [_authorization(payload["authorizations"])]
        return clean
    if kind == "block_actions":
        return _block_actions(payload)
    if kind == "view_submission":
        return _view_submission(payload)
    if isinstance(kind, str) and NAME.fullmatch(kind):  # a type is safe to name in the log
        raise InvalidFieldError(f"a payload of type {kind} the bot doesn't handle")
    raise InvalidFieldError("a payload of a type the bot doesn't handle")


def _authorization(authorizations: object) -> dict[str, Any]:
    """The first of `authorizations`: the installation the event is visible to, whose token answers it
    (Bolt authorizes by it before the envelope's `team_id`, which in a shared channel may name a
    workspace that did not install the app)."""
    if not isinstance(authorizations, list) or not isinstance(authorizations[0], dict):
        raise InvalidFieldError("authorizations is not a list of objects")
    first, where = authorizations[0], "authorizations[0]."
    clean: dict[str, Any] = {"is_enterprise_install": first.get("is_enterprise_install") is True}
    for name, pattern in {"team_id": TEAM_ID, "enterprise_id": ENTERPRISE_ID, "user_id": USER_ID}.items():
        if first.get(name) is not None:
            clean[name] = _required(first, name, pattern, where)
    return clean


def _event(event: object) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidFieldError("event is not an object")
    kind = _required(event, "type", NAME, "event.")
    if kind in MESSAGE_EVENTS:
        return _message_event(event, kind)
    if kind == "app_home_opened":
        return _home_opened(event)
    if kind in ASSISTANT_EVENTS:
        return _assistant_thread_event(event, kind)
    if kind == "tokens_revoked":
        return _tokens_revoked(event)
    if kind == "file_deleted":
        return _file_deleted(event)
    return {"type": kind}  # not one the bot listens to: routing needs only the type


def _message_event(event: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A message or a mention; in a DM these are also what the assistant's threads are made of
    (Bolt's Assistant reads `channel_type`, `thread_ts`, `subtype` and `bot_id`, all kept)."""
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
    if "files" in event:  # a `file_share` message, or a mention with files attached
        clean["files"] = _files(event["files"], "event.")
    if clean.get("subtype") == "message_changed":
        clean["message"] = _edited_message(event.get("message"))
    elif clean.get("subtype") == "message_deleted":
        clean["deleted_ts"] = _required(event, "deleted_ts", TS, "event.")
    if clean.get("subtype") in ("message_changed", "message_deleted") and "previous_message" in event:
        clean["previous_message"] = _previous_message(event["previous_message"])
    return clean


def _home_opened(event: Mapping[str, Any]) -> dict[str, Any]:
    """`app_home_opened`: who opened which tab of the app's Home, in the DM channel with the app.

    The Home view Slack sends along (the one published last) is dropped: the bot publishes anew."""
    return {
        "type": "app_home_opened",
        "user": _required(event, "user", USER_ID, "event."),
        "channel": _required(event, "channel", DM_ID, "event."),
        "tab": _choice(event, "tab", HOME_TABS, "event."),
        "event_ts": _required(event, "event_ts", TS, "event."),
    }


def _assistant_thread_event(event: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """`assistant_thread_started` / `_context_changed`: a thread in the assistant panel, and the channel
    (the context) its user is looking at. Bolt's Assistant routes by `assistant_thread`, saves `context`."""
    where = "event.assistant_thread."
    thread = _object(event, "assistant_thread", "event.")
    return {
        "type": kind,
        "assistant_thread": {
            "user_id": _required(thread, "user_id", USER_ID, where),
            "channel_id": _required(thread, "channel_id", CHANNEL_ID, where),
            "thread_ts": _required(thread, "thread_ts", TS, where),
            "context": _assistant_context(_object(thread, "context", where)),
        },
        "event_ts": _required(event, "event_ts", TS, "event."),
    }


def _assistant_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context's fields that are present; Slack sends `enterprise_id: null` outside Enterprise Grid."""
    where = "event.assistant_thread.context."
    clean: dict[str, Any] = {}
    for name, pattern in {"channel_id": CHANNEL_ID, "team_id": TEAM_ID, "thread_entry_point": ENTRY_POINT}.items():
        if name in context:
            clean[name] = _required(context, name, pattern, where)
    if "enterprise_id" in context:
        clean["enterprise_id"] = (
            None if context["enterprise_id"] is None else _required(context, "enterprise_id", ENTERPRISE_ID, where)
        )
    if "force_search" in context:
        clean["force_search"] = _boolean(context, "force_search", where)
    return clean


def _tokens_revoked(event: Mapping[str, Any]) -> dict[str, Any]:
    """`tokens_revoked`: the users whose tokens (user tokens under `oauth`, the bot's under `bot`) were
    revoked; Bolt's installation store drops the bot's."""
    tokens = _object(event, "tokens", "event.")
    clean: dict[str, list[str]] = {}
    for kind in ("oauth", "bot"):
        users = tokens.get(kind) or []
        if (
            not isinstance(users, list)
            or len(users) > MAX_CHANNEL_IDS
            or not all(isinstance(user, str) and USER_ID.fullmatch(user) for user in users)
        ):
            raise InvalidFieldError(f"event.tokens.{kind} is not a list of user IDs")
        clean[kind] = list(users)
    return {"type": "tokens_revoked", "tokens": clean}


def _edited_message(message: object) -> dict[str, Any]:
    """The new version of an edited message (`message_changed`): its ts, text, author, thread and files."""
    if not isinstance(message, dict):
        raise InvalidFieldError("event.message is not an object")
    clean: dict[str, Any] = {
        "ts": _required(message, "ts", TS, "event.message."),
        "text": _text(message, "text", "event.message."),
    }
    for name, pattern in {"user": USER_ID, "thread_ts": TS, "subtype": NAME}.items():
        if name in message:
            clean[name] = _required(message, name, pattern, "event.message.")
    if "bot_id" in message:
        clean["bot_id"] = _string(message, "bot_id", "event.message.")
    if "files" in message:
        clean["files"] = _files(message["files"], "event.message.")
    return clean


def _files(files: object, where: str) -> list[dict[str, Any]]:
    """The files shared in a message, each reduced to what identifies and fetches it (see `_file`)."""
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise InvalidFieldError(f"{where}files is not a list of at most {MAX_FILES} files")
    return [_file(file, f"{where}files[{index}].") for index, file in enumerate(files)]


def _file(file: object, where: str) -> dict[str, Any]:
    """A Slack file object: its ID, what it's called and what it is, who shared it, and where to fetch it.

    Only `id` is required: a deleted file stays in its messages as `{"id": ..., "mode": "tombstone"}`.
    `name` is always there ("" if missing), so a reader needn't test for it; the other fields are kept
    when present, a null one taken as absent (as for a modal's input values) rather than refusing the
    message over a field the bot may not even read. Thumbnails, previews, shares and the rest are dropped."""
    if not isinstance(file, dict):
        raise InvalidFieldError(f"{where.rstrip('.')} is not an object")
    present = {name: value for name, value in file.items() if value is not None}
    clean: dict[str, Any] = {
        "id": _required(present, "id", FILE_ID, where),
        "name": _bounded(present, "name", MAX_FILE_NAME, where, allow_empty=True) if "name" in present else "",
    }
    if "title" in present:
        clean["title"] = _bounded(present, "title", MAX_FILE_NAME, where, allow_empty=True)
    if "mimetype" in present:
        clean["mimetype"] = _mimetype(present, where)
    for name, pattern in {"filetype": FILETYPE, "mode": NAME, "user": USER_ID}.items():
        if name in present:
            clean[name] = _required(present, name, pattern, where)
    if "size" in present:
        clean["size"] = _size(present, where)
    for name in ("url_private", "url_private_download", "permalink"):
        if name in present:
            clean[name] = _url(present, name, where)
    if "is_external" in present:
        clean["is_external"] = _boolean(present, "is_external", where)
    return clean


def _mimetype(file: Mapping[str, Any], where: str) -> str:
    """A MIME type (`image/png`), possibly empty: printable ASCII, so it can go in a header as it is."""
    value = file.get("mimetype")
    if not isinstance(value, str) or len(value) > MAX_MIMETYPE or not (value.isascii() and value.isprintable()):
        raise InvalidFieldError(f"{where}mimetype is not printable ASCII of at most {MAX_MIMETYPE} characters")
    return value


def _size(file: Mapping[str, Any], where: str) -> int:
    """A size in bytes; `True` is an int to Python but not to anyone reading the payload."""
    value = file.get("size")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FILE_SIZE:
        raise InvalidFieldError(f"{where}size is not a number of bytes")
    return value


def _file_deleted(event: Mapping[str, Any]) -> dict[str, Any]:
    """`file_deleted`: which file is gone (and, when Slack says, from which channels), so whatever the
    bot kept of it can go too."""
    clean: dict[str, Any] = {
        "type": "file_deleted",
        "file_id": _required(event, "file_id", FILE_ID, "event."),
        "event_ts": _required(event, "event_ts", TS, "event."),
    }
    if "channel_ids" in event:
        channels = event["channel_ids"]
        if not isinstance(channels, list) or len(channels) > MAX_CHANNEL_IDS:
            raise InvalidFieldError(f"event.channel_ids is not a list of at most {MAX_CHANNEL_IDS} channels")
        if not all(isinstance(channel, str) and CHANNEL_ID.fullmatch(channel) for channel in channels):
            raise InvalidFieldError("event.channel_ids has a channel not in Slack's format")
        clean["channel_ids"] = list(channels)
    return clean


def _previous_message(message: object) -> dict[str, str]:
    """Of the message before an edit or a deletion, only its thread and subtype: Bolt's Assistant reads
    them to tell a change in one of its threads. Not its author: Bolt would take that for the actor."""
    if not isinstance(message, dict):
        raise InvalidFieldError("event.previous_message is not an object")
    return {
        name: _required(message, name, pattern, "event.previous_message.")
        for name, pattern in {"thread_ts": TS, "subtype": NAME}.items()
        if name in message
    }


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
    return clean | _installation(payload)


def _installation(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Which installation a command or a click is for, as Bolt reads it: an org-wide one (Enterprise
    Grid) is found by the organisation, and only if the payload says it is org-wide."""
    clean: dict[str, Any] = {}
    if payload.get("enterprise_id"):
        clean["enterprise_id"] = _required(payload, "enterprise_id", ENTERPRISE_ID)
    enterprise = payload.get("enterprise")
    if isinstance(enterprise, dict) and enterprise.get("id") is not None:
        clean["enterprise"] = {"id": _required(enterprise, "id", ENTERPRISE_ID, "enterprise.")}
    if "is_enterprise_install" in payload:
        clean["is_enterprise_install"] = payload["is_enterprise_install"] in (True, "true")
    return clean


def _block_actions(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A click on an interactive element of a message (a button, feedback buttons): who clicked what,
    where, and how to answer (`response_url`). What Bolt routes by (`type`, `actions[0].action_id`,
    `block_id`) and what a listener needs; the message's blocks, the view, the state are dropped."""
    user = _object(payload, "user")
    clean: dict[str, Any] = {
        "type": "block_actions",
        "user": _action_user(user),
        "team": _action_team(payload, user),
        "container": _container(_object(payload, "container")),
        "actions": _actions(payload.get("actions")),
        "response_url": _response_url(payload),
        "trigger_id": _required(payload, "trigger_id", TRIGGER_ID),
        "api_app_id": _required(payload, "api_app_id", APP_ID),
    }
    if "channel" in payload:
        clean["channel"] = {"id": _required(_object(payload, "channel"), "id", CHANNEL_ID, "channel.")}
    if "message" in payload:  # absent for an ephemeral message
        clean["message"] = _action_message(_object(payload, "message"))
    return clean | _installation(payload)


def _view_submission(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A modal the bot opened, submitted (`/pixelbot settings`): who, and what its inputs hold. What
    Bolt routes by (`type`, `view.callback_id`) and what the listener reads; the view's blocks dropped."""
    user = _object(payload, "user")
    view = _object(payload, "view")
    clean_view: dict[str, Any] = {
        "id": _required(view, "id", VIEW_ID, "view."),
        "type": _choice(view, "type", frozenset({"modal"}), "view."),
        "callback_id": _bounded(view, "callback_id", MAX_ID_TEXT, "view."),
        "private_metadata": _bounded(view, "private_metadata", MAX_PRIVATE_METADATA, "view.", allow_empty=True),
        "state": {"values": _view_values(_object(_object(view, "state", "view."), "values", "view.state."))},
    }
    return {
        "type": "view_submission",
        "user": _action_user(user),
        "team": _action_team(payload, user),
        "view": clean_view,
        "trigger_id": _required(payload, "trigger_id", TRIGGER_ID),
        "api_app_id": _required(payload, "api_app_id", APP_ID),
    } | _installation(payload)


def _view_values(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A submitted modal's input values: `{block_id: {action_id: value}}`, each value its element's
    `type` and whichever of `value`, `selected_option` and `selected_options` it has (options by value)."""
    if len(values) > MAX_VIEW_INPUTS:
        raise InvalidFieldError(f"view.state.values has over {MAX_VIEW_INPUTS} blocks")
    clean: dict[str, dict[str, Any]] = {}
    for block_id, actions in values.items():
        where = "view.state.values."
        if not (isinstance(block_id, str) and 0 < len(block_id) <= MAX_ID_TEXT) or not isinstance(actions, dict):
            raise InvalidFieldError(f"{where} has a block that is not an object under an id")
        if len(actions) > MAX_ACTIONS:
            raise InvalidFieldError(f"{where} has a block of over {MAX_ACTIONS} inputs")
        clean[block_id] = {}
        for action_id, value in actions.items():
            if not (isinstance(action_id, str) and 0 < len(action_id) <= MAX_ID_TEXT) or not isinstance(value, dict):
                raise InvalidFieldError(f"{where} has an input that is not an object under an id")
            clean[block_id][action_id] = _input_value(value, f"{where}{NAME_SAFE}.")
    return clean


def _input_value(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    clean: dict[str, Any] = {"type": _required(value, "type", NAME, where)}
    if value.get("value") is not None:
        clean["value"] = _bounded(value, "value", MAX_INPUT_TEXT, where, allow_empty=True)
    if value.get("selected_option") is not None:
        clean["selected_option"] = _option(_object(value, "selected_option", where), f"{where}selected_option.")
    if value.get("selected_options") is not None:
        options = value["selected_options"]
        if not isinstance(options, list) or len(options) > MAX_OPTIONS:
            raise InvalidFieldError(f"{where}selected_options is not a list of at most {MAX_OPTIONS} options")
        clean["selected_options"] = [_option(o, f"{where}selected_options[].") for o in options]
    return clean


def _option(option: object, where: str) -> dict[str, str]:
    if not isinstance(option, dict):
        raise InvalidFieldError(f"{where.rstrip('.')} is not an object")
    return {"value": _bounded(option, "value", MAX_OPTION_VALUE, where)}


def _action_user(user: Mapping[str, Any]) -> dict[str, Any]:
    clean = {"id": _required(user, "id", USER_ID, "user.")}
    if "team_id" in user:
        clean["team_id"] = _required(user, "team_id", TEAM_ID, "user.")
    if "name" in user:
        clean["name"] = _bounded(user, "name", MAX_ID_TEXT, "user.")
    return clean


def _action_team(payload: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, str] | None:
    """The workspace. An org-wide (Enterprise Grid) install gets `team: null`; then the user's
    `team_id` names the workspace, as Bolt reads it, and without either the click can't be placed."""
    team = payload.get("team")
    if team is None:
        if "team_id" not in user:
            raise InvalidFieldError("team is null and user.team_id is missing")
        return None
    if not isinstance(team, dict):
        raise InvalidFieldError("team is not an object")
    return {"id": _required(team, "id", TEAM_ID, "team.")}


def _container(container: Mapping[str, Any]) -> dict[str, Any]:
    where = "container."
    clean: dict[str, Any] = {"type": _required(container, "type", NAME, where)}
    for name, pattern in {"message_ts": TS, "channel_id": CHANNEL_ID, "thread_ts": TS}.items():
        if name in container:
            clean[name] = _required(container, name, pattern, where)
    if "is_ephemeral" in container:
        clean["is_ephemeral"] = _boolean(container, "is_ephemeral", where)
    return clean


def _actions(actions: object) -> list[dict[str, Any]]:
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_ACTIONS:
        raise InvalidFieldError(f"actions is not a list of 1 to {MAX_ACTIONS} actions")
    return [_action(action, f"actions[{index}].") for index, action in enumerate(actions)]


def _action(action: object, where: str) -> dict[str, Any]:
    """One element's action; a button's (and a feedback button's) `value` is kept, a menu's selection isn't."""
    if not isinstance(action, dict):
        raise InvalidFieldError(f"{where.rstrip('.')} is not an object")
    clean = {
        "action_id": _bounded(action, "action_id", MAX_ID_TEXT, where),
        "block_id": _bounded(action, "block_id", MAX_ID_TEXT, where),
        "type": _required(action, "type", NAME, where),
        "action_ts": _required(action, "action_ts", TS, where),
    }
    if "value" in action:
        clean["value"] = _bounded(action, "value", MAX_VALUE, where, allow_empty=True)
    return clean


def _action_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """The clicked message: its ts, its thread, and the metadata the bot put on it (its answers carry
    their request's ID there)."""
    where = "message."
    clean: dict[str, Any] = {"ts": _required(message, "ts", TS, where)}
    if "thread_ts" in message:
        clean["thread_ts"] = _required(message, "thread_ts", TS, where)
    if "metadata" in message:
        metadata = _object(message, "metadata", where)
        clean["metadata"] = {
            "event_type": _required(metadata, "event_type", METADATA_TYPE, "message.metadata."),
            "event_payload": _flat_object(_object(metadata, "event_payload", "message.metadata.")),
        }
    return clean


def _flat_object(data: Mapping[str, Any]) -> dict[str, Any]:
    """A metadata payload as the bot writes them: a few named scalars (strings bounded and repaired)."""
    where = "message.metadata.event_payload"
    if len(data) > MAX_METADATA_FIELDS:
        raise InvalidFieldError(f"{where} has over {MAX_METADATA_FIELDS} fields")
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if not METADATA_TYPE.fullmatch(key):
            raise InvalidFieldError(f"{where} has a field name not in Slack's format")
        if isinstance(value, str):
            clean[key] = _bounded(data, key, MAX_VALUE, f"{where}.", allow_empty=True)
        elif value is None or isinstance(value, bool | int | float):
            clean[key] = value
        else:
            raise InvalidFieldError(f"{where}.{key} is not a string, number, boolean or null")
    return clean


def _object(data: Mapping[str, Any], name: str, where: str = "") -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise InvalidFieldError(f"{where}{name} is missing or not an object")
    return value


def _choice(data: Mapping[str, Any], name: str, choices: frozenset[str], where: str = "") -> str:
    value = data.get(name)
    if not isinstance(value, str) or value not in choices:
        raise InvalidFieldError(f"{where}{name} is missing or not one of {', '.join(sorted(choices))}")
    return value


def _boolean(data: Mapping[str, Any], name: str, where: str = "") -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise InvalidFieldError(f"{where}{name} is not a boolean")
    return value


def _bounded(data: Mapping[str, Any], name: str, limit: int, where: str = "", *, allow_empty: bool = False) -> str:
    """A string of Slack's making or the bot's (an action_id, a button's value), at most `limit` characters."""
    value = _string(data, name, where) if name in data else None
    if value is None or len(value) > limit or not (value or allow_empty):
        raise InvalidFieldError(f"{where}{name} is missing, empty or over {limit} characters")
    return value


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
    return _url(payload, "response_url")


def _url(data: Mapping[str, Any], name: str, where: str = "") -> str:
    """An http(s) URL of at most `MAX_URL` printable characters: one the bot may request, or link to."""
    url = _string(data, name, where)
    if len(url) > MAX_URL or not url.isprintable() or not _is_http_url(url):
        raise InvalidFieldError(f"{where}{name} is not an http(s) URL")
    return url


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("https", "http") and bool(parts.netloc)
