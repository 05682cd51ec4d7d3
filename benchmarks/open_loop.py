"""An open-loop load generator: requests leave on a fixed schedule, whatever the server does.

A thread per sender (the generator `listening_load` had before) is closed loop in disguise: each thread
waits for its ack before sending again, so with 16 threads and 20 ms acks no more than 800 requests a
second can leave, and more threads spend the two cores' GIL time on themselves. Here one asyncio loop
(`benchmarks.delivery`'s client, keep-alive connections, in a process of its own) starts each request
at its scheduled moment, however many are still waiting for their acks, so the offered rate is the
rate asked for unless the generator itself falls behind, and that is measured too (`Sent.late`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.slack_requests import SlackRequest

if TYPE_CHECKING:
    from benchmarks.delivery import HttpClient

FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, IndexError)
"""What a request that failed raises (refused, cut off, timed out, a reply that isn't HTTP)."""


@dataclass(frozen=True)
class Sent:
    """One request: its ack time, from its scheduled moment to its response read (so a wait in the
    generator, for a connection among `connections` or for the loop, counts against it; inf if it
    failed or timed out), and how long after its scheduled moment the generator got to it."""

    ack: float
    late: float


@dataclass(frozen=True)
class Offered:
    """Every request's `Sent`, in order, and when (`time.monotonic()`) the first was due, the last was
    started and the last ack came."""

    sent: list[Sent]
    first_due: float
    last_started: float
    last_ack: float


Addressed = tuple[str, SlackRequest]
"""A request and the URL it is posted to (with several bot processes, the one its channel goes to)."""


async def schedule(requests: Sequence[Addressed], rate: float, client: HttpClient) -> Offered:
    """Send `requests` in order, `rate` a second, with at most the client's connections in flight (beyond
    that a request waits in the generator, and that wait is part of its ack). `Delivery.offer` runs it
    in the delivery process."""
    loop = asyncio.get_running_loop()  # its clock is time.monotonic()
    start = loop.time() + 0.5
    sends = []
    try:
        for n, (url, request) in enumerate(requests):
            due = start + n / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            sends.append(asyncio.create_task(_send(client, url, request, due)))
        last_started = loop.time()
        sent = await asyncio.gather(*sends)
    finally:
        client.close()
    return Offered(list(sent), start, last_started, loop.time())


async def _send(client: HttpClient, url: str, request: SlackRequest, due: float) -> Sent:
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        status, _ = await client.post(url, request.body, request.headers)
        ok = status == 200
    except FAILURES:
        ok = False
    return Sent(ack=loop.time() - due if ok else float("inf"), late=began - due)
