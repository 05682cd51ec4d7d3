"""Serving the bot: HTTP with waitress (a production WSGI server) or Slack's Socket Mode.

HTTP routes: `POST /slack/events` (events and slash commands, signatures verified by Bolt: a bad or
stale signature gets 401 and nothing runs) and `GET /healthz` (200 once the bot is ready).
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

from bot.app import PixelBot

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
EVENTS_PATH = "/slack/events"


def wsgi_app(bot: PixelBot) -> WSGIApp:
    """The WSGI application: Slack's endpoint, a health check, and 404 for anything else."""
    slack = SlackRequestHandler(bot.app, path=EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == EVENTS_PATH and method == "POST":
            return slack(environ, start_response)
        if path == "/healthz" and method in ("GET", "HEAD"):
            return _json(start_response, "200 OK", {"ok": True, "channels": len(bot.answerer.agents)})
        return _json(start_response, "404 Not Found", {"ok": False, "error": "not_found"})

    return application


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
    )


def serve_http(bot: PixelBot) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests already taken before exiting."""
    server = http_server(bot)
    signal.signal(signal.SIGTERM, _exit_gracefully)
    logger.info("pixelbot listening on http://%s:%s%s", server.effective_host, server.effective_port, EVENTS_PATH)
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        logger.info("stopping: finishing the requests in progress")
    finally:
        bot.shutdown()


def _exit_gracefully(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve_socket_mode(bot: PixelBot) -> None:
    assert bot.settings.slack_app_token is not None
    logger.info("pixelbot connecting to Slack in Socket Mode")
    SocketModeHandler(bot.app, bot.settings.slack_app_token).start()  # type: ignore[no-untyped-call]
