"""An open-loop load generator: requests leave on a fixed schedule, whatever the server does.

A thread per sender (the generator `listening_load` had before) is closed loop in disguise: each thread
waits for its ack before sending again, so with 16 threads and 20 ms acks no more than 800 requests a
second can leave, and more threads spend the two cores' GIL time on themselves. Here one asyncio loop
(aiohttp's client, keep-alive connections) starts each request at its scheduled moment, however many
are still waiting for their acks, so the offered rate is the rate asked for unless the generator itself
falls behind, and that is measured too (`Sent.late`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from tests.slack_requests import SlackRequest


@dataclass(frozen=True)
class Sent:
    """One request: its ack time (from sending to the response read; inf if refused or failed) and how
    long after its scheduled moment it was sent."""

    ack: float
    late: float


def offer(url: str, requests: Sequence[SlackRequest], rate: float, connections: int = 512) -> tuple[list[Sent], float]:
    """Send `requests` in order, `rate` a second, over at most `connections` connections at once; every
    request's `Sent`, in order, and the seconds from the first scheduled send to the last ack."""
    return asyncio.run(_offer(url, requests, rate, connections))


async def _offer(url: str, requests: Sequence[SlackRequest], rate: float, connections: int) -> tuple[list[Sent], float]:
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time() + 0.5
        sends = []
        for n, request in enumerate(requests):
            due = start + n / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            sends.append(asyncio.create_task(_send(session, url, request, due)))
        sent = await asyncio.gather(*sends)
        return list(sent), loop.time() - start


async def _send(session: aiohttp.ClientSession, url: str, request: SlackRequest, due: float) -> Sent:
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        async with session.post(url, data=request.body, headers=request.headers) as response:
            await response.read()
            ok = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        ok = False
    return Sent(ack=loop.time() - began if ok else float("inf"), late=began - due)
