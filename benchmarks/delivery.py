"""Slack's side of the bot's endpoint: requests sent, and their acknowledgements timed, in a process of their own.

Slack's servers share no GIL with the model the bot calls or with Slack's Web API. The load generator
did: its users' HTTP clients ran in the benchmark's process, beside the fake Slack and the scripted
model, and each request cost that process's GIL ~1.1 ms with httpx (a thread per user) or ~0.6 ms with
aiohttp (measured on the 2-core machine: 1,000 POSTs to a trivial waitress app, 100 at a time). In a burst
of 100 requests, the kind every benchmark here makes, the last ack was read ~100 ms after it arrived,
and that wait was counted against the bot. Here one asyncio loop in a child process writes each
request's bytes on a kept-alive connection and reads the reply by hand: ~0.14 ms of CPU a request, and
nothing else runs in that process.

    with Delivery() as slack:
        response = slack.send(url, request)     # any thread; blocks until the ack, timed in the child
        offered = slack.offer(requests, rate)   # `open_loop`'s schedule, run in the child

An ack's time runs from when the child takes the request (connecting first, if no kept-alive
connection is free) to when it has read the whole reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import multiprocessing
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from benchmarks import open_loop
from benchmarks.open_loop import FAILURES
from tests.slack_requests import AppResponse, SlackRequest

TIMEOUT = 30.0  # seconds a request may take before it counts as failed (Slack gives up after 3)

_SET_HERE = ("host", "content-length")  # headers the client writes itself
Job = tuple[int, str, tuple[Any, ...]]  # (job number, what to do, its arguments)


class HttpClient:
    """A minimal HTTP/1.1 client for one asyncio loop: keep-alive connections, at most `connections` open.

    It sends only what the benchmarks send (a POST with a body, to a `http://host:port/path` URL) and reads
    a reply with a Content-Length or chunked body. Hand-written rather than aiohttp for its cost per request
    (see the module's docstring).
    """

    def __init__(self, connections: int = 512) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._slots = asyncio.Semaphore(connections)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST and return (status, body); raises one of `FAILURES`. A kept-alive connection the server
        closed meanwhile (waitress closes idle ones after 120 s) is replaced once, not counted as failed."""
        parts = urlsplit(url)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in _SET_HERE]
        message = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        async with self._slots:
            idle = self._idle.setdefault(address, [])
            while idle:
                reader, writer = idle.pop()
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                    continue
                try:
                    return await self._exchange(address, reader, writer, message)
                except (ConnectionError, asyncio.IncompleteReadError) as error:
                    if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                        raise  # the server had begun its reply: a real failure
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), TIMEOUT)
            return await self._exchange(address, reader, writer, message)

    async def _exchange(
        self, address: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
    ) -> tuple[int, bytes]:
        try:
            writer.write(message)
            status, reply, keep = await asyncio.wait_for(_read_reply(reader), TIMEOUT)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle[address].append((reader, writer))
        else:
            writer.close()
        return status, reply

    def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may be used again) of one HTTP/1.1 reply."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")  # no trailers are sent to us
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


class Delivery:
    """A child process that sends requests and times their acks; thread-safe, one per benchmark run."""

    def __init__(self, connections: int = 512) -> None:
        context = multiprocessing.get_context("spawn")  # nothing of the parent's threads or servers is copied
        jobs_out, self._jobs = context.Pipe(duplex=False)
        self._results, results_in = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(jobs_out, results_in, connections), daemon=True)
        self._process.start()
        jobs_out.close()
        results_in.close()
        self._waiting_lock = threading.Lock()  # the futures waiting for results
        self._sending_lock = threading.Lock()  # the jobs pipe: a sender blocked on it must not hold up results
        self._numbers = itertools.count()
        self._waiting: dict[int, Future[Any]] = {}
        self._reader = threading.Thread(target=self._read_results, name="delivery-results", daemon=True)
        self._reader.start()
        # ready once its loop takes jobs: the child's imports took ~3 s, and the first requests of a run,
        # timed from when they were handed over, waited for them
        try:
            self._ask("ready").result(timeout=120)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """The child's process ID, for measuring the load generator's CPU."""
        assert self._process.pid is not None
        return self._process.pid

    def send(self, url: str, request: SlackRequest) -> AppResponse:
        """POST `request`, as Slack would, and wait for the reply; status 0 if the request failed."""
        status, body, elapsed = self._ask("send", url, request.body, request.headers).result(timeout=TIMEOUT + 30)
        return AppResponse(status, body, elapsed)

    def offer(self, requests: Sequence[open_loop.Addressed], rate: float, connections: int = 512) -> open_loop.Offered:
        """Run `open_loop.schedule` in the child, on `connections` connections of its own."""
        offered: open_loop.Offered = self._ask("offer", list(requests), rate, connections).result()
        return offered

    def _ask(self, what: str, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._waiting_lock:
            number = next(self._numbers)
            self._waiting[number] = future
        with self._sending_lock:
            self._jobs.send((number, what, args))
        return future

    def _read_results(self) -> None:
        """Resolve each job's future with its result; when the child is gone (or this thread fails),
        fail every future still waiting, so that no caller waits forever."""
        try:
            while True:
                try:
                    number, failed, result = self._results.recv()
                except (EOFError, OSError):
                    return
                with self._waiting_lock:
                    future = self._waiting.pop(number)
                if failed:
                    future.set_exception(RuntimeError(f"the delivery process failed: {result}"))
                else:
                    future.set_result(result)
        finally:
            with self._waiting_lock:
                for future in self._waiting.values():
                    future.set_exception(RuntimeError("the delivery process exited"))
                self._waiting.clear()

    def close(self) -> None:
        with self._sending_lock, contextlib.suppress(OSError):  # a child that died has no pipe to read it
            self._jobs.send(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        self._reader.join(timeout=10)

    def __enter__(self) -> Delivery:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- the child ---------------------------------------------------------------------------------------
def _child(jobs: Connection, results: Connection, connections: int) -> None:
    asyncio.run(_serve(jobs, results, connections))


async def _serve(jobs: Connection, results: Connection, connections: int) -> None:
    loop = asyncio.get_running_loop()
    client = HttpClient(connections)
    stopped = asyncio.Event()
    running: set[asyncio.Task[None]] = set()

    def take_jobs() -> None:
        while jobs.poll():
            try:
                job: Job | None = jobs.recv()
            except (EOFError, OSError):  # the benchmark died without closing: stop, don't spin on the EOF
                job = None
            if job is None:
                loop.remove_reader(jobs.fileno())
                stopped.set()
                return
            task = loop.create_task(_run(job, client, results))
            running.add(task)
            task.add_done_callback(running.discard)

    loop.add_reader(jobs.fileno(), take_jobs)
    await stopped.wait()
    if running:
        await asyncio.wait(running)
    client.close()


async def _run(job: Job, client: HttpClient, results: Connection) -> None:
    number, what, args = job
    try:
        result = await _HANDLERS[what](client, *args)
    except BaseException as error:  # reported to the waiting thread, which raises it
        results.send((number, True, repr(error)))
        if not isinstance(error, Exception):
            raise
        return
    results.send((number, False, result))


async def _send(client: HttpClient, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, float]:
    started = time.monotonic()
    try:
        status, reply = await client.post(url, body, headers)
    except FAILURES:
        status, reply = 0, b""
    return status, reply, time.monotonic() - started


async def _offer(
    client: HttpClient, requests: Sequence[open_loop.Addressed], rate: float, connections: int
) -> open_loop.Offered:
    """Run the schedule with Python's cycle collector off. With a run's requests and tasks in memory
    (30,000 of each at 1,000 msg/s), each of its full collections stopped this loop for 120–255 ms
    (measured with `gc.callbacks`), and every request due or answered meanwhile had that wait counted
    against the bot: the slow windows of `listening_load` at 1,000 msg/s were these pauses, not the bot's."""
    gc.disable()
    try:
        return await open_loop.schedule(requests, rate, HttpClient(connections))
    finally:
        gc.enable()


async def _ready(client: HttpClient) -> None:
    return None


_HANDLERS: dict[str, Callable[..., Awaitable[Any]]] = {"send": _send, "offer": _offer, "ready": _ready}
