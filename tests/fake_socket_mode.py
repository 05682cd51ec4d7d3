"""Slack's Socket Mode endpoint on 127.0.0.1, for end-to-end tests of the bot in Socket Mode.

In Socket Mode the app opens the connection: it calls `apps.connections.open` with its app-level token
(`xapp-…`), gets a one-time WebSocket URL, connects, receives `hello`, and from then on Slack pushes
envelopes (`events_api`, `slash_commands`, …) that the app acknowledges by sending back
`{"envelope_id": …}`, with a `payload` where the envelope `accepts_response_payload` (a slash
command's ephemeral answer). This fake is that endpoint: a real WebSocket server (the `websockets`
library), so slack_sdk's built-in Socket Mode client runs unmodified; attached to a `FakeSlack`, it
answers `apps.connections.open` with its own URL.

    with FakeSocketMode(slack) as socket_mode:  # after `slack.reset()`, which drops the handler
        ...start the bot with SLACK_APP_TOKEN=xapp-...
        socket_mode.wait_for_connection()
        envelope = socket_mode.push_event(mention("hi").payload)
        ack = socket_mode.wait_for_ack(envelope)

Anything the app sends that Slack would not accept (an ack of an unknown envelope, a second ack, a
payload where none is accepted, a URL that was never issued or is used twice) lands in `spec_errors`.
"""

from __future__ import annotations

import http
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from tests.fake_slack import FakeSlack
from tests.slack_requests import APP_ID

LINK_PATH = "/link/"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Envelope:
    """One envelope pushed to the app, exactly as sent."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    message: dict[str, Any]
    """The whole JSON object sent over the WebSocket."""
    sent_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class SocketAck:
    """The app's acknowledgement of an envelope."""

    envelope_id: str
    payload: dict[str, Any] | None
    """The response payload (a slash command's answer), if the app sent one."""
    elapsed: float
    """Seconds from sending the envelope to its ack: Slack retries events after 3."""


@dataclass
class SocketConnection:
    """One WebSocket connection from the app."""

    ticket: str
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class FakeSocketMode:
    """A Socket Mode WebSocket server; attach it to a `FakeSlack` to hand its URL to apps.

    Envelopes go to the newest open connection (Slack picks any of an app's connections).
    """

    def __init__(self, slack: FakeSlack | None = None, app_id: str = APP_ID) -> None:
        self.app_id = app_id
        self.spec_errors: list[str] = []
        self._slack = slack
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tickets: dict[str, bool] = {}  # ticket -> used
        self._connections: list[SocketConnection] = []
        self._sockets: dict[int, ServerConnection] = {}  # index in _connections -> its socket
        self._envelopes: dict[str, Envelope] = {}
        self._acks: list[SocketAck] = []
        self._server: Server = serve(
            self._serve_connection,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            compression=None,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-socket-mode", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    def start(self) -> FakeSocketMode:
        self._thread.start()
        if self._slack is not None:
            self._slack.set_handler("apps.connections.open", lambda _: {"ok": True, "url": self.issue_url()})
        return self

    def stop(self) -> None:
        if self._slack is not None:
            self._slack.set_handler("apps.connections.open", None)
        self._server.shutdown()

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def issue_url(self) -> str:
        """A one-time connection URL, as `apps.connections.open` hands out (Slack's are `wss://…/link/?ticket=…`)."""
        ticket = uuid.uuid4().hex
        with self._lock:
            self._tickets[ticket] = False
        return f"{self.root_url}{LINK_PATH}?ticket={ticket}&app_id={self.app_id}"

    # -- pushing -----------------------------------------------------------------------------------
    def push(self, kind: str, payload: Mapping[str, Any], *, accepts_response_payload: bool, **extra: Any) -> Envelope:
        """Send an envelope of `kind` to the app; `extra` fields go into the envelope (e.g. `retry_attempt`)."""
        envelope_id = str(uuid.uuid4())
        message = {
            "envelope_id": envelope_id,
            "payload": dict(payload),
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            **extra,
        }
        envelope = Envelope(envelope_id, kind, dict(payload), accepts_response_payload, message)
        with self._lock:
            socket = self._newest_open_socket()
            self._envelopes[envelope_id] = envelope
        socket.send(json.dumps(message))
        return envelope

    def push_event(
        self, event_callback: Mapping[str, Any], *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> Envelope:
        """An Events API `event_callback` (e.g. `mention(...).payload`); retries carry `retry_attempt` > 0."""
        return self.push(
            "events_api",
            event_callback,
            accepts_response_payload=False,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    def push_slash_command(self, command: Mapping[str, Any]) -> Envelope:
        """A slash command's fields (e.g. `slash_command(...).payload`); the ack may carry the answer."""
        return self.push("slash_commands", command, accepts_response_payload=True)

    def _newest_open_socket(self) -> ServerConnection:
        for index in reversed(range(len(self._connections))):
            if self._connections[index].is_open and index in self._sockets:
                return self._sockets[index]
        raise AssertionError("no app is connected to the Socket Mode server")

    # -- inspection --------------------------------------------------------------------------------
    def connections(self) -> list[SocketConnection]:
        """Every connection so far, oldest first."""
        with self._lock:
            return list(self._connections)

    def connected(self) -> bool:
        """Whether an app is connected now (it has been sent `hello`)."""
        with self._lock:
            return any(connection.is_open for connection in self._connections)

    def acks(self) -> list[SocketAck]:
        with self._lock:
            return list(self._acks)

    def wait_for_connection(self, count: int = 1, timeout: float = 10.0) -> list[SocketConnection]:
        """Block until `count` connections were opened; return them all."""
        return self._wait(f"{count} connection(s)", lambda: len(self._connections) >= count, self.connections, timeout)

    def wait_until_disconnected(self, timeout: float = 10.0) -> list[SocketConnection]:
        """Block until no connection is open (the app closed it); return them all."""
        return self._wait("every connection closed", lambda: not self.connected(), self.connections, timeout)

    def wait_for_ack(self, envelope: Envelope, timeout: float = 10.0) -> SocketAck:
        """Block until the app acknowledged `envelope`; return the ack."""

        def ack() -> SocketAck | None:
            return next((a for a in self._acks if a.envelope_id == envelope.envelope_id), None)

        found = self._wait(
            f"the ack of {envelope.type} {envelope.envelope_id}", lambda: ack() is not None, ack, timeout
        )
        assert found is not None
        return found

    def _wait(self, what: str, done: Callable[[], bool], result: Callable[[], _T], timeout: float) -> _T:
        with self._changed:
            if self._changed.wait_for(done, timeout):
                return result()
            raise AssertionError(
                f"no {what} within {timeout}s; connections: {self._connections}, acks: {self._acks}, "
                f"spec errors: {self.spec_errors}"
            )

    # -- serving -----------------------------------------------------------------------------------
    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse, as Slack does, a URL that `apps.connections.open` did not issue or that was used already."""
        url = urlsplit(request.path)
        ticket = parse_qs(url.query).get("ticket", [""])[0]
        with self._lock:
            if url.path == LINK_PATH and self._tickets.get(ticket) is False:
                self._tickets[ticket] = True
                return None
            self.spec_errors.append(f"connection to {request.path!r}: not a URL issued for one connection")
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "invalid ticket\n")

    def _serve_connection(self, socket: ServerConnection) -> None:
        ticket = parse_qs(urlsplit(socket.request.path if socket.request else "").query)["ticket"][0]
        connection = SocketConnection(ticket)
        with self._changed:
            self._connections.append(connection)
            index = len(self._connections) - 1
            self._sockets[index] = socket
            hello = {
                "type": "hello",
                "num_connections": sum(c.is_open for c in self._connections),
                "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
            socket.send(json.dumps(hello))
            self._changed.notify_all()
        try:
            for raw in socket:
                self._receive(raw)
        except ConnectionClosed:
            pass  # the app dropped the connection without a close frame; that is a disconnect too
        finally:
            with self._changed:
                connection.closed_at = time.monotonic()
                self._sockets.pop(index, None)
                self._changed.notify_all()

    def _receive(self, raw: str | bytes) -> None:
        """An ack from the app: `{"envelope_id": ..., "payload": {...}?}`."""
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        with self._changed:
            envelope = self._envelopes.get(message.get("envelope_id", "")) if isinstance(message, dict) else None
            if not isinstance(message, dict) or envelope is None:
                self.spec_errors.append(f"app sent {raw!r}: not an ack of an envelope sent to it")
                return
            payload = message.get("payload")
            if any(ack.envelope_id == envelope.envelope_id for ack in self._acks):
                self.spec_errors.append(f"envelope {envelope.envelope_id} acked twice")
            if payload is not None and not envelope.accepts_response_payload:
                self.spec_errors.append(f"ack of {envelope.type} {envelope.envelope_id} has a payload: {payload}")
            if payload is not None and not isinstance(payload, dict):
                self.spec_errors.append(f"ack of {envelope.envelope_id}: payload is not an object: {payload!r}")
            elapsed = time.monotonic() - envelope.sent_at
            self._acks.append(SocketAck(envelope.envelope_id, payload if isinstance(payload, dict) else None, elapsed))
            self._changed.notify_all()
