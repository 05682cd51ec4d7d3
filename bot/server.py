"""Serving the bot: HTTP with waitress (a production WSGI server) or Slack's Socket Mode.

HTTP routes: `POST /slack/events` (events and slash commands, screened by `bot.edge` before Bolt:
a bad or stale signature gets 401 and nothing runs), `GET /healthz` (200 while the bot can answer: storage
reachable, the answering machinery and the caretaker alive, no request left open for long; 503 with
the failing part named otherwise) and `GET /metrics` (Prometheus text format, `bot.metrics`).
Socket Mode runs no HTTP server, so it has neither `/healthz` nor `/metrics`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import send_response
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from agent import ConfigError
from bot.acknowledgements import ACKNOWLEDGED
from bot.app import STUCK_AFTER, PixelBot
from bot.arrivals import Arrivals
from bot.collector import Collector
from bot.edge import Edge, Refused
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.workspaces import INSTALL_PATH, REDIRECT_PATH

if TYPE_CHECKING:
    from bot.arrival_log import Arrival, ArrivalLog
    from bot.receiver import ReceiverConfig
from bot.wsgi import (
    CONNECTION_LIMIT,
    EVENTS_PATH,
    StartResponse,
    WSGIApp,
    json_reply,
    request_body,
    request_headers,
    waitress_server,
)

__all__ = ["CONNECTION_LIMIT", "EVENTS_PATH", "StartResponse", "WSGIApp", "http_server", "serve_http", "wsgi_app"]

logger = logging.getLogger(__name__)


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
            status = "200 OK" if healthy else "503 Service Unavailable"
            return json_reply(start_response, status, {"ok": healthy, **details})
        if path == "/metrics" and method in ("GET", "HEAD"):
            return _metrics(bot, start_response)
        return json_reply(start_response, "404 Not Found", {"ok": False, "error": "not_found"})

    return application


def _slack_endpoint(app: App, edge: Edge, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Screen the request at the edge, then let Bolt route what it admitted.

    Bolt gets the edge's parsed, normalised payload, never the raw body. Bolt takes a parsed payload
    only in its Socket Mode form, which also skips its own signature check: the edge has done that,
    over the raw bytes. Whatever a client sends, an error here is a bug: logged, and a 500.
    """
    try:
        headers = request_headers(environ)
        verdict = edge.screen(request_body(environ), headers)
        if isinstance(verdict, Refused):
            return _bolt_reply(start_response, BoltResponse(status=verdict.status, body=verdict.body))
        request = BoltRequest(body=verdict.payload, headers={**headers}, mode="socket_mode")
        return _bolt_reply(start_response, app.dispatch(request))
    except Exception:
        logger.exception("unexpected error serving a Slack request")
        return json_reply(start_response, "500 Internal Server Error", {"ok": False, "error": "internal_error"})


def _oauth(app: App, path: str, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Bolt's OAuth flow: the install page (`/slack/install`), and Slack's redirect back with a code."""
    flow = app.oauth_flow
    assert flow is not None
    request = BoltRequest(body="", query=str(environ.get("QUERY_STRING", "")), headers={**request_headers(environ)})
    try:
        response = flow.handle_installation(request) if path == INSTALL_PATH else flow.handle_callback(request)
    except Exception:
        logger.exception("the OAuth flow failed")
        return json_reply(start_response, "500 Internal Server Error", {"ok": False, "error": "internal_error"})
    return _bolt_reply(start_response, response)


def _bolt_reply(start_response: StartResponse, response: BoltResponse) -> Iterable[bytes]:
    reply = WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
    start_response(reply.status, reply.get_headers())
    return reply.get_body()


def _metrics(bot: PixelBot, start_response: StartResponse) -> list[bytes]:
    body = bot.metrics.render()
    start_response("200 OK", [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return [body]


def http_server(bot: PixelBot, host: str = "0.0.0.0", port: int | None = None) -> Any:
    """A waitress server for the bot, not yet running (call `.run()`; `.close()` to stop)."""
    return waitress_server(
        wsgi_app(bot), host, bot.settings.port if port is None else port, threads=bot.settings.http_threads
    )


def serve_http(bot: PixelBot) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests already taken before exiting; behind
    a receiving process of its own with `PIXELBOT_ACK_PROCESS=true` (`serve_behind_receiver`)."""
    if bot.settings.ack_process:
        serve_behind_receiver(bot)
        return
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


def serve_behind_receiver(bot: PixelBot) -> None:
    """`serve_http` with Slack's requests taken on `$PORT` by the receiving process (`bot.receiver`).

    This process serves on 127.0.0.1 (a free port) what the receiver forwards, and takes in the events
    it acknowledged (`bot.arrival_reader`). It stops when the receiver exits, with status 1 unless it
    was told to stop, so that a process manager starts both again. On SIGTERM or SIGINT the receiver
    is stopped first (it finishes what it took, forwards included), then the events it stored are
    taken in, then the bot stops as `serve_http` does.
    """
    from bot.arrival_log import ArrivalLog
    from bot.arrival_reader import ArrivalReader
    from bot.receiver import ReceivingProcess

    server = http_server(bot, host="127.0.0.1", port=0)
    threading.Thread(target=server.run, name="pixelbot-http", daemon=True).start()
    log = ArrivalLog(bot.inbox.writes, bot.settings.namespace, create=True)
    owner = bot.inbox.worker.owner
    reader = ArrivalReader(log, owner, partial(take_in, bot.app), bot.inbox.live_owners)
    receiver = ReceivingProcess(_receiver_config(bot, owner, f"http://127.0.0.1:{server.effective_port}"))
    reader.start(receiver.pokes)
    bot.serving_checks |= {"receiver": receiver.alive, "arrivals": lambda: reader.alive() and _log_moving(log)}
    bot.serving_details.append(lambda: {"arrivals_waiting": log.count()})  # acknowledged, not yet in the inbox
    _stop_on_signals()
    Collector().install()
    receiver_exited = False
    try:
        receiver.process.wait()  # until it exits, or a signal raises SystemExit (SIGTERM) or KeyboardInterrupt
        receiver_exited = True
        logger.error("the receiving process exited; stopping, so that both are started again")
    except (SystemExit, KeyboardInterrupt):
        logger.info("stopping: the receiving process first, then the requests in progress")
    finally:
        _ignore_signals()  # a second signal must not cut the shutdown short
        receiver.stop()
        reader.stop()
        server.close()
        bot.shutdown()
    if receiver_exited:
        raise SystemExit(1)


def _log_moving(log: ArrivalLog) -> bool:
    """Whether the arrival log is being taken in (its oldest row younger than the inbox's limit)."""
    return log.oldest_age() < STUCK_AFTER


def take_in(app: App, arrival: Arrival) -> bool:
    """Give an event the receiving process acknowledged to Bolt, as if it had just come; False if it
    must be tried again (storing it failed: the listener middleware's 503)."""
    request = BoltRequest(body=arrival.payload, headers={**arrival.headers}, mode="socket_mode")
    request.context[ACKNOWLEDGED] = True  # a failure to store it must fail the dispatch, not tell the user
    return app.dispatch(request).status < 500


def _receiver_config(bot: PixelBot, owner: str, bot_url: str) -> ReceiverConfig:
    from bot.receiver import ReceiverConfig

    settings = bot.settings
    return ReceiverConfig(
        database_url=bot.inbox.writes.url.set(drivername="postgresql").render_as_string(hide_password=False),
        namespace=settings.namespace,
        owner=owner,
        signing_secret=settings.slack_signing_secret,
        bot_url=bot_url,
        host="0.0.0.0",
        port=settings.port,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        log_format=settings.log_format,
    )


def _ignore_signals() -> None:
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, signal.SIG_IGN)


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
