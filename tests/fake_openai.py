"""A scripted OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.

It speaks real HTTP, so the real `openai` client and Pixeltable's scheduler are exercised. Every request
body is validated against `CreateChatCompletionRequest` (chat) or `CreateEmbeddingRequest` (embeddings)
from OpenAI's published OpenAPI document: a malformed request fails the test (via `spec_errors`)
instead of failing in production. Its embeddings make texts that share words similar (hashed bags of
word stems), which is what recall needs to be tested without a real model.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from tests.specs import OPENAI_SPEC

SPEC_PATH = OPENAI_SPEC


@dataclass
class Reply:
    """What the server answers to one chat completion request.

    `text` and `tool_calls` make a normal completion; `status`/`body`/`headers` script a failure
    (e.g. `Reply(status=429, headers={"Retry-After": "1"})` or `Reply(body="not json")`).
    """

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    status: int = 200
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[dict[str, Any]], Reply]
DEFAULT_EMBEDDING_SIZE = 1536  # text-embedding-3-small's, when a request names no `dimensions`
_WORD = re.compile(r"\w+")
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


def last_user_text(body: dict[str, Any]) -> str:
    """The content of the last user message of a request."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content"))
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

    def __init__(self, spec_path: Path = SPEC_PATH, delay: float = 0.0) -> None:
        self.delay = delay  # seconds added to every answer; tests may change it, `reset` restores it
        self._initial_delay = delay
        self.requests: list[dict[str, Any]] = []
        self.spec_errors: list[str] = []
        self._validator = _SpecValidator(spec_path, "CreateChatCompletionRequest")
        self._embedding_validator = _SpecValidator(spec_path, "CreateEmbeddingRequest")
        self.embedding_requests: list[dict[str, Any]] = []
        self.embedding_failure: Reply | None = None  # answers every embedding request while set
        self._queue: collections.deque[Reply] = collections.deque()
        self._rules: list[tuple[Callable[[dict[str, Any]], bool], Reply | Responder]] = []
        self._default: Responder = echo
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
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
            self.spec_errors.clear()
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
        errors = self._validator.errors(body)  # ~4 ms: outside the lock, so a burst is not serialised here
        with self._lock:
            self.requests.append(body)
            self.spec_errors.extend(errors)
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
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def _handle(self, path: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        arrived = time.monotonic()  # the scripted latency counts from here, whatever this server does
        if path.rstrip("/") not in ("/v1/chat/completions", "/v1/embeddings"):
            return 404, {}, b'{"error": {"message": "not found"}}'
        try:
            body = json.loads(raw)
        except ValueError:
            self.spec_errors.append("request body is not JSON")
            return 400, {}, b'{"error": {"message": "invalid JSON"}}'
        if path.rstrip("/") == "/v1/embeddings":
            return self._embeddings(body)
        reply = self._choose(body)
        time.sleep(max(0.0, arrived + self.delay + reply.delay - time.monotonic()))  # model latency, not sync
        if reply.status != 200 or reply.body is not None:
            default_error = json.dumps({"error": {"message": f"scripted {reply.status}", "type": "server_error"}})
            return reply.status, reply.headers, (reply.body or default_error).encode()
        return 200, reply.headers, json.dumps(self._completion(body, reply)).encode()

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        errors = self._embedding_validator.errors(body)
        with self._lock:
            self.embedding_requests.append(body)
            self.spec_errors.extend(errors)
            failure = self.embedding_failure
        if failure is not None:
            time.sleep(failure.delay)
            error = json.dumps({"error": {"message": f"scripted {failure.status}", "type": "server_error"}})
            return failure.status, failure.headers, (failure.body or error).encode()
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        size = int(body.get("dimensions") or DEFAULT_EMBEDDING_SIZE)
        data = [{"object": "embedding", "index": i, "embedding": embed_text(str(t), size)} for i, t in enumerate(texts)]
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
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, payload = server._handle(self.path, raw)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

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
