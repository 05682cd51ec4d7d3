"""A scripted OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.

It speaks real HTTP, so the real `openai` client and Pixeltable's scheduler are exercised. A request with
`"stream": true` is answered as OpenAI answers it: server-sent `chat.completion.chunk` events over a chunked
HTTP/1.1 body, flushed one by one, so that time to first token and a model failing midway can be tested
(`Reply.chunks`, `Reply.chunk_delay`, `Reply.cut_after`, `ScriptedOpenAI.first_token_at`). Every request
body is validated against `CreateChatCompletionRequest` (chat) or `CreateEmbeddingRequest` (embeddings)
from OpenAI's published OpenAPI document: a malformed request fails the test (via `spec_errors`)
instead of failing in production. Its embeddings make texts that share words similar (hashed bags of
word stems), which is what recall needs to be tested without a real model. They come as OpenAI
sends them: floats, or base64 of little-endian float32 when asked (`encoding_format`); `base64` makes it
behave like servers that ignore that format or refuse it.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import jsonschema
import referencing
import referencing.jsonschema

from tests.specs import OPENAI_SPEC

SPEC_PATH = OPENAI_SPEC


@dataclass
class Reply:
    """What the server answers to one chat completion request.

    `text` and `tool_calls` make a normal completion; `status`/`body`/`headers` script a failure
    (e.g. `Reply(status=429, headers={"Retry-After": "1"})` or `Reply(body="not json")`), answered as a
    plain JSON error even to a streaming request, as OpenAI refuses a request before any event is sent.
    `delay` (added to the server's) is the time from the request's arrival to the answer, or, when
    streaming, to the first token. The last three fields only shape a streamed answer.
    """

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    status: int = 200
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: list[str] | None = None
    """The content deltas of a streamed answer; None: `text` split into words, each with the
    whitespace after it (so that joined they are `text` again)."""
    chunk_delay: float = 0.0
    """Seconds between two content deltas: a model's generation speed."""
    cut_after: int | None = None
    """Close the connection after this many content deltas without finishing the chunked body (before
    the tool calls and the finish if there are fewer): a model that fails midway, which the client must
    see as an error rather than as a short answer."""


Responder = Callable[[dict[str, Any]], Reply]
Base64 = Literal["honour", "ignore", "refuse"]
DEFAULT_EMBEDDING_SIZE = 1536  # text-embedding-3-small's, when a request names no `dimensions`
_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
_ARGUMENT_FRAGMENT = 8  # characters of tool-call arguments per streamed delta, a few tokens' worth like OpenAI's
_WORD = re.compile(r"\w+")
_STREAMED_WORD = re.compile(r"(?:^\s+)?\S+\s*")  # a word and the whitespace after it (the first: before it too)
_SUFFIXES = ("ing", "ed", "es", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def embed_text(text: str, size: int) -> list[float]:
    """A unit vector of `size` in which texts sharing word stems are close (words of 3+ letters)."""
    vector = [0.0] * size
    for word in _WORD.findall(text.lower()):
        if len(word) < 3:
            continue
        digest = hashlib.blake2b(_stem(word).encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % size
        vector[slot] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0] = 1.0  # no words: all such texts alike, far from the rest
        return vector
    return [x / norm for x in vector]


def _base64(vector: list[float]) -> str:
    """A vector as OpenAI sends it when asked for base64: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def last_user_text(body: dict[str, Any]) -> str:
    """The content of the last user message of a request."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # text and image parts: the text
                return " ".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
            return str(content)
    return ""


def echo(body: dict[str, Any]) -> Reply:
    """Default behaviour: answer `echo: <last user message>`."""
    return Reply(text=f"echo: {last_user_text(body)}")


def blocked_until(release: threading.Event, held: list[str]) -> Callable[[dict[str, Any]], Reply]:
    """A model that notes each request's user text in `held`, then holds it until `release` is set
    (tests set it in a `finally`, so nothing is held past the test)."""

    def respond(body: dict[str, Any]) -> Reply:
        held.append(last_user_text(body))
        release.wait(30)
        return echo(body)

    return respond


def _content_deltas(reply: Reply) -> list[str]:
    if reply.chunks is not None:
        return list(reply.chunks)
    text = reply.text or ""
    return _STREAMED_WORD.findall(text) or ([text] if text else [])


def _sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event as OpenAI writes it: a `data:` line and a blank line."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@dataclass(frozen=True)
class _Event:
    """One server-sent event of a streamed answer; `kind` decides how the writer paces it."""

    kind: str  # "role", "content", "tool_call", "finish", "usage" or "done"
    data: bytes
    content: str = ""


@dataclass(frozen=True)
class _StreamedAnswer:
    """A streamed answer, prepared while serving the request and written by the request handler."""

    reply: Reply
    events: list[_Event]
    first_token_due: float
    """`time.monotonic()` before which no event goes out: the scripted time to first token."""


class _SpecValidator:
    """Validates request bodies against one schema of the OpenAPI document."""

    def __init__(self, spec_path: Path, schema_name: str) -> None:
        spec = json.loads(spec_path.read_text())
        resource = referencing.Resource.from_contents(spec, default_specification=referencing.jsonschema.DRAFT202012)
        registry: referencing.Registry[Any] = referencing.Registry().with_resource("urn:openai", resource)
        self._validator = jsonschema.Draft202012Validator(
            {"$ref": f"urn:openai#/components/schemas/{schema_name}"}, registry=registry
        )

    def errors(self, body: Any) -> list[str]:
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in self._validator.iter_errors(body)]


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # like a real server: a burst of connections is queued, not dropped
    daemon_threads = True


class ScriptedOpenAI:
    """An OpenAI-compatible `/v1/chat/completions` endpoint whose answers a test scripts.

    Answers come, in order of precedence, from the queue (`then`), the first matching rule (`on`),
    and the default responder (`echo` unless replaced with `respond_with`).
    """

    def __init__(self, spec_path: Path = SPEC_PATH, delay: float = 0.0, validate_later: bool = False) -> None:
        """`validate_later`: bodies are validated when `spec_errors` is read, not while they are served.
        For benchmarks: jsonschema takes ~4 ms of this process's CPU per chat request, which on a small
        machine is taken from the bot being measured (half of the load generator's Python time at 50
        channels) and delays the load generator's own threads timing the acknowledgements."""
        self.delay = delay  # seconds added to every answer; tests may change it, `reset` restores it
        self._initial_delay = delay
        self.requests: list[dict[str, Any]] = []
        self._spec_errors: list[str] = []
        self._validate_later = validate_later
        self._unvalidated: list[tuple[_SpecValidator, dict[str, Any]]] = []
        self.cut_off = 0  # requests whose client went away before sending all of the body
        self._validator = _SpecValidator(spec_path, "CreateChatCompletionRequest")
        self._embedding_validator = _SpecValidator(spec_path, "CreateEmbeddingRequest")
        self.embedding_requests: list[dict[str, Any]] = []
        self.embedding_failure: Reply | None = None  # answers every embedding request while set
        self.base64: Base64 = "honour"  # asked for base64 vectors: send them, send floats, or refuse
        self.base64_refusal = 400  # the status of a refusal (422 from servers with a typed schema)
        self._queue: collections.deque[Reply] = collections.deque()
        self._rules: list[tuple[Callable[[dict[str, Any]], bool], Reply | Responder]] = []
        self._default: Responder = echo
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.first_token_at: list[float] = []
        """`time.monotonic()` right after each stream's first non-empty content delta was flushed, in that
        order: for benchmarks measuring time to first token (cleared by `reset`)."""
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def spec_errors(self) -> list[str]:
        """What was wrong with the requests served (since `reset`), one line per error; with
        `validate_later`, the requests not validated yet are validated first."""
        with self._lock:
            unvalidated, self._unvalidated = self._unvalidated, []
        errors = [error for validator, body in unvalidated for error in validator.errors(body)]
        with self._lock:
            self._spec_errors.extend(errors)
            return self._spec_errors

    def _check(self, validator: _SpecValidator, body: dict[str, Any]) -> list[str]:
        if not self._validate_later:
            return validator.errors(body)  # ~4 ms for a chat request
        with self._lock:
            self._unvalidated.append((validator, body))
        return []

    # -- scripting -------------------------------------------------------------------------------------
    def then(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def on(self, matches: Callable[[dict[str, Any]], bool], reply: Reply | Responder) -> None:
        """Answer every request for which `matches(body)` is true with `reply`."""
        with self._lock:
            self._rules.append((matches, reply))

    def respond_with(self, responder: Responder) -> None:
        """Replace the default responder."""
        self._default = responder

    def reset(self) -> None:
        """Forget everything a test scripted or saw: queue, rules, default responder, delay, requests."""
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self.requests.clear()
            self.embedding_requests.clear()
            self.embedding_failure = None
            self.base64, self.base64_refusal = "honour", 400
            self._spec_errors.clear()
            self._unvalidated.clear()
            self.cut_off = 0
            self.first_token_at.clear()
            self._default = echo
            self.delay = self._initial_delay

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll until at least `count` requests arrived; raise with what came otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} model requests, got {len(self.requests)}")

    # -- serving ---------------------------------------------------------------------------------------
    def _choose(self, body: dict[str, Any]) -> Reply:
        errors = self._check(self._validator, body)  # outside the lock, so a burst is not serialised here
        with self._lock:
            self.requests.append(body)
            self._spec_errors.extend(errors)
            if self._queue:
                return self._queue.popleft()
            rule = next((reply for matches, reply in self._rules if matches(body)), None)
        if rule is None:
            return self._default(body)
        return rule if isinstance(rule, Reply) else rule(body)

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
                for name, args in reply.tool_calls
            ]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": dict(_USAGE),
        }

    def _stream_events(self, body: dict[str, Any], reply: Reply) -> list[_Event]:
        """The `chat.completion.chunk` events OpenAI sends for `reply`: the role, the content deltas, each
        tool call (id and name first, then its arguments in fragments), the finish reason, the usage
        when `stream_options.include_usage` asks for it, and `[DONE]`."""
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return _sse({**head, "choices": [choice]} | ({"usage": None} if include_usage else {}))

        events = [_Event("role", chunk({"role": "assistant", "content": "", "refusal": None}))]
        events += [_Event("content", chunk({"content": delta}), delta) for delta in _content_deltas(reply)]
        for index, (name, args) in enumerate(reply.tool_calls):
            arguments = args if isinstance(args, str) else json.dumps(args)
            function = {"name": name, "arguments": ""}
            call = {"index": index, "id": f"call_{next(self._ids)}", "type": "function", "function": function}
            events.append(_Event("tool_call", chunk({"tool_calls": [call]})))
            for start in range(0, len(arguments), _ARGUMENT_FRAGMENT):
                fragment = {"index": index, "function": {"arguments": arguments[start : start + _ARGUMENT_FRAGMENT]}}
                events.append(_Event("tool_call", chunk({"tool_calls": [fragment]})))
        events.append(_Event("finish", chunk({}, "tool_calls" if reply.tool_calls else "stop")))
        if include_usage:
            events.append(_Event("usage", _sse({**head, "choices": [], "usage": dict(_USAGE)})))
        events.append(_Event("done", b"data: [DONE]\n\n"))
        return events

    def _first_token_sent(self) -> None:
        with self._lock:
            self.first_token_at.append(time.monotonic())

    def _handle(self, path: str, raw: bytes) -> tuple[int, dict[str, str], bytes] | _StreamedAnswer:
        arrived = time.monotonic()  # the scripted latency counts from here, whatever this server does
        if path.rstrip("/") not in ("/v1/chat/completions", "/v1/embeddings"):
            return 404, {}, b'{"error": {"message": "not found"}}'
        try:
            body = json.loads(raw)
        except ValueError:
            with self._lock:
                self._spec_errors.append("request body is not JSON")
            return 400, {}, b'{"error": {"message": "invalid JSON"}}'
        if path.rstrip("/") == "/v1/embeddings":
            return self._embeddings(body)
        reply = self._choose(body)
        due = arrived + self.delay + reply.delay
        if body.get("stream") is True and reply.status == 200 and reply.body is None:
            return _StreamedAnswer(reply, self._stream_events(body, reply), due)  # the handler keeps the time
        time.sleep(max(0.0, due - time.monotonic()))  # model latency, not synchronisation
        if reply.status != 200 or reply.body is not None:
            default_error = json.dumps({"error": {"message": f"scripted {reply.status}", "type": "server_error"}})
            return reply.status, reply.headers, (reply.body or default_error).encode()
        return 200, reply.headers, json.dumps(self._completion(body, reply)).encode()

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        errors = self._check(self._embedding_validator, body)
        with self._lock:
            self.embedding_requests.append(body)
            self._spec_errors.extend(errors)
            failure, as_base64 = self.embedding_failure, body.get("encoding_format") == "base64"
        if failure is not None:
            time.sleep(failure.delay)
            error = json.dumps({"error": {"message": f"scripted {failure.status}", "type": "server_error"}})
            return failure.status, failure.headers, (failure.body or error).encode()
        if as_base64 and self.base64 == "refuse":  # as older vLLM answered
            error = json.dumps({"error": {"message": "base64 encoding is not supported", "type": "BadRequestError"}})
            return self.base64_refusal, {}, error.encode()
        encode = _base64 if as_base64 and self.base64 == "honour" else lambda vector: vector
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        size = int(body.get("dimensions") or DEFAULT_EMBEDDING_SIZE)
        data = [
            {"object": "embedding", "index": i, "embedding": encode(embed_text(str(t), size))}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        response = {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        return 200, {}, json.dumps(response).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in separate writes: without this, Nagle's algorithm and the
            # client's delayed ACK add 40 ms to every response, which no real server does
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                declared = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(declared)
                if len(raw) < declared:  # the client went away mid-request (a bot killed by a test)
                    with server._lock:
                        server.cut_off += 1
                    return
                answer = server._handle(self.path, raw)
                if isinstance(answer, _StreamedAnswer):
                    self._stream(answer)
                    return
                status, headers, payload = answer
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, answer: _StreamedAnswer) -> None:
                """Server-sent events in a chunked body, each flushed as written and paced as scripted.

                Chunked, not delimited by closing the connection: then a connection cut midway is an
                incomplete body, which httpx raises, rather than an early end it would take for the
                whole answer.
                """
                reply = answer.reply
                self.send_response(200)
                content_type = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
                for name, value in {**content_type, **reply.headers, "Transfer-Encoding": "chunked"}.items():
                    self.send_header(name, value)
                self.end_headers()  # the headers go out at once; only the events wait for the first token
                time.sleep(max(0.0, answer.first_token_due - time.monotonic()))  # model latency, not sync
                sent, first_token_seen, cut_after = 0, False, reply.cut_after
                try:
                    for event in answer.events:
                        content = event.kind == "content"
                        if cut_after is not None and event.kind != "role" and (not content or sent >= cut_after):
                            self._cut()
                            return
                        if content and sent:
                            time.sleep(reply.chunk_delay)  # generation speed, not synchronisation
                        # the zero-length chunk that ends the body goes with the last event: a client that
                        # stops reading at `[DONE]` has then read the whole body and can reuse the connection
                        self._write_chunk(event.data, last=event.kind == "done")
                        if content:
                            sent += 1
                            if event.content and not first_token_seen:
                                first_token_seen = True
                                server._first_token_sent()
                except OSError:  # the client went away mid-stream: nothing left to answer
                    self.close_connection = True

            def _write_chunk(self, data: bytes, *, last: bool = False) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" + (b"0\r\n\r\n" if last else b""))
                self.wfile.flush()

            def _cut(self) -> None:
                """Drop the connection with the chunked body unfinished, as a failing upstream does."""
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def tool_names(body: dict[str, Any]) -> list[str]:
    """Names of the tools offered in a request."""
    return [tool["function"]["name"] for tool in body.get("tools", [])]


def has_tool_results(body: dict[str, Any]) -> bool:
    """Whether the request carries tool results (a later round of tool use)."""
    return any(message.get("role") == "tool" for message in body.get("messages", []))


def iter_messages(requests: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for body in requests:
        yield from body.get("messages", [])
