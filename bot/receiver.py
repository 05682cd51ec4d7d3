"""The receiving process: Slack's requests acknowledged by a process that does nothing else.

The bot has one core of Python (the GIL), and answers, storage and acks share it: a burst of a hundred
requests (a hundred channels' users replying to answers that landed together) waited for each
other's acks and for the answers in progress, p99 ~150 ms, and a channel listening at 1,000 messages
a second outran the core. With `PIXELBOT_ACK_PROCESS=true` the bot starts this process beside
itself, on `$PORT`, with a GIL of its own. It screens every request at the edge (`bot.edge`) and:

- a message, a mention or a `/tool` command (what comes in bursts) is stored in the arrival log
  (`bot.arrival_log`; all that arrive together in one statement), the bot's process is poked through a
  pipe, and Slack gets its ack at once; storage failing or slow gets a 503 for an event, which Slack
  delivers again, and the words the bot's listener would say for a command (`bot.acknowledgements`);
- anything else (other commands, clicks, forms, other events, `/healthz`, `/metrics`, OAuth) is
  forwarded to the bot's own server on 127.0.0.1, and its answer returned as it is.

It imports neither Bolt nor Pixeltable. It reads its configuration as one JSON line on its standard
input and stops when that closes (the bot's process stopped or died), finishing the requests it took.
`ReceivingProcess` is the bot's handle on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from multidict import CIMultiDict

from bot.acknowledgements import STORAGE_DOWN, STORAGE_SLOW, tool_acknowledgement, tool_text
from bot.arrival_log import Arrival, columns, insert_statement
from bot.collector import Collector
from bot.database import STATEMENT_TIMEOUT_MS
from bot.edge import MAX_BODY, MESSAGE_EVENTS, Edge, Refused
from bot.group_commit import MAX_BATCH
from bot.wsgi import EVENTS_PATH

logger = logging.getLogger("bot.receiver")  # also when run as __main__

STORE_TIMEOUT = 2.0  # seconds an event may take to be stored before Slack is told to deliver it again
FORWARD_TIMEOUT = 10.0  # seconds the bot's own server may take (it acks within Slack's 3 s itself)
MAX_WAITING = 10_000  # events waiting to be stored at most; past it (storage stuck) a 503 at once
CONNECT_TIMEOUT = 2  # seconds to connect to the database (the store's own timeout is STORE_TIMEOUT)
SHUTDOWN_TIMEOUT = 10.0  # seconds the requests in progress get to finish when the process stops
BACKLOG = 1024  # connections the kernel queues for accepting (a burst opens many at once)
HOP_BY_HOP = frozenset(  # headers of one connection, not of the request: not forwarded either way
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)


@dataclass(frozen=True)
class ReceiverConfig:
    """What the receiving process needs, sent by the bot's process on its standard input."""

    database_url: str  # libpq's form (psycopg's), not SQLAlchemy's
    namespace: str
    owner: str  # the bot process's worker (`bot.inbox.Worker.owner`): its rows in the arrival log
    signing_secret: str
    bot_url: str  # the bot's own server, for what is forwarded
    host: str
    port: int
    log_level: str = "INFO"
    log_format: str = "text"


class NotStoredError(TimeoutError):
    """Storing timed out before any statement took the event: it will never be stored."""


class StillStoringError(TimeoutError):
    """Storing timed out while a statement with the event runs: `stored` says later how it ended."""

    def __init__(self, stored: asyncio.Future[None]) -> None:
        super().__init__("the event's statement is still running")
        self.stored = stored


class GroupStore:
    """Group commit on the event loop: the arrivals waiting when the statement can go are stored in it.

    The receiving process serves every request on one thread (asyncio), and stores on one connection
    of psycopg's on the same loop, so a request costs no thread switch (a statement run on a thread
    cost ~15 % of the process's CPU in hand-overs). Each statement carries every arrival that came
    while the one before was being written; never two at once, as two could commit out of order and
    the bot's process could take in a channel's later event before its earlier one (lower `seq`) is
    visible. An arrival whose request gave up waiting (`STORE_TIMEOUT`: Slack got a 503 and delivers
    it again) is not written if it was still waiting.
    """

    def __init__(self, store: Callable[[Sequence[Arrival]], Awaitable[None]]) -> None:
        self._store = store
        self._waiting: list[tuple[Arrival, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def store(self, arrival: Arrival) -> None:
        """Return once `arrival` is stored; raises what storing raised, `NotStoredError`, or
        `StillStoringError` if a statement with it is still running (it may be stored yet)."""
        if len(self._waiting) >= MAX_WAITING:
            raise NotStoredError("too many events waiting to be stored")
        stored = asyncio.get_running_loop().create_future()
        entry = (arrival, stored)
        self._waiting.append(entry)
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write())
        try:
            await asyncio.wait_for(asyncio.shield(stored), STORE_TIMEOUT)
        except TimeoutError:
            if entry in self._waiting:  # not taken by a statement yet: never written
                self._waiting.remove(entry)
                raise NotStoredError("storage did not take the event in time") from None
            raise StillStoringError(stored) from None

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    await self._store([arrival for arrival, _ in batch])
                except Exception as error:
                    for _, stored in batch:
                        if not stored.done():
                            stored.set_exception(error)
                else:
                    for _, stored in batch:
                        if not stored.done():
                            stored.set_result(None)
        finally:
            self._writing = None

    async def drain(self) -> None:
        """Wait for the statement in progress and what waits for it (the process stops)."""
        if self._writing is not None:
            await asyncio.wait({self._writing}, timeout=SHUTDOWN_TIMEOUT)


class LogWriter:
    """The receiving process's connection to the database: psycopg's asynchronous one, autocommit (one
    round trip a statement), made again once if it was lost (a database restart)."""

    def __init__(self, conninfo: str, namespace: str, owner: str) -> None:
        self._conninfo, self._statement, self._owner = conninfo, insert_statement(namespace), owner
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def store(self, arrivals: Sequence[Arrival]) -> None:
        parameters = columns(self._owner, arrivals)
        for attempt in (1, 2):
            fresh = self._connection is None or self._connection.closed
            try:
                connection = await self._connect()
                # bounded here too: a connection cut without a word would wait on the server for ever
                await asyncio.wait_for(connection.execute(self._statement, parameters), STATEMENT_TIMEOUT_MS / 1000)
                return
            except TimeoutError:
                await self.close()
                raise psycopg.OperationalError("the database did not answer the statement") from None
            except psycopg.errors.QueryCanceled:
                raise  # the server's statement timeout: slow storage, not a lost connection
            except psycopg.OperationalError:
                await self.close()
                if fresh or attempt == 2:  # a new connection failed: storage is down, not the connection
                    raise

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )
        return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                await self._connection.close()
            self._connection = None


class Receiver:
    """The receiving process's requests: message events stored and acknowledged, the rest forwarded."""

    def __init__(self, edge: Edge, writer: LogWriter, bot_url: str, poke: Callable[[], None]) -> None:
        self._edge, self._writer, self._bot_url, self._poke = edge, writer, bot_url, poke
        self._writes = GroupStore(self._store)
        self._client: aiohttp.ClientSession | None = None  # to the bot's own server, and to response_urls
        self._tasks: set[asyncio.Task[None]] = set()

    def application(self) -> web.Application:
        # a body of more than one byte over the edge's limit gets a 413 before it is read (as from
        # waitress); up to that the edge refuses it with its log line
        app = web.Application(client_max_size=MAX_BODY + 1)
        app.router.add_route("*", "/{path:.*}", self.handle)
        app.on_cleanup.append(self._close)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
            if request.path == EVENTS_PATH and request.method == "POST":
                return await self._slack_request(request, body)
            return await self._forwarded(request, body)
        except web.HTTPException:
            raise  # aiohttp's own answers (413 for a body too large)
        except Exception:
            logger.exception("unexpected error receiving a Slack request")
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)

    async def _slack_request(self, request: web.Request, body: bytes) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        verdict = self._edge.screen(body, headers)
        if isinstance(verdict, Refused):
            return _response(verdict.status, verdict.body)
        payload = verdict.payload
        if payload.get("command") == "/tool":
            return await self._tool(payload, headers)
        arrival = _message_arrival(payload, headers)
        if arrival is None:
            return await self._forwarded(request, body)
        try:
            await self._writes.store(arrival)
        except TimeoutError:
            logger.warning("event %s not stored in time; Slack will deliver it again", arrival.request_id)
            return _response(503, "storage slow")
        except psycopg.Error as error:
            logger.error("could not store event %s (%s); Slack will deliver it again", arrival.request_id, _why(error))
            return _response(503, "storage unavailable")
        return web.Response(status=200)

    async def _tool(self, command: dict[str, Any], headers: dict[str, str]) -> web.StreamResponse:
        """`/tool`: stored like a message, so that it keeps its place among its channel's messages, and
        acknowledged as the bot's listener would (`bot.acknowledgements`); a command Slack can't
        deliver again is told when storing fails."""
        text = tool_text(command)
        if text:
            request_id = f"cmd:{command.get('trigger_id') or command['channel_id'] + ':' + command['user_id']}"
            try:
                await self._writes.store(Arrival(request_id, command, _retry_headers(headers)))
            except NotStoredError:
                logger.warning("/tool request %s not stored in time; the user is told to try again", request_id)
                return _ephemeral(STORAGE_DOWN)
            except StillStoringError as slow:  # it may land, and is then answered; else the user is told
                logger.warning("/tool request %s not stored in time; answering it if it lands", request_id)
                self._tell_if_lost(slow.stored, request_id, str(command["response_url"]))
                return _ephemeral(STORAGE_SLOW)
            except psycopg.Error as error:
                logger.error("could not store /tool request %s (%s)", request_id, _why(error))
                return _ephemeral(STORAGE_DOWN)
        return _ephemeral(tool_acknowledgement(text))

    def _tell_if_lost(self, stored: asyncio.Future[None], request_id: str, response_url: str) -> None:
        """Once the statement ends: if it failed, tell the user (who was told they'd hear) to try again."""

        def ended(done: asyncio.Future[None]) -> None:
            if done.exception() is not None:
                logger.error("/tool request %s was not stored after all; telling its user", request_id)
                self._tasks.add(task := asyncio.get_running_loop().create_task(self._tell(response_url)))
                task.add_done_callback(self._tasks.discard)

        stored.add_done_callback(ended)

    async def _tell(self, response_url: str) -> None:
        try:
            async with self._http().post(
                response_url, json={"response_type": "ephemeral", "text": STORAGE_DOWN}
            ) as answer:
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.error("could not tell a /tool user their request was lost (%s)", type(error).__name__)

    async def _store(self, arrivals: Sequence[Arrival]) -> None:
        await self._writer.store(arrivals)
        self._poke()

    async def _forwarded(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """The bot's own server's answer to the same request."""
        headers = CIMultiDict((name, value) for name, value in request.headers.items() if not _hop(name))
        try:
            async with self._http().request(
                request.method, f"{self._bot_url}{request.rel_url}", headers=headers, data=body, allow_redirects=False
            ) as answer:
                content = await answer.read()
                kept = CIMultiDict((name, value) for name, value in answer.headers.items() if not _hop(name))
                return web.Response(status=answer.status, body=content, headers=kept)
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.error("could not reach the bot's process (%s): answering 503", type(error).__name__)
            return web.json_response({"ok": False, "error": "bot_unavailable"}, status=503)

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None:  # made on the loop, at first use
            timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
            self._client = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._client

    async def _close(self, app: web.Application) -> None:
        await self._writes.drain()
        await self._writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=FORWARD_TIMEOUT)
        if self._client is not None:
            await self._client.close()


def _hop(name: str) -> bool:
    return name.lower() in HOP_BY_HOP


def _message_arrival(payload: dict[str, Any], headers: dict[str, str]) -> Arrival | None:
    """The arrival of a message or mention event; None for anything else (it is forwarded)."""
    event = payload.get("event") or {}
    if payload.get("type") != "event_callback" or event.get("type") not in MESSAGE_EVENTS:
        return None
    request_id = str(payload.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
    return Arrival(request_id, payload, _retry_headers(headers))


def _retry_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers Bolt reads of a delivery (Slack's retries say so)."""
    return {name: value for name, value in headers.items() if name.startswith("x-slack-retry")}


def _ephemeral(text: str) -> web.Response:
    return web.json_response({"response_type": "ephemeral", "text": text})


def _why(error: Exception) -> str:
    return str(error).splitlines()[0]


def _response(status: int, body: dict[str, Any] | str) -> web.Response:
    if isinstance(body, dict):
        return web.json_response(body, status=status)
    return web.Response(status=status, text=body)


# -- the process ---------------------------------------------------------------------------------------


def main() -> None:
    """`python -m bot.receiver`: serve with the configuration read from standard input, until it closes."""
    from bot.log_format import configure_logging

    line = sys.stdin.readline()
    if not line.strip():
        sys.exit("python -m bot.receiver is started by `pixelbot serve`, which sends its configuration")
    config = ReceiverConfig(**json.loads(line))
    configure_logging(config.log_level, config.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the bot's process too, which stops this one
    poke_fd = sys.stdout.fileno()
    os.set_blocking(poke_fd, False)  # a bot process that is not reading must never hold up an ack
    writer = LogWriter(config.database_url, config.namespace, config.owner)
    receiver = Receiver(Edge(config.signing_secret), writer, config.bot_url, lambda: _poke(poke_fd))
    asyncio.run(_serve(receiver, config))


async def _serve(receiver: Receiver, config: ReceiverConfig) -> None:
    """Serve until SIGTERM or the end of standard input, then finish the requests in progress."""
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    threading.Thread(
        target=_on_end_of_input, args=(loop, stop.set), name="pixelbot-receiver-watch", daemon=True
    ).start()
    runner = web.AppRunner(  # bodies as sent: the signature is over those bytes (Slack compresses none)
        receiver.application(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT, auto_decompress=False
    )
    await runner.setup()
    # as in the bot's process, and before serving (its first collection is a pause): at 1,000 events a
    # second a full collection stopped every ack in progress for 21–41 ms, 0.4–12 ms once what start-up
    # made was frozen (timed with `gc.callbacks`)
    Collector().install()
    await web.TCPSite(runner, config.host, config.port, backlog=BACKLOG, reuse_address=True).start()
    logger.info("receiving process listening on http://%s:%s%s", config.host, config.port, EVENTS_PATH)
    await stop.wait()
    logger.info("receiving process stopping: finishing the requests in progress")
    await runner.cleanup()


def _poke(fd: int) -> None:
    # the pipe may be full (the bot's process has pokes to read already) or closed (it stops)
    with contextlib.suppress(BlockingIOError, BrokenPipeError):
        os.write(fd, b".")


def _on_end_of_input(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    sys.stdin.read()  # returns at EOF: the bot's process closed the pipe, or died
    loop.call_soon_threadsafe(stop)


class ReceivingProcess:
    """The bot's handle on its receiving process: started with its configuration, read for pokes."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.receiver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(asdict(config)) + "\n").encode())
        self.pokes = self.process.stdout.fileno()  # readable when events were stored; EOF when it exited

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Let it finish the requests it took, then exit (closing its standard input tells it)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the receiving process did not stop in %.0f s; killing it", timeout)
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    main()
