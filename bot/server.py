"""Serving the bot: HTTP with waitress (a production WSGI server) or Slack's Socket Mode.

HTTP routes: `POST /slack/events` (events and slash commands, screened by `bot.edge` before Bolt:
a bad or stale signature gets 401 and nothing runs), `GET /healthz` (200 while the bot can answer: storage
reachable, the answering machinery and the caretaker alive, no request left open for long; 503 with
the failing part named otherwise) and `GET /metrics` (Prometheus text format, `bot.metrics`).
Socket Mode runs no HTTP server, so it has neither `/healthz` nor `/metrics`.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import send_response
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from waitress.server import create_server

from agent import ConfigError
from bot.app import PixelBot
from bot.arrivals import Arrivals
from bot.collector import Collector
from bot.edge import MAX_BODY, Edge, Refused
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.workspaces import INSTALL_PATH, REDIRECT_PATH

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
EVENTS_PATH = "/slack/events"
# Open connections waitress serves at once (its default is 100): past it, new connections wait unaccepted
# until an open one closes, and a request then waited 5.8 s for its ack with 100 busy channels.
CONNECTION_LIMIT = 2000


def wsgi_app(bot: PixelBot) -> WSGIApp:
    """The WSGI application: Slack's endpoint (behind the edge), a health check, the metrics, and 404 for
    anything else."""
    edge = Edge(bot.settings.slack_signing_secret)

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == EVENTS_PATH and method == "POST":
            with bot.arrivals.arriving():  # bookkeeping makes way until it is acknowledged (`bot.lull`)
                return _slack_endpoint(bot.app, edge, environ, start_response)
        if method == "GET" and path in (INSTALL_PATH, REDIRECT_PATH) and bot.app.oauth_flow is not None:
            return _oauth(bot.app, path, environ, start_response)
        if path == "/healthz" and method in ("GET", "HEAD"):
            healthy, details = bot.health()
            return _json(start_response, "200 OK" if healthy else "503 Service Unavailable", {"ok": healthy, **details})
        if path == "/metrics" and method in ("GET", "HEAD"):
            return _metrics(bot, start_response)
        return _json(start_response, "404 Not Found", {"ok": False, "error": "not_found"})

    return application


def _slack_endpoint(app: App, edge: Edge, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Screen the request at the edge, then let Bolt route what it admitted.

    Bolt gets the edge's parsed, normalised payload, never the raw body. Bolt takes a parsed payload
    only in its Socket Mode form, which also skips its own signature check: the edge has done that,
    over the raw bytes. Whatever a client sends, an error here is a bug: logged, and a 500.
    """
    try:
        headers = _headers(environ)
        verdict = edge.screen(_body(environ), headers)
        if isinstance(verdict, Refused):
            return _bolt_reply(start_response, BoltResponse(status=verdict.status, body=verdict.body))
        request = BoltRequest(body=verdict.payload, headers={**headers}, mode="socket_mode")
        return _bolt_reply(start_response, app.dispatch(request))
    except Exception:
        logger.exception("unexpected error serving a Slack request")
        return _json(start_response, "500 Internal Server Error", {"ok": False, "error": "internal_error"})


def _oauth(app: App, path: str, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Bolt's OAuth flow: the install page (`/slack/install`), and Slack's redirect back with a code."""
    flow = app.oauth_flow
    assert flow is not None
    request = BoltRequest(body="", query=str(environ.get("QUERY_STRING", "")), headers={**_headers(environ)})
    try:
        response = flow.handle_installation(request) if path == INSTALL_PATH else flow.handle_callback(request)
    except Exception:
        logger.exception("the OAuth flow failed")
        return _json(start_response, "500 Internal Server Error", {"ok": False, "error": "internal_error"})
    return _bolt_reply(start_response, response)


def _body(environ: dict[str, Any]) -> bytes:
    """The body, read to at most one byte more than the edge accepts (waitress has buffered it already)."""
    declared = str(environ.get("CONTENT_LENGTH") or "0")
    length = int(declared) if declared.isascii() and declared.isdigit() else 0
    return bytes(environ["wsgi.input"].read(min(length, MAX_BODY + 1))) if length else b""


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers with lowercase names, as Bolt and the edge read them."""
    headers = {
        name[5:].lower().replace("_", "-"): str(value) for name, value in environ.items() if name.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers


def _bolt_reply(start_response: StartResponse, response: BoltResponse) -> Iterable[bytes]:
    reply = WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
    start_response(reply.status, reply.get_headers())
    return reply.get_body()


def _metrics(bot: PixelBot, start_response: StartResponse) -> list[bytes]:
    body = bot.metrics.render()
    start_response("200 OK", [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response: StartResponse, status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def http_server(bot: PixelBot, host: str = "0.0.0.0", port: int | None = None) -> Any:
    """A waitress server for the bot, not yet running (call `.run()`; `.close()` to stop)."""
    return create_server(
        wsgi_app(bot),
        host=host,
        port=bot.settings.port if port is None else port,
        threads=bot.settings.http_threads,
        ident="pixelbot",
        max_request_body_size=MAX_BODY + 1,  # waitress refuses larger bodies (413) before buffering them
        connection_limit=CONNECTION_LIMIT,
        # poll(2), not waitress's default select(2): select takes no file descriptor above 1023, and once
        # the process held that many (connections, database, files) waitress's loop raised and stopped
        asyncore_use_poll=True,
    )


def serve_http(bot: PixelBot) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests already taken before exiting."""
    server = http_server(bot)
    _stop_on_signals()
    Collector().install()  # no long pauses of Python's cycle collector while serving
    logger.info("pixelbot listening on http://%s:%s%s", server.effective_host, server.effective_port, EVENTS_PATH)
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        logger.info("stopping: finishing the requests in progress")
    finally:
        bot.shutdown()


def _stop_on_signals() -> None:
    """SIGTERM (process managers) and SIGINT (Ctrl-C) both stop the bot gracefully; SIGINT explicitly,
    since a process started in the background by a shell inherits it ignored."""
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _exit_gracefully)


def _exit_gracefully(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve_socket_mode(bot: PixelBot) -> None:
    """Take Slack's events over Socket Mode until SIGTERM or SIGINT, then stop like `serve_http`.

    No HTTP server runs in this mode, so neither `/healthz` nor `/metrics` is served (the metrics are
    still recorded, in `bot.metrics`).

    On the signal the WebSocket is closed first, so Slack sends nothing more to this process (events
    it pushed and got no ack for it delivers again), then the requests already taken are finished.
    """
    assert bot.settings.slack_app_token is not None
    handler = ScreenedSocketModeHandler(bot.app, bot.settings.slack_app_token, bot.arrivals)
    _stop_on_signals()
    Collector().install()
    try:
        logger.info("pixelbot connecting to Slack in Socket Mode")
        try:
            handler.connect()  # type: ignore[no-untyped-call]
        except SlackApiError as error:
            raise ConfigError(
                f"Slack refused Socket Mode: {error.response.get('error')}. Check SLACK_APP_TOKEN."
            ) from None
        if handler.client.is_connected():
            logger.info("pixelbot connected to Slack in Socket Mode")
        else:
            logger.warning("pixelbot could not connect to Slack in Socket Mode yet; retrying")
        threading.Event().wait()  # until a signal raises SystemExit (SIGTERM) or KeyboardInterrupt (SIGINT)
    except (SystemExit, KeyboardInterrupt):
        logger.info("stopping: disconnecting from Slack, finishing the requests in progress")
    finally:
        _close_socket_mode(handler)
        bot.shutdown()


class ScreenedSocketModeHandler(SocketModeHandler):
    """Socket Mode with the edge's field checks: a payload the bot can't use is acknowledged (so Slack
    doesn't send it again) and dropped, as over HTTP."""

    def __init__(self, app: App, app_token: str, arrivals: Arrivals) -> None:
        super().__init__(app, app_token)
        self.arrivals = arrivals  # bookkeeping makes way until each request is acknowledged (`bot.lull`)

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        with self.arrivals.arriving():
            verdict = Edge.screen_payload(req.payload)
            if isinstance(verdict, Refused):
                refusal = BoltResponse(status=200, body=verdict.body)
                send_response(client, req, refusal, time.time())
                return
            req.payload = verdict.payload
            super().handle(client, req)


def _close_socket_mode(handler: SocketModeHandler) -> None:
    """Disconnect and stop the client's threads; listeners already running finish first."""
    try:
        handler.close()  # type: ignore[no-untyped-call]
    except Exception:
        logger.exception("closing the Socket Mode connection failed")
