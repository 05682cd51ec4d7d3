"""A fake Slack Web API on 127.0.0.1 for end-to-end tests.

It speaks real HTTP, so the unmodified `slack_sdk.WebClient` and slack-bolt are exercised: point them at
`FakeSlack.base_url`. Every Web API request is checked against Slack's published Web API spec (plus
hand-written rules for methods newer than the 2020 spec), so a call real Slack would reject fails the
test through `spec_errors` instead of passing silently against a lenient mock.

It also keeps what the bot made visible, as Slack would show it back: the messages it posted or streamed
(`chat.postMessage`, `chat.startStream`/`appendStream`/`stopStream`), as `chat.update` and `chat.delete`
left them, are what `conversations.history` and `conversations.replies` answer; Home tabs published with
`views.publish` are kept per user. A bot that checks after a restart whether it already answered sees
what it really left behind.

Besides `/api/<method>`, the server hosts the other URLs a bot talks to: the upload URLs handed out
by `files.getUploadURLExternal` (`/upload/<file_id>`), slash-command `response_url`s
(`/response/<name>`) and the private URLs of files users shared (`/files-pri/<team>-<file_id>/<name>`
and `.../download/<name>`, see `FakeSlack.host_file`), which like Slack's answer only the bot's token.

It answers for one workspace (`TEAM_ID`, the bot token `BOT_TOKEN`) unless a test adds more, as an app
distributed with OAuth sees them: `add_workspace` installs the app in another workspace, `grant` lets an
installer approve it so that `oauth.v2.access` exchanges the code for that workspace's bot token, and
`revoke` uninstalls it. Calls are then answered for the workspace whose token they carry (`auth.test`, and
the bot identity on what the bot posts), so a bot that answers one workspace with another's token is caught.
"""

from __future__ import annotations

import base64
import collections
import copy
import email.message
import email.parser
import email.policy
import functools
import hashlib
import itertools
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from tests.specs import SLACK_SPECS_DIR

DEFAULT_SPECS_DIR = SLACK_SPECS_DIR
WEB_API_SPEC = "slack_web_openapi_v2_without_examples.json"

# The workspace the fake pretends to be; `tests.slack_requests` addresses its events to the same bot.
TEAM_ID = "T0001"
TEAM_NAME = "Pixelbot Test"
TEAM_URL = "https://pixelbot-test.slack.com/"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
BOT_NAME = "pixelbot"
_APP_ID = "A0001"  # `tests.slack_requests.APP_ID` (which imports this module)
MAX_VIEW_BLOCKS = 100  # Slack's limit of blocks in a modal or Home tab view
MAX_MARKDOWN_TEXT = 12_000  # characters of `markdown_text` per streaming call (or per markdown_text chunk)
BOT_TOKEN = "xoxb-test-token"  # the bot's token in tests (`tests.conftest.bot_environment`)
"""The default workspace's bot token, the one token the private file URLs accept, as Slack's file host
accepts only a token of the workspace (unless revoked, or replaced by a reinstallation)."""
SIGNIN_URL = "https://slack.com/signin"
"""Where Slack's file host redirects a request without a valid token: another host, a login page."""
_FILE_OWNER = "U0001"  # `tests.slack_requests.USER_ID`
INSTALLER_ID = "U0INSTALLER"
"""Who approves an installation in `FakeSlack.grant` unless a test names someone."""
DEFAULT_BOT_SCOPES = ",".join(
    [
        *("app_mentions:read", "assistant:write", "chat:write", "channels:read", "groups:read", "mpim:read", "im:read"),
        *("commands", "reactions:write", "users:read", "im:write", "files:write", "files:read"),
        *("channels:history", "groups:history", "mpim:history", "im:history"),
    ]
)
"""The bot scopes of `manifest.yml`, as `oauth.v2.access` lists what an installer granted."""

JsonObject = dict[str, Any]
Handler = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""Computes the JSON answer to one Web API call from its params (see `FakeSlack.set_handler`)."""

_T = TypeVar("_T")


# -- what tests see ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlackCall:
    """One Web API request as the fake received it, and what it answered."""

    method: str
    params: dict[str, Any]
    """Query string, form fields (multipart file parts as bytes) or JSON body, merged."""
    headers: dict[str, str]
    """Request headers with lower-cased names."""
    http_method: str
    status: int
    response: Mapping[str, Any] | str
    received_at: float = field(default_factory=time.monotonic)
    """`time.monotonic()` when the call arrived, for latency measurements."""
    team_id: str | None = None
    """The workspace whose token the call carried, refused (revoked) or not; while `strict_tokens` is off
    a token of no workspace counts as the default one's. None: no token, a token of no workspace, or a
    method that takes none (`oauth.v2.access`) or an app-level one."""

    @property
    def token(self) -> str | None:
        """The token the call was made with."""
        return _token(self.headers, self.params)

    def json_param(self, name: str) -> Any:
        """A JSON-valued param (`blocks`, `attachments`, ...) decoded, whether sent as form or JSON."""
        return _json_value(self.params.get(name))


@dataclass(frozen=True)
class Workspace:
    """A workspace the app is installed in: the bot token that identifies it, and who the bot is there.

    Every field differs between workspaces (see `for_team`), so that a bot that mixes up two workspaces'
    tokens or identities gets answers that give it away.
    """

    team_id: str
    name: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    url: str
    enterprise_id: str | None = None
    """The Enterprise Grid organisation the workspace belongs to, if any."""
    org_wide: bool = False
    """An org-wide installation (`grant(..., org_wide=True)`): `team_id` is the organisation's ID, and its
    one bot token speaks for every workspace of the organisation."""

    @classmethod
    def for_team(
        cls,
        team_id: str,
        *,
        name: str | None = None,
        bot_token: str | None = None,
        bot_user_id: str | None = None,
        bot_id: str | None = None,
        url: str | None = None,
        enterprise_id: str | None = None,
    ) -> Workspace:
        """The workspace `team_id` with the fields not given derived from its ID, as `FakeSlack.add_workspace`
        makes it; `TEAM_ID` derives the fake's default workspace. Event builders (`tests.slack_requests`)
        use it to address another workspace's bot without being told its user ID."""
        if team_id == TEAM_ID:
            derived = DEFAULT_WORKSPACE
        else:
            slug, number = team_id.lower(), team_id[1:]
            bot = (f"xoxb-{slug}-token", f"UBOT{number}", f"BBOT{number}")
            derived = cls(team_id, f"Workspace {team_id}", *bot, f"https://{slug}.slack.com/")
        given: dict[str, Any] = {
            "name": name,
            "bot_token": bot_token,
            "bot_user_id": bot_user_id,
            "bot_id": bot_id,
            "url": url,
        }
        given |= {"enterprise_id": enterprise_id}
        return replace(derived, **{key: value for key, value in given.items() if value is not None})


DEFAULT_WORKSPACE = Workspace(TEAM_ID, TEAM_NAME, BOT_TOKEN, BOT_USER_ID, BOT_ID, TEAM_URL)
"""The workspace every fake knows: the one the bot's configured token (`BOT_TOKEN`) belongs to."""


@dataclass(frozen=True)
class OAuthGrant:
    """An installer's approval of the app in a workspace (`FakeSlack.grant`), which `oauth.v2.access`
    exchanges, once, for the workspace's tokens."""

    code: str
    team_id: str
    user: str
    """The installer, `authed_user.id` of the answer."""
    scopes: str
    """The bot scopes granted, comma-separated."""
    user_scopes: str | None = None
    """The user scopes granted; if any, the installer's user token is handed out too."""
    redirect_uri: str | None = None
    """The `redirect_uri` the authorize step was sent, which the exchange must repeat (None: not checked)."""


@dataclass(frozen=True)
class _Identity:
    """Who a token speaks for: a workspace's bot, or (a user token) an installer."""

    workspace: Workspace
    user_id: str
    is_bot: bool


def _bot_identity(workspace: Workspace) -> _Identity:
    return _Identity(workspace, workspace.bot_user_id, is_bot=True)


def _token(headers: Mapping[str, str], params: Mapping[str, Any]) -> str | None:
    """Bearer header first, then the `token` param, like Slack."""
    auth = headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token")
    return token if isinstance(token, str) and token else None


def _client_credentials(headers: Mapping[str, str], params: Mapping[str, Any]) -> tuple[str, str] | None:
    """An app's client ID and secret: HTTP basic auth (as slack_sdk sends them) or the `client_id` and
    `client_secret` form fields (as Slack also takes them); None if neither way carries any."""
    auth = headers.get("authorization", "")
    if auth.startswith("Basic "):
        try:
            decoded = base64.b64decode(auth.removeprefix("Basic ").strip(), validate=True).decode()
        except ValueError:  # bad base64 (binascii.Error) or not UTF-8
            return None
        client_id, colon, secret = decoded.partition(":")
        return (client_id, secret) if colon else None
    if "client_id" not in params and "client_secret" not in params:
        return None
    return str(params.get("client_id", "")), str(params.get("client_secret", ""))


def _json_value(value: Any) -> Any:
    """JSON-valued params are strings in form encoding and plain values in JSON bodies."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class ResponsePost:
    """One JSON POST the app made to a slash command's `response_url`."""

    name: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class UploadedFile:
    """A file uploaded with `files_upload_v2`, recorded once `files.completeUploadExternal` shared it."""

    file_id: str
    filename: str
    title: str
    content: bytes
    channel_id: str | None
    initial_comment: str | None
    thread_ts: str | None


@dataclass(frozen=True)
class FileDownload:
    """One request for the bytes of a file at its private URL, and the HTTP status the fake answered."""

    file_id: str
    """The file the URL names ("" if the path names none)."""
    path: str
    """The request path as sent (names still URL-quoted)."""
    authorization: str | None
    """The `Authorization` header, to check that the bot sent its token (and only to Slack)."""
    status: int


@dataclass(frozen=True)
class StreamedMessage:
    """A message the bot streamed with `chat.startStream`, as far as it got."""

    channel: str
    ts: str
    thread_ts: str | None
    recipient_user_id: str | None
    recipient_team_id: str | None
    text: str
    """Everything streamed into it, in order: `markdown_text` and the text of `markdown_text` chunks."""
    state: Literal["streaming", "stopped"]
    blocks: list[Any] | None = None
    """The blocks given to `chat.stopStream`, if any."""
    metadata: dict[str, Any] | None = None
    """The metadata given to `chat.stopStream`, if any."""
    appends: tuple[tuple[float, str], ...] = ()
    """(`time.monotonic()` at arrival, text) of the start and of each append or stop that carried text:
    what a reader saw when, for measuring how a stream paces its text."""


@dataclass(frozen=True)
class PublishedView:
    """A view the bot published as a user's Home tab with `views.publish`."""

    user_id: str
    view: dict[str, Any]
    """The view as sent."""


@dataclass(frozen=True)
class OpenedModal:
    """A modal the bot opened with `views.open`."""

    trigger_id: str
    view: dict[str, Any]
    """The view as Slack answered it (with its `id`), which a submission of it carries."""


@dataclass(frozen=True)
class ApiReply:
    """A scripted HTTP answer for `FakeSlack.fail_next`."""

    status: int = 200
    body: Mapping[str, Any] | str = field(default_factory=lambda: {"ok": True})
    headers: Mapping[str, str] = field(default_factory=dict)


Scripted = ApiReply | Mapping[str, Any] | str | int
"""A `fail_next` reply: an ApiReply, a 200 JSON body, an error code (`"channel_not_found"` means
`{"ok": false, "error": "channel_not_found"}`) or an HTTP status (429 means `rate_limited()`)."""


def rate_limited(retry_after: int = 1) -> ApiReply:
    """Slack's rate-limit answer: HTTP 429 with `Retry-After` (use 0 to keep retrying tests fast)."""
    return ApiReply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


def _to_reply(scripted: Scripted) -> ApiReply:
    if isinstance(scripted, ApiReply):
        return scripted
    if isinstance(scripted, str):
        return ApiReply(200, {"ok": False, "error": scripted})
    if scripted == 429:
        return rate_limited()
    if isinstance(scripted, int):
        return ApiReply(scripted, {"ok": False, "error": "fatal_error"})
    return ApiReply(200, scripted)


# -- the Web API spec ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Param:
    type: str
    required: bool = False


@dataclass(frozen=True)
class _Problem:
    error: str
    """The Slack error code answered."""
    detail: str
    """What goes into `spec_errors`."""


@dataclass(frozen=True)
class _MethodSpec:
    params: Mapping[str, _Param]
    accepts_json: bool
    needs_token: bool = True
    check: Callable[[Mapping[str, Any]], Sequence[str | _Problem]] | None = None
    """Rules beyond the params' presence and types: a detail answered as `invalid_arguments`, or a
    `_Problem` for the code Slack answers instead."""
    token_prefix: str | None = None
    """The kind of token the method takes, e.g. `xapp-` (app-level); others get `not_allowed_token_type`."""


def _check_complete_upload(params: Mapping[str, Any]) -> list[str]:
    """`files` must be a JSON list of {id, title?} objects (form-encoded as a JSON string)."""
    value = params.get("files")
    try:
        files = _json_value(value)
    except json.JSONDecodeError:
        return [f"files is not JSON: {value!r}"]
    ok = isinstance(files, list) and files and all(_is_file_ref(item) for item in files)
    return [] if ok else [f"files must be a non-empty list of {{id, title}} objects, got {value!r}"]


def _is_file_ref(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("title", ""), str)


def _decoded(params: Mapping[str, Any], name: str) -> tuple[Any, str | None]:
    """A JSON-valued param decoded, or the detail of why it cannot be."""
    try:
        return _json_value(params.get(name)), None
    except json.JSONDecodeError:
        return None, f"{name} is not JSON: {params.get(name)!r}"


def _check_chunks(params: Mapping[str, Any]) -> list[str | _Problem]:
    """`chunks`, if given, is a JSON array of objects with a `type` (form-encoded as a JSON string); a
    `markdown_text` chunk carries its `text`, and no text is longer than Slack takes."""
    problems: list[str | _Problem] = []
    text = params.get("markdown_text")
    if isinstance(text, str) and len(text) > MAX_MARKDOWN_TEXT:
        problems.append(_Problem("msg_too_long", f"markdown_text of {len(text)} characters > {MAX_MARKDOWN_TEXT}"))
    if "chunks" not in params:
        return problems
    chunks, error = _decoded(params, "chunks")
    if error or not isinstance(chunks, list) or not all(_is_chunk(chunk) for chunk in chunks):
        return [*problems, _Problem("invalid_chunks", error or f"chunks must be objects with a type: {chunks!r}")]
    for chunk in chunks:
        if chunk["type"] == "markdown_text" and not isinstance(chunk.get("text"), str):
            problems.append(_Problem("invalid_chunks", f"a markdown_text chunk without text: {chunk!r}"))
        elif chunk["type"] == "markdown_text" and len(chunk["text"]) > MAX_MARKDOWN_TEXT:
            problems.append(_Problem("msg_too_long", f"a markdown_text chunk of {len(chunk['text'])} characters"))
    return problems


def _is_chunk(chunk: Any) -> bool:
    return isinstance(chunk, dict) and isinstance(chunk.get("type"), str)


def _check_start_stream(params: Mapping[str, Any]) -> list[str | _Problem]:
    """Streaming into a channel (not a DM) names who reads the stream, as Slack requires."""
    problems = _check_chunks(params)
    mode = params.get("task_display_mode")
    if mode is not None and mode not in ("timeline", "plan"):
        problems.append(f"task_display_mode must be timeline or plan, got {mode!r}")
    channel = str(params.get("channel", ""))
    if channel[:1] in ("C", "G"):
        problems += [
            _Problem(f"missing_{name}", f"{name} is required when streaming into channel {channel}")
            for name in ("recipient_user_id", "recipient_team_id")
            if not params.get(name)
        ]
    return problems


def _check_append_stream(params: Mapping[str, Any]) -> list[str | _Problem]:
    problems = _check_chunks(params)
    if "markdown_text" not in params and "chunks" not in params:
        problems.append("nothing to append: neither markdown_text nor chunks")
    return problems


def _check_stop_stream(params: Mapping[str, Any]) -> list[str | _Problem]:
    problems = _check_chunks(params)
    if "blocks" in params:
        blocks, error = _decoded(params, "blocks")
        if error or not isinstance(blocks, list) or not all(_is_chunk(block) for block in blocks):
            problems.append(_Problem("invalid_blocks", error or f"blocks must be objects with a type: {blocks!r}"))
    if "metadata" in params:
        metadata, error = _decoded(params, "metadata")
        if error or not isinstance(metadata, dict) or not isinstance(metadata.get("event_type"), str):
            problems.append(_Problem("invalid_metadata_format", error or f"metadata without event_type: {metadata!r}"))
    return problems


def _check_view(params: Mapping[str, Any], kind: str = "home") -> list[str | _Problem]:
    """`view` is a JSON object: a Home tab (`"type": "home"`) of at most 100 blocks, or with `kind`
    "modal" a modal (views.open): a plain-text title of at most 24 characters, a submit button if it
    has inputs, private_metadata of at most 3,000 characters."""
    if "view" not in params:
        return []  # reported as a missing required param
    view, error = _decoded(params, "view")
    if error or not isinstance(view, dict):
        return [error or f"view must be a JSON object, got {view!r}"]
    problems: list[str | _Problem] = []
    if view.get("type") != kind:
        problems.append(f"view type must be {kind!r} here, got {view.get('type')!r}")
    if kind == "modal":
        problems += _modal_problems(view)
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not all(_is_chunk(block) for block in blocks):
        problems.append(f"view blocks must be a list of objects with a type, got {blocks!r}")
    elif len(blocks) > MAX_VIEW_BLOCKS:
        problems.append(f"a view holds at most {MAX_VIEW_BLOCKS} blocks, got {len(blocks)}")
    return problems


def _modal_problems(view: Mapping[str, Any]) -> list[str | _Problem]:
    problems: list[str | _Problem] = []
    title = view.get("title")
    if not isinstance(title, dict) or title.get("type") != "plain_text" or not 0 < len(title.get("text", "")) <= 24:
        problems.append(f"a modal's title is plain_text of 1 to 24 characters, got {title!r}")
    blocks = view.get("blocks") or []
    if any(isinstance(block, dict) and block.get("type") == "input" for block in blocks) and "submit" not in view:
        problems.append("a modal with input blocks needs a submit button")
    if len(str(view.get("private_metadata", ""))) > 3000:
        problems.append("private_metadata is over 3,000 characters")
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "input":
            element = block.get("element") or {}
            if not block.get("block_id") or not element.get("action_id"):
                problems.append(f"an input block without block_id or action_id: {block!r}")
    return problems


def _check_oauth_access(params: Mapping[str, Any]) -> list[str]:
    """A code exchange names its `code`; a token refresh (`grant_type=refresh_token`) its `refresh_token`."""
    grant_type = params.get("grant_type") or "authorization_code"
    needed = {"authorization_code": "code", "refresh_token": "refresh_token"}.get(str(grant_type))
    if needed is None:
        return [f"grant_type must be authorization_code or refresh_token, got {grant_type!r}"]
    return [] if params.get(needed) else [f"grant_type {grant_type} needs {needed}"]


_REQ_STR, _STR = _Param("string", required=True), _Param("string")
_MODERN_METHODS = {
    "files.getUploadURLExternal": _MethodSpec(
        {
            "filename": _REQ_STR,
            "length": _Param("integer", required=True),
            "alt_txt": _STR,
            "snippet_type": _STR,
        },
        accepts_json=False,
    ),
    "files.completeUploadExternal": _MethodSpec(
        {"files": _REQ_STR, "channel_id": _STR, "channels": _STR, "initial_comment": _STR, "thread_ts": _STR},
        accepts_json=True,
        check=_check_complete_upload,
    ),
    "assistant.threads.setStatus": _MethodSpec(
        {"channel_id": _REQ_STR, "thread_ts": _REQ_STR, "status": _REQ_STR}, accepts_json=True
    ),
    "assistant.threads.setTitle": _MethodSpec(
        {"channel_id": _REQ_STR, "thread_ts": _REQ_STR, "title": _REQ_STR}, accepts_json=True
    ),
    "assistant.threads.setSuggestedPrompts": _MethodSpec(
        {"channel_id": _REQ_STR, "thread_ts": _REQ_STR, "prompts": _REQ_STR, "title": _STR}, accepts_json=True
    ),
    # Streaming a message (Slack's "agents & AI apps" text streaming); slack_sdk's ChatStream sends the
    # text as `chunks` of type markdown_text, callers of the methods may send `markdown_text`.
    "chat.startStream": _MethodSpec(
        {
            "channel": _REQ_STR,
            **dict.fromkeys(("thread_ts", "markdown_text", "chunks", "recipient_team_id", "recipient_user_id"), _STR),
            **dict.fromkeys(("task_display_mode", "icon_emoji", "icon_url", "username"), _STR),
        },
        accepts_json=True,
        check=_check_start_stream,
    ),
    "chat.appendStream": _MethodSpec(
        {"channel": _REQ_STR, "ts": _REQ_STR, "markdown_text": _STR, "chunks": _STR},
        accepts_json=True,
        check=_check_append_stream,
    ),
    "chat.stopStream": _MethodSpec(
        {
            "channel": _REQ_STR,
            "ts": _REQ_STR,
            **dict.fromkeys(("markdown_text", "chunks", "blocks", "metadata", "session_status"), _STR),
        },
        accepts_json=True,
        check=_check_stop_stream,
    ),
    # In the 2020 spec, but with `view` as any string; the Home tab's rules are Slack's current ones.
    "views.publish": _MethodSpec(
        {"user_id": _REQ_STR, "view": _REQ_STR, "hash": _STR}, accepts_json=True, check=_check_view
    ),
    "views.open": _MethodSpec(
        {"trigger_id": _REQ_STR, "view": _REQ_STR, "interactivity_pointer": _STR},
        accepts_json=True,
        check=functools.partial(_check_view, kind="modal"),
    ),
    # Socket Mode's WebSocket URL; only an app-level token may ask. No built-in answer: a Socket Mode
    # server (`tests.fake_socket_mode.FakeSocketMode`) registers one with `set_handler`.
    "apps.connections.open": _MethodSpec({}, accepts_json=False, token_prefix="xapp-"),
    # In the 2020 spec with `code` required; since token rotation a refresh sends none. No token: the app
    # authenticates with its client ID and secret (slack_sdk sends them as HTTP basic auth).
    "oauth.v2.access": _MethodSpec(
        dict.fromkeys(("client_id", "client_secret", "code", "redirect_uri", "grant_type", "refresh_token"), _STR),
        accepts_json=False,
        needs_token=False,
        check=_check_oauth_access,
    ),
}
"""Methods newer than the 2020 spec, with the minimal rules from Slack's current docs and slack_sdk."""


@functools.cache
def _load_methods(spec_path: Path) -> Mapping[str, _MethodSpec]:
    """Method name -> rules, from the Swagger document (cached: it is 1 MB and many tests start a fake)."""
    spec = json.loads(spec_path.read_text())
    methods = {path.lstrip("/"): _method_spec(ops) for path, ops in spec["paths"].items()}
    return methods | _MODERN_METHODS


def _method_spec(operations: Mapping[str, Any]) -> _MethodSpec:
    # The spec lists GET for readers and POST for writers, but Slack (and slack_sdk) use either for any
    # method, so only parameters and accepted content types are kept.
    params: dict[str, _Param] = {}
    accepts_json = needs_token = False
    for operation in operations.values():
        accepts_json |= "application/json" in operation.get("consumes", [])
        for param in operation.get("parameters", []):
            if param["name"] == "token":
                needs_token = True
            else:
                params[param["name"]] = _Param(param.get("type", "string"), param.get("required", False))
    return _MethodSpec(params, accepts_json, needs_token)


_STRING_FORMS: Mapping[str, Callable[[str], bool]] = {
    "string": lambda _: True,
    "boolean": lambda value: value.lower() in {"true", "false", "1", "0"},
    "integer": lambda value: re.fullmatch(r"-?\d+", value) is not None,
    "number": lambda value: re.fullmatch(r"-?\d+(\.\d+)?", value) is not None,
}


def _plausible(value: Any, kind: str) -> bool:
    """Whether a value could be of the spec type as slack_sdk sends it (form strings or JSON values)."""
    if isinstance(value, str):
        return _STRING_FORMS.get(kind, _STRING_FORMS["string"])(value)
    if isinstance(value, bool):
        return kind in ("boolean", "string")
    if isinstance(value, int):
        return kind in ("integer", "number", "string") or (kind == "boolean" and value in (0, 1))
    if isinstance(value, float):
        return kind in ("number", "string")
    # Lists and objects (blocks, attachments...) are JSON-encoded strings in form encoding; bytes are files.
    return value is not None and kind == "string"


def _check_call(spec: _MethodSpec, params: Mapping[str, Any], *, has_token: bool, is_json: bool) -> list[_Problem]:
    if spec.needs_token and not has_token:
        return [_Problem("not_authed", "no token (neither Authorization: Bearer nor a token param)")]
    details = ["JSON body sent to a method that only takes form data"] if is_json and not spec.accepts_json else []
    details += [
        f"missing required param {name!r}" for name, p in spec.params.items() if p.required and name not in params
    ]
    details += [
        f"param {name!r}={value!r} is not {spec.params[name].type}"
        for name, value in params.items()
        if name in spec.params and not _plausible(value, spec.params[name].type)
    ]
    problems = [_Problem("invalid_arguments", detail) for detail in details]
    checked = spec.check(params) if spec.check else []
    return problems + [p if isinstance(p, _Problem) else _Problem("invalid_arguments", p) for p in checked]


# -- HTTP plumbing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Request:
    verb: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def _parse_params(request: _Request) -> tuple[dict[str, Any], bool]:
    """The merged params of a request and whether its body was JSON; ValueError if the body is malformed."""
    params: dict[str, Any] = dict(parse_qsl(request.query, keep_blank_values=True))
    if not request.body:
        return params, False
    if request.content_type == "application/json":
        body = json.loads(request.body)
        if not isinstance(body, dict):
            raise ValueError("JSON body is not an object")
        return params | body, True
    if request.content_type == "multipart/form-data":
        return params | _parse_multipart(request.headers["content-type"], request.body), False
    return params | dict(parse_qsl(request.body.decode(), keep_blank_values=True, strict_parsing=True)), False


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Form fields as str, file parts as bytes."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("malformed multipart body")
    fields: dict[str, Any] = {}
    for part in message.get_payload():
        assert isinstance(part, email.message.Message)
        name = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(content, bytes):
            raise ValueError("multipart part without a name")
        fields[name] = content if part.get_filename() else content.decode()
    return fields


def _summary(call: SlackCall) -> str:
    shown = {k: (v[:60] if isinstance(v, str) else v) for k, v in call.params.items() if k != "token"}
    return f"{call.method}({shown}) -> {call.status}"


@dataclass
class _PendingUpload:
    filename: str
    length: int
    content: bytes | None = None


@dataclass
class _HostedFile:
    content: bytes
    info: JsonObject
    """The Slack file object `host_file` returned."""
    deleted: bool = False


@dataclass
class _FileScript(Generic[_T]):
    """A scripted behaviour of one hosted file's downloads: for the next `remaining` ones, or all (None)."""

    value: _T
    remaining: int | None = None


def _take(scripts: dict[str, _FileScript[_T]], file_id: str) -> _T | None:
    """The scripted value for this download of `file_id`, counting it against `remaining`."""
    script = scripts.get(file_id)
    if script is None:
        return None
    if script.remaining is not None:
        script.remaining -= 1
        if script.remaining <= 0:
            del scripts[file_id]
    return script.value


@dataclass(frozen=True)
class _RawReply:
    """An answer that is not Web API JSON: a file's bytes, a redirect, an error page."""

    status: int
    content: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def _text_reply(status: int, text: str = "", headers: Mapping[str, str] | None = None) -> _RawReply:
    return _RawReply(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})


Reply = ApiReply | _RawReply


def _encoded(reply: Reply) -> tuple[bytes, str]:
    """The body bytes of an answer and its default Content-Type (the reply's headers may override it)."""
    if isinstance(reply, _RawReply):
        return reply.content, "application/octet-stream"
    if isinstance(reply.body, str):
        return reply.body.encode(), "text/plain; charset=utf-8"
    return json.dumps(reply.body).encode(), "application/json; charset=utf-8"


_file_numbers = itertools.count(1)
_FILE_RUN = f"{random.randrange(10_000):04d}"


def _new_file_id() -> str:
    """A file ID, "F" and digits, unique across fakes in a process and very likely across runs (like
    `unique_id` of `tests.slack_requests`), so that a bot's cache of files by ID never mixes up two tests' files."""
    return f"F{_FILE_RUN}{next(_file_numbers):06d}"


_PRETTY_TYPES = {
    "pdf": "PDF",
    "docx": "Word Document",
    "png": "PNG",
    "jpg": "JPEG",
    "gif": "GIF",
    "text": "Plain Text",
    "markdown": "Markdown (raw)",
    "csv": "CSV",
}


def _file_object(root_url: str, file_id: str, name: str, mimetype: str, filetype: str, user: str) -> JsonObject:
    """A Slack file object as a `file_share` message or `files.info` carries it, URLs on this server."""
    now, quoted = int(time.time()), quote(name, safe="")
    private = f"{root_url}/files-pri/{TEAM_ID}-{file_id}"
    secret = hashlib.sha256(file_id.encode()).hexdigest()[:10]
    return {
        "id": file_id,
        "created": now,
        "timestamp": now,
        "name": name,
        "title": name,
        "mimetype": mimetype,
        "filetype": filetype,
        "pretty_type": _PRETTY_TYPES.get(filetype, filetype.upper()),
        "user": user,
        "user_team": TEAM_ID,
        "editable": False,
        "mode": "hosted",
        "is_external": False,
        "external_type": "",
        "is_public": True,
        "public_url_shared": False,
        "display_as_bot": False,
        "username": "",
        "url_private": f"{private}/{quoted}",
        "url_private_download": f"{private}/download/{quoted}",
        "permalink": f"{TEAM_URL}files/{user}/{file_id}/{quoted}",
        "permalink_public": f"https://slack-files.com/{TEAM_ID}-{file_id}-{secret}",
        "has_rich_preview": False,
        "file_access": "visible",
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # one thread per connection: a delayed answer holds up no other request
    request_queue_size = 1024  # like a real server: a burst of connections is queued, not dropped

    def __init__(self, dispatch: Callable[[_Request], Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.dispatch = dispatch


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add 40 ms per response (headers, body: two writes)
    server: _Server

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.dispatch(_Request(self.command, url.path, url.query, headers, body))
        payload, content_type = _encoded(reply)
        try:
            self.send_response(reply.status)
            for name, value in {"Content-Type": content_type, **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:  # reported as a spec error: Slack only takes GET and POST
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the fake ------------------------------------------------------------------------------------------
class FakeSlack:
    """A Slack workspace's Web API, recording every call and validating it against Slack's spec.

    Answers come, in order of precedence: a validation error (also appended to `spec_errors`), the
    queue of `fail_next`, a refused token (`token_revoked`, `invalid_auth`), a handler from `set_handler`,
    the built-in realistic answer, `{"ok": true}`.
    `users` and `channels` map ids to fields merged into the built-in `users.info` / `conversations.info`
    objects, e.g. `fake.users["U1"] = {"is_admin": True}`; `memberships` maps a user id to the ids of the
    channels `users.conversations` lists for that user (the calling bot's when no user is named).

    Built-in answers are the workspace's whose token the call carries: `auth.test`, the bot user and team
    on the messages the bot posts and the views it publishes. A revoked token (`revoke`, `auth.revoke`) is
    always refused. A token the fake never issued is taken for the default workspace's while it knows only
    that one, as most tests give the bot any token; once a test adds a workspace (`add_workspace`, `grant`)
    `strict_tokens` is on and such a token answers `invalid_auth`, as Slack does.
    """

    def __init__(self, specs_dir: Path = DEFAULT_SPECS_DIR) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.memberships: dict[str, list[str]] = {}
        self.spec_errors: list[str] = []
        self.strict_tokens = False
        """Whether a token of no workspace is refused (`invalid_auth`) instead of taken for the default's."""
        self._methods = _load_methods(specs_dir / WEB_API_SPEC)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[SlackCall] = []
        self._responses: list[ResponsePost] = []
        self._uploads: dict[str, _PendingUpload] = {}
        self._uploaded: list[UploadedFile] = []
        self._hosted: dict[str, _HostedFile] = {}
        self._file_downloads: list[FileDownload] = []
        self._file_failures: dict[str, _FileScript[int]] = {}
        self._file_delays: dict[str, _FileScript[float]] = {}
        self._file_redirects: dict[str, _FileScript[str]] = {}
        self._scripted: dict[str, collections.deque[ApiReply]] = collections.defaultdict(collections.deque)
        self._handlers: dict[str, Handler] = {}
        self._delays: dict[str | None, float] = {}
        self._held_responses: dict[str, threading.Event] = {}
        self._messages: dict[tuple[str, str], JsonObject] = {}
        """(channel, ts) -> the bot's message as Slack now shows it, in posting order."""
        self._streams: dict[tuple[str, str], StreamedMessage] = {}
        self._views: list[PublishedView] = []
        self._modals: list[OpenedModal] = []
        self._used_triggers: set[str] = set()
        self._view_hashes: dict[str, str] = {}
        """user id -> the `hash` of their current Home tab, which a `views.publish` may name."""
        self._arrival = 0.0
        """`time.monotonic()` when the call being answered arrived (set with the lock held)."""
        self._headers: Mapping[str, str] = {}
        """The headers of the call being answered (set with the lock held), for its credentials."""
        self._workspaces: dict[str, Workspace] = {TEAM_ID: DEFAULT_WORKSPACE}
        self._caller = _bot_identity(DEFAULT_WORKSPACE)
        """Whom the call being answered speaks for (set with the lock held): its token's, else the default bot."""
        self._user_tokens: dict[str, _Identity] = {}
        """Installers' user tokens handed out by `oauth.v2.access`."""
        self._revoked: dict[str, _Identity] = {}
        """Revoked token -> whom it spoke for."""
        self._oauth_app: tuple[str, str] | None = None
        self._grants: dict[str, OAuthGrant] = {}
        """Codes not exchanged yet."""
        self._used_grants: list[OAuthGrant] = []
        self._ids = itertools.count(1)
        self._builtin = self._builtin_handlers()
        self._server = _Server(self._dispatch)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """The Web API base URL, for `WebClient(base_url=...)` (the socket is bound from construction)."""
        return f"{self.root_url}/api/"

    def response_url(self, name: str) -> str:
        """A slash-command `response_url` on this server; posts to it are kept under `name`."""
        return f"{self.root_url}/response/{quote(name, safe='')}"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------------
    def fail_next(self, method: str, *replies: Scripted) -> None:
        """Answer the next calls of `method` with `replies`, in order; then behave normally again."""
        self._require_known(method)
        with self._lock:
            self._scripted[method].extend(_to_reply(reply) for reply in replies)

    def set_handler(self, method: str, handler: Handler | None) -> None:
        """Answer valid calls of `method` with `handler(params)`; None restores the built-in answer."""
        self._require_known(method)
        with self._lock:
            if handler is None:
                self._handlers.pop(method, None)
            else:
                self._handlers[method] = handler

    def set_delay(self, seconds: float, method: str | None = None) -> None:
        """Answer calls of `method` (all Web API calls if None) `seconds` late, to simulate a slow Slack."""
        if method is not None:
            self._require_known(method)
        with self._lock:
            self._delays[method] = seconds

    def reset(self) -> None:
        """Forget traffic, errors, scripting, `users`, `channels`, `memberships`, hosted files, everything
        the bot posted, streamed, published or opened, and the workspaces, grants and revocations (back to
        the default workspace alone, `strict_tokens` off); keep serving on the same port."""
        with self._lock:
            self._workspaces = {TEAM_ID: DEFAULT_WORKSPACE}
            self.strict_tokens = False
            self._user_tokens.clear()
            self._revoked.clear()
            self._oauth_app = None
            self._grants.clear()
            self._used_grants.clear()
            recorded: list[Any]
            for recorded in (self._calls, self._responses, self._uploaded, self.spec_errors, self._views, self._modals):
                recorded.clear()
            self._file_downloads.clear()
            for by_file in (self._hosted, self._file_failures, self._file_delays, self._file_redirects):
                by_file.clear()
            self._used_triggers.clear()
            self.users.clear()
            self.channels.clear()
            self.memberships.clear()
            self._messages.clear()
            self._streams.clear()
            self._view_hashes.clear()
            self._uploads.clear()
            self._scripted.clear()
            self._handlers.clear()
            self._delays.clear()
            self._held_responses.clear()

    def _require_known(self, method: str) -> None:
        if method not in self._methods:
            raise ValueError(f"{method!r} is not a Slack Web API method known to the fake")

    # -- inspection --------------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[SlackCall]:
        """Web API calls so far (of `method`, if given), oldest first."""
        with self._lock:
            return [call for call in self._calls if method in (None, call.method)]

    def responses(self, name: str | None = None) -> list[ResponsePost]:
        """Posts to `response_url`s so far (to `response_url(name)`, if given), oldest first."""
        with self._lock:
            return [post for post in self._responses if name in (None, post.name)]

    def uploaded_files(self) -> list[UploadedFile]:
        """Files whose upload was completed with `files.completeUploadExternal`, oldest first."""
        with self._lock:
            return list(self._uploaded)

    def file_downloads(self) -> list[FileDownload]:
        """Requests for hosted files' bytes so far, answered or refused, oldest first."""
        with self._lock:
            return list(self._file_downloads)

    def streams(self, channel: str | None = None) -> list[StreamedMessage]:
        """Messages streamed so far (into `channel`, if given), in the order they were started."""
        with self._lock:
            return [stream for stream in self._streams.values() if channel in (None, stream.channel)]

    def messages(self, channel: str, thread_ts: str | None = None) -> list[JsonObject]:
        """The bot's messages in `channel` as Slack now shows them (posted or streamed, then updated, not
        deleted), oldest first: all of them, or with `thread_ts` those of that thread (its parent included
        when the bot posted it)."""
        with self._lock:
            if thread_ts is None:
                shown = self._sorted(m for (where, _), m in self._messages.items() if where == channel)
            else:
                shown = self._conversation(channel, thread_ts)
            return copy.deepcopy(shown)

    def opened_modals(self) -> list[OpenedModal]:
        """Modals opened so far, oldest first."""
        with self._lock:
            return list(self._modals)

    def published_views(self, user_id: str | None = None) -> list[PublishedView]:
        """Home tabs published so far (for `user_id`, if given), oldest first."""
        with self._lock:
            return [view for view in self._views if user_id in (None, view.user_id)]

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = 10.0) -> list[SlackCall]:
        """Block until at least `count` calls of `method` arrived; return them all (AssertionError if not)."""
        return self._wait(f"{method} calls", lambda: self.calls(method), count, timeout)

    def wait_for_stream_stopped(self, count: int = 1, timeout: float = 10.0) -> list[StreamedMessage]:
        """Block until at least `count` streams were stopped; return the stopped ones (AssertionError if not)."""

        def stopped() -> list[StreamedMessage]:
            return [stream for stream in self.streams() if stream.state == "stopped"]

        return self._wait("stopped streams", stopped, count, timeout)

    def wait_for_file_downloads(self, count: int = 1, timeout: float = 10.0) -> list[FileDownload]:
        """Block until at least `count` file download requests arrived; return them all."""
        return self._wait("file downloads", self.file_downloads, count, timeout)

    def wait_for_responses(self, count: int = 1, name: str | None = None, timeout: float = 10.0) -> list[ResponsePost]:
        """Block until at least `count` response_url posts (to `name`) arrived and return them all."""
        return self._wait(f"response_url posts to {name or 'any name'}", lambda: self.responses(name), count, timeout)

    def _wait(self, what: str, current: Callable[[], list[_T]], count: int, timeout: float) -> list[_T]:
        with self._changed:
            if self._changed.wait_for(lambda: len(current()) >= count, timeout):
                return current()
            got = current()
            raise AssertionError(
                f"expected {count} {what} within {timeout}s, got {len(got)}: {got}\n"
                f"all calls: {[_summary(call) for call in self._calls]}\n"
                f"response_url posts: {[(post.name, post.payload) for post in self._responses]}\n"
                f"spec errors: {self.spec_errors}"
            )

    def _record(self, store: list[_T], item: _T) -> None:
        with self._changed:
            store.append(item)
            self._changed.notify_all()

    def _spec_error(self, detail: str) -> None:
        with self._lock:
            self.spec_errors.append(detail)

    # -- serving -----------------------------------------------------------------------------------
    def _dispatch(self, request: _Request) -> Reply:
        routes: dict[str, Callable[[_Request, str], Reply]] = {
            "/api/": self._api_call,
            "/upload/": self._upload,
            "/response/": self._response_post,
            "/files-pri/": self._file_download,
        }
        for prefix, route in routes.items():
            if request.path.startswith(prefix):
                try:
                    return route(request, unquote(request.path.removeprefix(prefix)))
                except Exception as exc:  # a bug in the fake must fail the test, not hang the client
                    self._spec_error(f"answering {request.verb} {request.path} raised {exc!r}")
                    return ApiReply(500, {"ok": False, "error": "fatal_error"})
        self._spec_error(f"unexpected request {request.verb} {request.path}")
        return ApiReply(404, "not found")

    def _api_call(self, request: _Request, method: str) -> ApiReply:
        arrived = time.monotonic()
        try:
            params, is_json = _parse_params(request)
            problems = self._problems(request, method, params, is_json)
        except ValueError as exc:
            params, problems = {}, [_Problem("invalid_form_data", f"malformed body: {exc}")]
        with self._lock:
            self._arrival, self._headers = arrived, request.headers
            identity, refusal = self._authenticate(method, _token(request.headers, params))
            self._caller = identity or _bot_identity(self._workspaces[TEAM_ID])
            reply = self._reply(method, params, problems, refusal)
            team_id = identity.workspace.team_id if identity else None
            call = SlackCall(method, params, request.headers, request.verb, reply.status, reply.body, arrived, team_id)
            self._record(self._calls, call)
            delay = self._delays.get(method, self._delays.get(None, 0.0))
        time.sleep(delay)  # simulated Slack latency, not synchronisation
        return reply

    def _problems(self, request: _Request, method: str, params: Mapping[str, Any], is_json: bool) -> list[_Problem]:
        spec = self._methods.get(method)
        if spec is None:
            return [_Problem("unknown_method", "no such method in the Web API spec")]
        if request.verb not in ("GET", "POST"):
            return [_Problem("invalid_arguments", f"HTTP {request.verb}: Slack takes GET or POST")]
        token = _token(request.headers, params)
        if token is not None and spec.token_prefix and not token.startswith(spec.token_prefix):
            return [_Problem("not_allowed_token_type", f"needs a {spec.token_prefix}… token")]
        return _check_call(spec, params, has_token=token is not None, is_json=is_json)

    def _reply(self, method: str, params: Mapping[str, Any], problems: list[_Problem], refusal: str | None) -> ApiReply:
        """Must be called with the lock held. `refusal` is the error answered for the call's token, if any:
        not a spec error, since a bot meets revoked tokens in real life too."""
        if problems:
            self.spec_errors.extend(f"{method}: {problem.detail} (params: {dict(params)})" for problem in problems)
            return ApiReply(200, {"ok": False, "error": problems[0].error})
        if self._scripted[method]:
            return self._scripted[method].popleft()
        if refusal is not None:
            return ApiReply(200, {"ok": False, "error": refusal})
        handler = self._handlers.get(method) or self._builtin.get(method)
        if handler is not None:
            return ApiReply(200, handler(params))
        if method in _LIST_RESULTS:
            return ApiReply(200, {"ok": True, _LIST_RESULTS[method]: [], "response_metadata": {"next_cursor": ""}})
        return ApiReply(200, {"ok": True})

    def _upload(self, request: _Request, file_id: str) -> ApiReply:
        """The upload URL of files_upload_v2's second step: a raw POST body (or a multipart `file` part)."""
        content = request.body
        if request.content_type == "multipart/form-data":
            parts = _parse_multipart(request.headers["content-type"], request.body)
            content = next((part for part in parts.values() if isinstance(part, bytes)), b"")
        with self._lock:
            pending = self._uploads.get(file_id)
            if pending is None or request.verb != "POST":
                self.spec_errors.append(f"upload: {request.verb} to unknown file id {file_id!r}")
                return ApiReply(404, "not found")
            if len(content) != pending.length:
                self.spec_errors.append(f"upload {file_id}: declared length {pending.length}, sent {len(content)}")
            pending.content = content
        return ApiReply(200, f"OK - {len(content)}")

    def _response_post(self, request: _Request, name: str) -> ApiReply:
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or request.verb != "POST":
            self._spec_error(f"response_url {name}: expected a POSTed JSON object, got {request.body!r}")
            return ApiReply(400, "invalid_payload")
        if not ({"text", "blocks", "delete_original"} & body.keys()):
            self._spec_error(f"response_url {name}: neither text nor blocks in {body}")
            return ApiReply(400, "no_text")
        self._record(self._responses, ResponsePost(name, body, request.headers))
        with self._lock:
            hold = self._held_responses.get(name)
        if hold is not None:
            hold.wait(30)  # the post is recorded, its answer withheld: as if the sender died meanwhile
        return ApiReply(200, "ok")

    def hold_responses(self, name: str, release: threading.Event) -> None:
        """Record posts to `response_url(name)` but answer them only once `release` is set (tests set it
        in a `finally`), so that a test can stop the sender between a post and its answer."""
        with self._lock:
            self._held_responses[name] = release

    # -- workspaces and OAuth ------------------------------------------------------------------------
    def add_workspace(
        self,
        team_id: str,
        *,
        name: str | None = None,
        bot_token: str | None = None,
        bot_user_id: str | None = None,
        bot_id: str | None = None,
        url: str | None = None,
        enterprise_id: str | None = None,
    ) -> Workspace:
        """Install the app in another workspace, its fields not given derived from `team_id` (see
        `Workspace.for_team`), and return it. Turns `strict_tokens` on: with two workspaces a token that
        is neither's must not pass for the default one."""
        workspace = Workspace.for_team(
            team_id,
            name=name,
            bot_token=bot_token,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            url=url,
            enterprise_id=enterprise_id,
        )
        with self._lock:
            if team_id in self._workspaces:
                raise ValueError(f"workspace {team_id} is already known to the fake")
            if workspace.bot_token in self._identities() or workspace.bot_token in self._revoked:
                raise ValueError(f"bot token {workspace.bot_token!r} is already another workspace's")
            self._workspaces[team_id] = workspace
            self.strict_tokens = True
        return workspace

    def workspace(self, team_id: str) -> Workspace:
        """The workspace `team_id` as the fake now answers for it: its bot token is a new one after a
        reinstallation that followed `revoke`."""
        with self._lock:
            workspace = self._workspaces.get(team_id)
        if workspace is None:
            raise ValueError(f"{team_id!r} is not a workspace known to the fake (add_workspace)")
        return workspace

    def workspaces(self) -> list[Workspace]:
        """The workspaces the fake answers for, the default one first."""
        with self._lock:
            return list(self._workspaces.values())

    def set_oauth_app(self, client_id: str, client_secret: str) -> None:
        """The app's OAuth credentials, which `oauth.v2.access` checks (until set it answers every exchange
        `invalid_client_id`, as Slack answers for an app it does not know)."""
        with self._lock:
            self._oauth_app = (client_id, client_secret)

    def grant(
        self,
        code: str,
        team_id: str,
        *,
        user: str = INSTALLER_ID,
        scopes: str = DEFAULT_BOT_SCOPES,
        user_scopes: str | None = None,
        redirect_uri: str | None = None,
        org_wide: bool = False,
    ) -> OAuthGrant:
        """`user` approved the app for `team_id` on Slack's authorize page, which sends the browser to the
        app's redirect URL with `code` (the test plays that part): `oauth.v2.access` exchanges the code,
        once, for the workspace's bot token and, with `user_scopes`, the installer's user token.

        A `team_id` the fake does not know is added (`add_workspace` with derived fields); with
        `redirect_uri` the exchange must send the same one, as Slack requires when the authorize step had one.
        With `org_wide`, `team_id` is an Enterprise Grid organisation's ID (E…) that installs the app for all
        of its workspaces: the answer names no team, and the token speaks for the whole organisation.
        """
        grant = OAuthGrant(code, team_id, user, scopes, user_scopes, redirect_uri)
        with self._lock:
            if code in self._grants or any(used.code == code for used in self._used_grants):
                raise ValueError(f"code {code!r} was already granted: Slack's codes are single-use")
            if team_id not in self._workspaces:
                self.add_workspace(team_id)
                if org_wide:
                    self._workspaces[team_id] = replace(self._workspaces[team_id], enterprise_id=team_id, org_wide=True)
            self._grants[code] = grant
        return grant

    def used_grants(self) -> list[OAuthGrant]:
        """The grants `oauth.v2.access` exchanged so far, oldest first."""
        with self._lock:
            return list(self._used_grants)

    def revoke(self, team_id: str) -> None:
        """Uninstall the app from `team_id`: its bot token and its installers' user tokens answer
        `token_revoked` from now on (a new installation hands out a new bot token). Slack also tells the
        app, with `tests.slack_requests.app_uninstalled` and `tokens_revoked`: the test sends those."""
        with self._lock:
            workspace = self.workspace(team_id)
            self._revoked[workspace.bot_token] = _bot_identity(workspace)
            for token, identity in list(self._user_tokens.items()):
                if identity.workspace.team_id == team_id:
                    self._revoked[token] = self._user_tokens.pop(token)

    def _identities(self) -> dict[str, _Identity]:
        """Must be called with the lock held. Every live token -> whom it speaks for."""
        bots = {workspace.bot_token: _bot_identity(workspace) for workspace in self._workspaces.values()}
        return bots | self._user_tokens

    def _authenticate(self, method: str, token: str | None) -> tuple[_Identity | None, str | None]:
        """Must be called with the lock held. Whom a call's token speaks for (None: no token, or a method
        that takes none or an app-level one), and the error Slack answers if it refuses the token."""
        spec = self._methods.get(method)
        if token is None or spec is None or not spec.needs_token or spec.token_prefix:
            return None, None
        if token in self._revoked:
            return self._revoked[token], "token_revoked"
        identity = self._identities().get(token)
        if identity is not None:
            return identity, None
        if self.strict_tokens:
            return None, "invalid_auth"
        return _bot_identity(self._workspaces[TEAM_ID]), None

    # -- files users shared --------------------------------------------------------------------------
    def host_file(
        self,
        content: bytes,
        name: str,
        mimetype: str,
        filetype: str,
        *,
        user: str = _FILE_OWNER,
        size: int | None = None,
        mode: str = "hosted",
        extra: Mapping[str, Any] | None = None,
    ) -> JsonObject:
        """Serve `content` as a file `user` uploaded; return its Slack file object, for the `files` of a
        `file_share` message (`tests.slack_requests.message(files=[...])`) and for `files.info`.

        `size` is the size the object declares (default: the content's), so a test can lie about it as a
        bot must not trust; `extra` fields are merged into the object (`title`, `original_w`, ...).
        """
        file_id = _new_file_id()
        info = _file_object(self.root_url, file_id, name, mimetype, filetype, user)
        info |= {"size": len(content) if size is None else size, "mode": mode, "is_external": mode == "external"}
        info |= dict(extra or {})
        with self._lock:
            self._hosted[file_id] = _HostedFile(content, info)
        return copy.deepcopy(info)

    def delete_file(self, file_id: str) -> None:
        """The user deleted the file: its URLs answer 404, `files.info` answers `file_deleted`."""
        with self._lock:
            self._hosted_file(file_id).deleted = True

    def fail_file(self, file_id: str, status: int, *, times: int | None = None) -> None:
        """Answer the next `times` downloads of the file (all, if None) with HTTP `status` (a 503, a 403...)."""
        with self._lock:
            self._hosted_file(file_id)
            self._file_failures[file_id] = _FileScript(status, times)

    def delay_file(self, file_id: str, seconds: float, *, times: int | None = None) -> None:
        """Answer the next `times` downloads of the file (all, if None) `seconds` late, to test the bot's
        timeout; other requests are answered meanwhile (one thread per connection)."""
        with self._lock:
            self._hosted_file(file_id)
            self._file_delays[file_id] = _FileScript(seconds, times)

    def redirect_file(self, file_id: str, location: str) -> None:
        """Answer the file's downloads with a 302 to `location` (any URL, e.g. another host's)."""
        with self._lock:
            self._hosted_file(file_id)
            self._file_redirects[file_id] = _FileScript(location)

    def _hosted_file(self, file_id: str) -> _HostedFile:
        hosted = self._hosted.get(file_id)
        if hosted is None:
            raise ValueError(f"{file_id!r} is not a file hosted with host_file")
        return hosted

    def _file_download(self, request: _Request, rest: str) -> Reply:
        """GET `<team>-<file_id>/<name>` or `<team>-<file_id>/download/<name>` (`rest`, unquoted)."""
        head, _, tail = rest.partition("/")
        team, _, file_id = head.partition("-")
        with self._lock:
            reply = self._file_reply(request, team, file_id, tail)
            authorization = request.headers.get("authorization")
            self._record(self._file_downloads, FileDownload(file_id, request.path, authorization, reply.status))
            delay = _take(self._file_delays, file_id) or 0.0
        time.sleep(delay)  # simulated slowness, not synchronisation
        return reply

    def _file_reply(self, request: _Request, team: str, file_id: str, tail: str) -> _RawReply:
        """Must be called with the lock held. Like Slack's file host, a request without the token is sent
        to the sign-in page, whether or not the file exists."""
        if request.verb != "GET":
            self.spec_errors.append(f"file download: {request.verb} {request.path} (Slack serves files to GET)")
            return _text_reply(405, "method not allowed")
        token = self._workspaces[TEAM_ID].bot_token
        if request.headers.get("authorization") != f"Bearer {token}" or token in self._revoked:
            return _text_reply(302, headers={"Location": f"{SIGNIN_URL}?redir={quote(request.path, safe='')}"})
        hosted = self._hosted.get(file_id) if team == TEAM_ID else None
        if hosted is None or hosted.deleted or tail not in (hosted.info["name"], f"download/{hosted.info['name']}"):
            return _text_reply(404, "file not found")
        if (status := _take(self._file_failures, file_id)) is not None:
            return _text_reply(status, f"scripted failure {status}")
        if (location := _take(self._file_redirects, file_id)) is not None:
            return _text_reply(302, headers={"Location": location})
        return _RawReply(200, hosted.content, {"Content-Type": hosted.info["mimetype"]})

    # -- built-in answers (called with the lock held) ----------------------------------------------
    def _builtin_handlers(self) -> dict[str, Handler]:
        return {
            "auth.test": self._auth_test,
            "auth.revoke": self._revoke_token,
            "oauth.v2.access": self._oauth_access,
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.delete": self._delete_message,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "chat.postEphemeral": lambda _: {"ok": True, "message_ts": self._next_ts()},
            "users.info": lambda p: {"ok": True, "user": self._user(str(p.get("user", "")))},
            "conversations.info": lambda p: {"ok": True, "channel": self._channel(str(p.get("channel", "")))},
            "conversations.open": self._open_conversation,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "users.conversations": self._user_conversations,
            "views.publish": self._publish_view,
            "views.open": self._open_view,
            "files.getUploadURLExternal": self._start_upload,
            "files.completeUploadExternal": self._complete_upload,
            "files.info": self._file_info,
        }

    def _auth_test(self, _: Mapping[str, Any]) -> JsonObject:
        """Who the token speaks for: a workspace's bot (with its `bot_id`, which Bolt reads after an
        installation) or an installer (a user token, no `bot_id`)."""
        caller, workspace = self._caller, self._caller.workspace
        answer: JsonObject = {
            "ok": True,
            "url": workspace.url,
            "team": workspace.name,
            "user": BOT_NAME if caller.is_bot else caller.user_id.lower(),
            "team_id": workspace.team_id,
            "user_id": caller.user_id,
        }
        answer |= {"bot_id": workspace.bot_id} if caller.is_bot else {}
        answer["is_enterprise_install"] = workspace.org_wide
        answer |= {"enterprise_id": workspace.enterprise_id} if workspace.enterprise_id else {}
        return answer

    def _revoke_token(self, params: Mapping[str, Any]) -> JsonObject:
        """`auth.revoke`: the calling token stops working, unless `test` only asks whether it would."""
        token = _token(self._headers, params)
        if token is None or _flag(params.get("test")):
            return {"ok": True, "revoked": False}
        self._revoked[token] = self._caller
        self._user_tokens.pop(token, None)
        return {"ok": True, "revoked": True}

    def _oauth_access(self, params: Mapping[str, Any]) -> JsonObject:
        """The tokens of the installation a granted code stands for, in the shape of the samples'
        oauth.v2.access.json (no `incoming_webhook`: the app asks for none; no `refresh_token`: token
        rotation is off)."""
        credentials = _client_credentials(self._headers, params)
        if self._oauth_app is None or credentials is None or credentials[0] != self._oauth_app[0]:
            return {"ok": False, "error": "invalid_client_id"}
        if credentials[1] != self._oauth_app[1]:
            return {"ok": False, "error": "bad_client_secret"}
        if params.get("grant_type") == "refresh_token":
            return {"ok": False, "error": "invalid_refresh_token"}  # no refresh token was ever handed out
        grant = self._grants.get(str(params["code"]))
        if grant is None:
            return {"ok": False, "error": "invalid_code"}  # never granted, or already exchanged
        if grant.redirect_uri is not None and params.get("redirect_uri") != grant.redirect_uri:
            return {"ok": False, "error": "bad_redirect_uri"}
        del self._grants[grant.code]
        self._record(self._used_grants, grant)
        workspace = self._installed(grant.team_id)
        authed_user: JsonObject = {"id": grant.user}  # what Slack sends when no user scopes were asked for
        if grant.user_scopes:
            token = self._user_token(workspace, grant.user)
            authed_user |= {"scope": grant.user_scopes, "access_token": token, "token_type": "user"}
        enterprise = workspace.enterprise_id
        return {
            "ok": True,
            "app_id": _APP_ID,
            "authed_user": authed_user,
            "scope": grant.scopes,
            "token_type": "bot",
            "access_token": workspace.bot_token,
            "bot_user_id": workspace.bot_user_id,
            "team": None if workspace.org_wide else {"id": workspace.team_id, "name": workspace.name},
            "enterprise": {"id": enterprise, "name": f"Enterprise {enterprise}"} if enterprise else None,
            "is_enterprise_install": workspace.org_wide,
        }

    def _installed(self, team_id: str) -> Workspace:
        """The workspace an installation is for. Slack keeps a bot's token across reinstallations, but a
        revoked one stays dead: reinstalling after an uninstall hands out a new token."""
        workspace = self._workspaces[team_id]
        if workspace.bot_token in self._revoked:
            workspace = replace(workspace, bot_token=f"xoxb-{team_id.lower()}-token-{next(self._ids)}")
            self._workspaces[team_id] = workspace
        return workspace

    def _user_token(self, workspace: Workspace, user: str) -> str:
        """The installer's live user token in the workspace, a new one if they have none."""
        identity = _Identity(workspace, user, is_bot=False)
        for token, known in self._user_tokens.items():
            if (known.workspace.team_id, known.user_id) == (workspace.team_id, user):
                self._user_tokens[token] = identity
                return token
        token = f"xoxp-{workspace.team_id.lower()}-{user.lower()}-{next(self._ids)}"
        self._user_tokens[token] = identity
        return token

    def _next_ts(self) -> str:
        micros = next(self._ids) * 100
        return f"{1_700_000_000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _bot_message(self, ts: str, thread_ts: Any, text: str) -> JsonObject:
        """A message the calling bot posts, as Slack shows it: by that workspace's bot user."""
        workspace = self._caller.workspace
        message = {
            "type": "message",
            "user": workspace.bot_user_id,
            "bot_id": workspace.bot_id,
            "team": workspace.team_id,
            "ts": ts,
            "text": text,
        }
        if thread_ts:
            message["thread_ts"] = str(thread_ts)
        return message

    def _post_message(self, params: Mapping[str, Any]) -> JsonObject:
        ts = self._next_ts()
        message = self._bot_message(ts, params.get("thread_ts"), params.get("text", ""))
        for name in ("blocks", "attachments", "metadata"):
            if name in params:
                message[name] = _json_value(params[name])
        self._messages[(str(params["channel"]), ts)] = copy.deepcopy(message)
        return {"ok": True, "channel": params["channel"], "ts": ts, "message": message}

    def _update_message(self, params: Mapping[str, Any]) -> JsonObject:
        key = (str(params["channel"]), str(params["ts"]))
        message = self._messages.get(key)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if self._is_streaming(key):
            # Slack refuses to edit a message that is still streaming: the stream has to be stopped first.
            # Undocumented; the code is the one that streaming integrations report from the live API.
            return {"ok": False, "error": "streaming_state_conflict"}
        if "text" in params or "markdown_text" in params:
            message["text"] = params.get("text", params.get("markdown_text"))
        for name in ("blocks", "attachments", "metadata"):
            if name in params:
                message[name] = _json_value(params[name])
        shown = {name: value for name, value in copy.deepcopy(message).items() if name != "ts"}
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message["text"], "message": shown}

    def _delete_message(self, params: Mapping[str, Any]) -> JsonObject:
        key = (str(params.get("channel")), str(params.get("ts")))
        if key not in self._messages:
            return {"ok": False, "error": "message_not_found"}
        if self._is_streaming(key):
            return {"ok": False, "error": "cant_delete_message"}  # reported from the live API for an open stream
        del self._messages[key]
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _is_streaming(self, key: tuple[str, str]) -> bool:
        stream = self._streams.get(key)
        return stream is not None and stream.state == "streaming"

    def _start_stream(self, params: Mapping[str, Any]) -> JsonObject:
        channel, ts, text = str(params["channel"]), self._next_ts(), _streamed_text(params)
        thread_ts = params.get("thread_ts") or None
        self._streams[(channel, ts)] = StreamedMessage(
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
            recipient_user_id=params.get("recipient_user_id"),
            recipient_team_id=params.get("recipient_team_id"),
            text=text,
            state="streaming",
            appends=((self._arrival, text),) if text else (),
        )
        self._messages[(channel, ts)] = self._bot_message(ts, thread_ts, text)
        return {"ok": True, "channel": channel, "ts": ts}

    def _append_stream(self, params: Mapping[str, Any]) -> JsonObject:
        stream = self._streamed(params)
        if stream is None:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        self._streamed_more(stream, _streamed_text(params))
        return {"ok": True, "channel": stream.channel, "ts": stream.ts}

    def _stop_stream(self, params: Mapping[str, Any]) -> JsonObject:
        stream = self._streamed(params)
        if stream is None:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        blocks = _json_value(params["blocks"]) if "blocks" in params else None
        metadata = _json_value(params["metadata"]) if "metadata" in params else None
        stopped = self._streamed_more(stream, _streamed_text(params), stop=True, blocks=blocks, metadata=metadata)
        message = self._messages[(stream.channel, stream.ts)]
        if blocks is not None:
            message["blocks"] = blocks
        if metadata is not None:
            message["metadata"] = metadata
        # the shape of slack_sdk's / @slack/web-api's ChatStopStreamResponse
        workspace = self._caller.workspace
        answer = {"type": "message", "user": workspace.bot_user_id, "bot_id": workspace.bot_id}
        answer |= {"text": stopped.text, "ts": stream.ts}
        answer |= {"thread_ts": stream.thread_ts} if stream.thread_ts else {}
        answer |= {"blocks": blocks} if blocks is not None else {}
        return {"ok": True, "channel": stream.channel, "ts": stream.ts, "message": answer}

    def _streamed(self, params: Mapping[str, Any]) -> StreamedMessage | None:
        """The stream that `channel` and `ts` name, if it still takes text."""
        stream = self._streams.get((str(params["channel"]), str(params["ts"])))
        return stream if stream is not None and stream.state == "streaming" else None

    def _streamed_more(
        self,
        stream: StreamedMessage,
        text: str,
        *,
        stop: bool = False,
        blocks: list[Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StreamedMessage:
        """Append `text` to a stream and to its visible message; with `stop`, end the stream with the
        `blocks` and `metadata` given to the stop."""
        updated = replace(
            stream,
            text=stream.text + text,
            appends=(*stream.appends, (self._arrival, text)) if text else stream.appends,
            state="stopped" if stop else "streaming",
            blocks=blocks,
            metadata=metadata,
        )
        self._streams[(stream.channel, stream.ts)] = updated
        message = self._messages.get((stream.channel, stream.ts))
        if message is not None:
            message["text"] = updated.text
        return updated

    def _conversation(self, channel: str, thread_ts: str | None) -> list[JsonObject]:
        """The bot's current messages of a channel's top level, or of one thread, oldest first."""
        messages = [message for (where, _), message in self._messages.items() if where == channel]
        if thread_ts is None:
            return self._sorted(m for m in messages if m.get("thread_ts") in (None, m["ts"]))
        return self._sorted(m for m in messages if thread_ts in (m["ts"], m.get("thread_ts")))

    @staticmethod
    def _sorted(messages: Iterable[JsonObject]) -> list[JsonObject]:
        return sorted(messages, key=lambda message: Decimal(message["ts"]))

    def _replies(self, params: Mapping[str, Any]) -> JsonObject:
        """A thread's messages, oldest first (this fake only knows what the bot posted)."""
        thread = self._conversation(str(params.get("channel")), str(params.get("ts")))
        return self._message_page(thread, params)

    def _history(self, params: Mapping[str, Any]) -> JsonObject:
        """A channel's top-level messages after `oldest` (and up to `latest`), newest first."""
        inclusive = _flag(params.get("inclusive"))
        oldest = Decimal(str(params.get("oldest") or "0"))
        latest = Decimal(str(params["latest"])) if params.get("latest") else None

        def within(message: JsonObject) -> bool:
            ts = Decimal(message["ts"])
            after = ts >= oldest if inclusive else ts > oldest
            return after and (latest is None or (ts <= latest if inclusive else ts < latest))

        top_level = [m for m in self._conversation(str(params.get("channel")), None) if within(m)]
        return self._message_page(top_level[::-1], params)

    def _message_page(self, messages: list[JsonObject], params: Mapping[str, Any]) -> JsonObject:
        page = _page(messages, params)
        if page is None:
            return {"ok": False, "error": "invalid_cursor"}
        shown, next_cursor = page
        if not _flag(params.get("include_all_metadata")):  # Slack leaves metadata out unless asked
            shown = [{name: value for name, value in m.items() if name != "metadata"} for m in shown]
        return {
            "ok": True,
            "messages": copy.deepcopy(shown),
            "has_more": bool(next_cursor),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _user_conversations(self, params: Mapping[str, Any]) -> JsonObject:
        """The channels of `memberships[user]` of the asked `types` (Slack's default: public channels)."""
        user = str(params.get("user") or self._caller.workspace.bot_user_id)
        types = {kind.strip() for kind in str(params.get("types") or "public_channel").split(",")}
        channels = [self._channel(channel_id) for channel_id in self.memberships.get(user, [])]
        listed = [
            channel
            for channel in channels
            if _conversation_type(channel) in types
            and not (_flag(params.get("exclude_archived")) and channel.get("is_archived"))
        ]
        page = _page(listed, params)
        if page is None:
            return {"ok": False, "error": "invalid_cursor"}
        shown, next_cursor = page
        return {"ok": True, "channels": shown, "response_metadata": {"next_cursor": next_cursor}}

    def _publish_view(self, params: Mapping[str, Any]) -> JsonObject:
        user_id, view = str(params["user_id"]), _json_value(params["view"])
        if params.get("hash") and params["hash"] != self._view_hashes.get(user_id):
            return {"ok": False, "error": "hash_conflict"}  # the Home tab changed since that hash was read
        view_id, view_hash = self._new_view_id()
        self._view_hashes[user_id] = view_hash
        self._views.append(PublishedView(user_id, copy.deepcopy(view)))
        return {"ok": True, "view": _shown_view(view, view_id, view_hash, self._caller.workspace)}

    def _open_view(self, params: Mapping[str, Any]) -> JsonObject:
        """A modal, opened with a slash command's or a click's trigger ID (once: Slack refuses a reused one)."""
        trigger_id, view = str(params["trigger_id"]), _json_value(params["view"])
        if trigger_id in self._used_triggers:
            return {"ok": False, "error": "invalid_trigger_id"}
        self._used_triggers.add(trigger_id)
        view_id, view_hash = self._new_view_id()
        shown = _shown_view(view, view_id, view_hash, self._caller.workspace)
        self._modals.append(OpenedModal(trigger_id, copy.deepcopy(shown)))
        return {"ok": True, "view": shown}

    def _new_view_id(self) -> tuple[str, str]:
        """A new view's ID and hash, shaped as Slack's."""
        number = next(self._ids)
        return f"V{number:010d}", f"{1_700_000_000 + number}.{number:08x}"

    def _user(self, user_id: str) -> JsonObject:
        """A member of the calling bot's workspace (this fake knows no one's home workspace but that)."""
        name, workspace = user_id.lower(), self._caller.workspace
        user = {
            "id": user_id,
            "team_id": workspace.team_id,
            "name": name,
            "real_name": f"User {user_id}",
            "deleted": False,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_bot": user_id == workspace.bot_user_id,
            "tz": "UTC",
            "profile": {"real_name": f"User {user_id}", "display_name": name},
        }
        return user | self.users.get(user_id, {})

    def _channel(self, channel_id: str) -> JsonObject:
        kind = channel_id[:1]
        channel = {
            "id": channel_id,
            "name": f"channel-{channel_id.lower()}",
            "is_channel": kind == "C",
            "is_group": kind == "G",
            "is_im": kind == "D",
            "is_private": kind in ("G", "D"),
            "is_archived": False,
            "is_member": True,
            "created": 1_700_000_000,
        }
        return channel | self.channels.get(channel_id, {})

    def _open_conversation(self, params: Mapping[str, Any]) -> JsonObject:
        users = [user for user in str(params.get("users", "")).split(",") if user]
        channel_id = params.get("channel") or ("D" if len(users) == 1 else "G") + "".join(users)
        return {"ok": True, "channel": {"id": channel_id}}

    def _file_info(self, params: Mapping[str, Any]) -> JsonObject:
        """A hosted file's object (as `host_file` returned it), without comments."""
        hosted = self._hosted.get(str(params.get("file", "")))
        if hosted is None:
            return {"ok": False, "error": "file_not_found"}
        if hosted.deleted:
            return {"ok": False, "error": "file_deleted"}
        return {
            "ok": True,
            "file": copy.deepcopy(hosted.info),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def _start_upload(self, params: Mapping[str, Any]) -> JsonObject:
        file_id = f"F{next(self._ids):08d}"
        self._uploads[file_id] = _PendingUpload(str(params["filename"]), int(params["length"]))
        return {"ok": True, "upload_url": f"{self.root_url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: Mapping[str, Any]) -> JsonObject:
        refs = _json_value(params["files"])
        pending = [self._uploads.get(ref["id"]) for ref in refs]
        if any(upload is None or upload.content is None for upload in pending):
            return {"ok": False, "error": "file_not_found"}
        channels = str(params.get("channels", "")).split(",")
        channel_id = params.get("channel_id") or channels[0] or None
        files = []
        for ref, upload in zip(refs, pending, strict=True):
            assert upload is not None and upload.content is not None
            title = ref.get("title") or upload.filename
            self._uploaded.append(
                UploadedFile(
                    ref["id"],
                    upload.filename,
                    title,
                    upload.content,
                    channel_id,
                    params.get("initial_comment"),
                    params.get("thread_ts"),
                )
            )
            files.append({"id": ref["id"], "title": title, "name": upload.filename, "size": len(upload.content)})
        return {"ok": True, "files": files}


def _streamed_text(params: Mapping[str, Any]) -> str:
    """The text a streaming call adds: its `markdown_text`, then the text of its markdown_text chunks."""
    text = params.get("markdown_text")
    chunks = _json_value(params.get("chunks")) or []
    pieces = [text if isinstance(text, str) else ""]
    pieces += [str(chunk.get("text", "")) for chunk in chunks if chunk.get("type") == "markdown_text"]
    return "".join(pieces)


def _flag(value: Any) -> bool:
    """A boolean param as slack_sdk sends it: a JSON boolean, or "true"/"1" in a query string or form."""
    return value is True or str(value).lower() in ("true", "1")


def _page(items: list[_T], params: Mapping[str, Any], default_limit: int = 100) -> tuple[list[_T], str] | None:
    """The page of `items` that `cursor` and `limit` ask for, and the cursor of the next one ("" after
    the last); None for a cursor this fake never handed out."""
    start = 0
    if cursor := str(params.get("cursor") or ""):
        try:
            start = int(base64.b64decode(cursor, validate=True).decode().removeprefix("offset:"))
        except ValueError:
            return None
    limit = int(params.get("limit") or 0) or default_limit
    end = start + limit
    next_cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return items[start:end], next_cursor


def _conversation_type(channel: Mapping[str, Any]) -> str:
    """The `types` value of `users.conversations` that lists a channel object."""
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    return "private_channel" if channel.get("is_private") else "public_channel"


_LIST_RESULTS = {
    "conversations.list": "channels",
    "conversations.members": "members",
    "users.list": "members",
}
"""Readers whose callers index into a list: answer an empty page instead of a bare `{"ok": true}`."""


def _shown_view(view: Mapping[str, Any], view_id: str, view_hash: str, workspace: Workspace) -> JsonObject:
    """A view as Slack answers views.publish and views.open (the shape of the samples' views.open.json)
    in the workspace of the bot that published or opened it."""
    return {
        "id": view_id,
        "team_id": workspace.team_id,
        "type": view["type"],
        "blocks": view["blocks"],
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "external_id": view.get("external_id", ""),
        "state": {"values": {}},
        "hash": view_hash,
        "title": view.get("title"),
        "close": view.get("close"),
        "submit": view.get("submit"),
        "clear_on_close": False,
        "notify_on_close": False,
        "submit_disabled": False,
        "root_view_id": view_id,
        "previous_view_id": None,
        "app_id": _APP_ID,
        "app_installed_team_id": workspace.team_id,
        "bot_id": workspace.bot_id,
    }
