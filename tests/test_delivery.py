"""The benchmarks' delivery process (`benchmarks.delivery`): what it sends arrives as sent, and every
kind of reply the bot's server may give is read whole, on a connection kept alive where it may be."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from benchmarks.delivery import Delivery
from tests.slack_requests import mention


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as waitress serves the bot
    seen: ClassVar[list[tuple[str, bytes, str, int]]] = []  # path, body, signature header, client port

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, body, self.headers["X-Slack-Signature"], self.client_address[1]))
        reply = json.dumps({"path": self.path}).encode()
        self.send_response(201 if self.path == "/created" else 200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (reply[:5], reply[5:]):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(reply)))
        if self.path == "/close":
            self.send_header("Connection", "close")
        if self.path in ("/close", "/drop"):  # /drop: closed without saying so, as after an idle timeout
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_replies_of_every_kind_are_read_whole_and_timed(server: str) -> None:
    request = mention("hello", channel="C0DELIVER")
    with Delivery() as slack:
        replies = [
            slack.send(f"{server}{path}", request)
            for path in ("/a", "/chunked", "/created", "/close", "/b", "/drop", "/c")
        ]
        refused = slack.send(f"http://127.0.0.1:{free_port()}/x", request)

    assert [(reply.status, reply.json()) for reply in replies] == [
        (200, {"path": "/a"}),
        (200, {"path": "/chunked"}),
        (201, {"path": "/created"}),
        (200, {"path": "/close"}),
        (200, {"path": "/b"}),
        (200, {"path": "/drop"}),
        (200, {"path": "/c"}),  # on a new connection: the dropped one is not counted as a failure
    ]
    assert all(0 < reply.elapsed < 30 for reply in replies)
    assert [(body, signature) for _, body, signature, _ in Handler.seen] == [
        (request.body, request.headers["X-Slack-Signature"])
    ] * 7  # the exact bytes and signature, as Slack sends them
    ports = [port for *_, port in Handler.seen]
    assert ports[0] == ports[1] == ports[2] == ports[3] != ports[4] == ports[5] != ports[6]  # kept alive until closed
    assert refused.status == 0  # nothing listening: a failed request, not an exception
