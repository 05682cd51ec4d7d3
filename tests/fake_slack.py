"""A fake Slack Web API on 127.0.0.1 for end-to-end tests.

It speaks real HTTP, so the unmodified `slack_sdk.WebClient` and slack-bolt are exercised: point them at
`FakeSlack.base_url`. Every Web API request is checked against Slack's published Web API spec (plus
hand-written rules for methods newer than the 2020 spec), so a call real Slack would reject fails the
test through `spec_errors` instead of passing silently against a lenient mock.

Besides `/api/<method>`, the server hosts the two other URLs a bot talks to: the upload URLs handed out
by `files.getUploadURLExternal` (`/upload/<file_id>`) and slash-command `response_url`s
(`/response/<name>`).
"""

from __future__ import annotations

import collections
import email.message
import email.parser
import email.policy
import functools
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
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

    @property
    def token(self) -> str | None:
        """The token the call was made with."""
        return _token(self.headers, self.params)

    def json_param(self, name: str) -> Any:
        """A JSON-valued param (`blocks`, `attachments`, ...) decoded, whether sent as form or JSON."""
        return _json_value(self.params.get(name))


def _token(headers: Mapping[str, str], params: Mapping[str, Any]) -> str | None:
    """Bearer header first, then the `token` param, like Slack."""
    auth = headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token")
    return token if isinstance(token, str) and token else None


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
class _MethodSpec:
    params: Mapping[str, _Param]
    accepts_json: bool
    needs_token: bool = True
    check: Callable[[Mapping[str, Any]], list[str]] | None = None
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
    # Socket Mode's WebSocket URL; only an app-level token may ask. No built-in answer: a Socket Mode
    # server (`tests.fake_socket_mode.FakeSocketMode`) registers one with `set_handler`.
    "apps.connections.open": _MethodSpec({}, accepts_json=False, token_prefix="xapp-"),
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


@dataclass(frozen=True)
class _Problem:
    error: str
    """The Slack error code answered."""
    detail: str
    """What goes into `spec_errors`."""


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
    details += spec.check(params) if spec.check else []
    return [_Problem("invalid_arguments", detail) for detail in details]


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # like a real server: a burst of connections is queued, not dropped

    def __init__(self, dispatch: Callable[[_Request], ApiReply]) -> None:
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
        is_json = not isinstance(reply.body, str)
        payload = (json.dumps(reply.body) if is_json else str(reply.body)).encode()
        self.send_response(reply.status)
        content_type = "application/json; charset=utf-8" if is_json else "text/plain; charset=utf-8"
        for name, value in {"Content-Type": content_type, **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

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
    queue of `fail_next`, a handler from `set_handler`, the built-in realistic answer, `{"ok": true}`.
    `users` and `channels` map ids to fields merged into the built-in `users.info` / `conversations.info`
    objects, e.g. `fake.users["U1"] = {"is_admin": True}`.
    """

    def __init__(self, specs_dir: Path = DEFAULT_SPECS_DIR) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.spec_errors: list[str] = []
        self._methods = _load_methods(specs_dir / WEB_API_SPEC)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[SlackCall] = []
        self._responses: list[ResponsePost] = []
        self._uploads: dict[str, _PendingUpload] = {}
        self._uploaded: list[UploadedFile] = []
        self._scripted: dict[str, collections.deque[ApiReply]] = collections.defaultdict(collections.deque)
        self._handlers: dict[str, Handler] = {}
        self._delays: dict[str | None, float] = {}
        self._held_responses: dict[str, threading.Event] = {}
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
        """Forget traffic, errors, scripting, `users` and `channels`; keep serving on the same port."""
        with self._lock:
            for recorded in (self._calls, self._responses, self._uploaded, self.spec_errors):
                recorded.clear()
            self.users.clear()
            self.channels.clear()
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

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = 10.0) -> list[SlackCall]:
        """Block until at least `count` calls of `method` arrived; return them all (AssertionError if not)."""
        return self._wait(f"{method} calls", lambda: self.calls(method), count, timeout)

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
    def _dispatch(self, request: _Request) -> ApiReply:
        routes = {"/api/": self._api_call, "/upload/": self._upload, "/response/": self._response_post}
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
        try:
            params, is_json = _parse_params(request)
            problems = self._problems(request, method, params, is_json)
        except ValueError as exc:
            params, problems = {}, [_Problem("invalid_form_data", f"malformed body: {exc}")]
        with self._lock:
            reply = self._reply(method, params, problems)
            call = SlackCall(method, params, request.headers, request.verb, reply.status, reply.body)
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

    def _reply(self, method: str, params: Mapping[str, Any], problems: list[_Problem]) -> ApiReply:
        """Must be called with the lock held."""
        if problems:
            self.spec_errors.extend(f"{method}: {problem.detail} (params: {dict(params)})" for problem in problems)
            return ApiReply(200, {"ok": False, "error": problems[0].error})
        if self._scripted[method]:
            return self._scripted[method].popleft()
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

    # -- built-in answers (called with the lock held) ----------------------------------------------
    def _builtin_handlers(self) -> dict[str, Handler]:
        return {
            "auth.test": lambda _: {
                "ok": True,
                "url": TEAM_URL,
                "team": TEAM_NAME,
                "user": BOT_NAME,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            },
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.delete": lambda p: {"ok": True, "channel": p.get("channel"), "ts": p.get("ts")},
            "chat.postEphemeral": lambda _: {"ok": True, "message_ts": self._next_ts()},
            "users.info": lambda p: {"ok": True, "user": self._user(str(p.get("user", "")))},
            "conversations.info": lambda p: {"ok": True, "channel": self._channel(str(p.get("channel", "")))},
            "conversations.open": self._open_conversation,
            "conversations.replies": self._replies,
            "files.getUploadURLExternal": self._start_upload,
            "files.completeUploadExternal": self._complete_upload,
        }

    def _next_ts(self) -> str:
        micros = next(self._ids) * 100
        return f"{1_700_000_000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _post_message(self, params: Mapping[str, Any]) -> JsonObject:
        ts = self._next_ts()
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "team": TEAM_ID, "ts": ts}
        message["text"] = params.get("text", "")
        if "thread_ts" in params:
            message["thread_ts"] = params["thread_ts"]
        for name in ("blocks", "attachments", "metadata"):
            if name in params:
                message[name] = _json_value(params[name])
        return {"ok": True, "channel": params["channel"], "ts": ts, "message": message}

    def _replies(self, params: Mapping[str, Any]) -> JsonObject:
        """The bot's posts in a thread (this fake only knows what the bot posted)."""
        channel, thread = params.get("channel"), params.get("ts")
        messages = []
        for call in self._calls:
            answer = call.response
            if call.method != "chat.postMessage" or not isinstance(answer, Mapping) or not answer.get("ok"):
                continue
            if answer["channel"] == channel and answer["message"].get("thread_ts") == thread:
                messages.append(answer["message"])
        return {"ok": True, "messages": messages, "has_more": False}

    def _update_message(self, params: Mapping[str, Any]) -> JsonObject:
        text = params.get("text", "")
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": text}
        return {
            "ok": True,
            "channel": params["channel"],
            "ts": params["ts"],
            "text": text,
            "message": message,
        }

    def _user(self, user_id: str) -> JsonObject:
        name = user_id.lower()
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": f"User {user_id}",
            "deleted": False,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_bot": user_id == BOT_USER_ID,
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


_LIST_RESULTS = {
    "conversations.history": "messages",
    "conversations.replies": "messages",
    "conversations.list": "channels",
    "conversations.members": "members",
    "users.list": "members",
}
"""Readers whose callers index into a list: answer an empty page instead of a bare `{"ok": true}`."""
