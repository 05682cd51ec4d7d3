"""Run jobs in parallel across conversations but strictly in arrival order within one.

Slack delivers events concurrently; answering two messages of one conversation out of order would
give the second answer without the first in memory. Each key (a channel) gets a queue that one worker
drains at a time; different keys share a bounded thread pool.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)

Job = Callable[[], None]


class OrderedDispatcher:
    """Per-key FIFO execution on a shared pool of `workers` threads."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixelbot-worker")
        self._queues: dict[Hashable, deque[Job]] = {}
        self._lock = threading.Lock()

    def submit(self, key: Hashable, job: Job) -> None:
        """Queue `job` after every job already queued under `key`."""
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:
                queue.append(job)
                return
            self._queues[key] = deque([job])
        self._pool.submit(self._drain, key)

    def _drain(self, key: Hashable) -> None:
        while True:
            with self._lock:
                queue = self._queues[key]
                if not queue:
                    del self._queues[key]
                    return
                job = queue.popleft()
            try:
                job()
            except Exception:
                logger.exception("job for %s failed", key)

    def run_on_every_thread(self, job: Job) -> None:
        """Run `job` once on each worker thread (for per-thread set-up), without waiting for it."""
        barrier = threading.Barrier(self._workers)

        def once_per_thread() -> None:
            barrier.wait(timeout=30)  # holds each thread until all have a copy, so no thread runs two
            job()

        for _ in range(self._workers):
            self._pool.submit(once_per_thread)

    def pending(self) -> int:
        """Jobs queued and not yet started."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
