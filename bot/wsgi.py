"""What the bot's two HTTP servers share: waitress and its limits, and reading and answering a request.

The bot's own server (`bot.server`) and the receiving process (`bot.receiver`) take the same requests
from Slack with the same limits. This module imports neither Bolt nor Pixeltable, so that the
receiving process starts in a moment and stays small.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from bot.edge import MAX_BODY

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
EVENTS_PATH = "/slack/events"
# Open connections waitress serves at once (its default is 100): past it, new connections wait unaccepted
# until an open one closes, and a request then waited 5.8 s for its ack with 100 busy channels.
CONNECTION_LIMIT = 2000


def waitress_server(app: WSGIApp, host: str, port: int, threads: int) -> Any:
    """A waitress server, not yet running (`.run()`; `.close()` to stop; port 0: any free port)."""
    # imported here: the receiving process imports this module and serves with aiohttp, not waitress
    from waitress.server import create_server

    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="pixelbot",
        max_request_body_size=MAX_BODY + 1,  # waitress refuses larger bodies (413) before buffering them
        connection_limit=CONNECTION_LIMIT,
        # poll(2), not waitress's default select(2): select takes no file descriptor above 1023, and once
        # the process held that many (connections, database, files) waitress's loop raised and stopped
        asyncore_use_poll=True,
    )


def request_body(environ: dict[str, Any]) -> bytes:
    """The body, read to at most one byte more than the edge accepts (waitress has buffered it already)."""
    declared = str(environ.get("CONTENT_LENGTH") or "0")
    length = int(declared) if declared.isascii() and declared.isdigit() else 0
    return bytes(environ["wsgi.input"].read(min(length, MAX_BODY + 1))) if length else b""


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers with lowercase names, as Bolt and the edge read them."""
    headers = {
        name[5:].lower().replace("_", "-"): str(value) for name, value in environ.items() if name.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers


def json_reply(start_response: StartResponse, status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
