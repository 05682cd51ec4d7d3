"""Per-channel queues on the event loop: channels run at once, each channel's requests in arrival order.

Answering two messages of one conversation out of order would give the second answer without the
first in memory, so a channel's requests run one after another. Nothing else waits: every channel with
work has its own task on the loop, a task waiting on the model holds no thread, and `limit` bounds only
how many answers are in progress at once (a queue of channels beyond it waits for a free slot, not for
a particular channel). Jobs are coroutine functions; a job that fails is logged and the queue goes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class ChannelQueues:
    """FIFO per key, concurrent across keys, on `loop` (which runs in another thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._queues: dict[Hashable, deque[Job]] = {}
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._slots: asyncio.Semaphore | None = None
        self._idle_waiters: dict[Hashable, list[asyncio.Future[None]]] = {}

    def submit(self, key: Hashable, job: Job) -> None:
        """Queue `job` after every job already queued under `key`; safe from any thread."""
        with self._lock:
            self._pending += 1
        self._loop.call_soon_threadsafe(self._enqueue, key, job)

    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return self._pending

    def active_keys(self) -> int:
        return len(self._queues)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    async def idle(self, key: Hashable) -> None:
        """Wait (on the loop) until nothing is queued or running under `key`."""
        if key not in self._queues:
            return
        waiter = self._loop.create_future()
        self._idle_waiters.setdefault(key, []).append(waiter)
        await waiter

    def _enqueue(self, key: Hashable, job: Job) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        self._loop.create_task(self._drain(key), name=f"channel {key}")

    async def _drain(self, key: Hashable) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        queue = self._queues[key]
        while queue:
            job = queue[0]
            async with self._slots:
                try:
                    await job()
                except Exception:
                    logger.exception("job for %s failed", key)
            queue.popleft()
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
        del self._queues[key]
        for waiter in self._idle_waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(None)
