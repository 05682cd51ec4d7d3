"""Group commit: rows written by many threads at once go to the database in one statement.

Storing a request before its acknowledgement is one small insert. When forty requests arrive in the
same few milliseconds (a busy workspace: answers land together, and so do the follow-ups), forty
separate inserts mean forty round trips, and forty times a thread that waits for the GIL to read its
result, while the acknowledgements queue behind them. One writer thread instead takes everything
waiting and writes it in one statement: alone, a row costs what it did; in a burst, the burst costs
about one round trip.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

MAX_BATCH = 100
"""Rows per statement at most: a burst bigger than this is written in several."""


class GroupWriter(Generic[T, K]):
    """Writes items submitted from any thread in batches, on `threads` threads of its own (more than one,
    so that a statement held up by a row lock doesn't hold up every other request).

    `write(batch)` stores a batch and returns the keys of the items it stored (an item already stored
    is left out, as `INSERT … ON CONFLICT DO NOTHING RETURNING key` does); `key(item)` is an item's key.
    Each submitter learns whether its own item was the one stored: of two items with the same key in
    one batch, only the first can be. A batch that fails is written again item by item, so that one bad
    row fails only its own request.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], set[K]],
        key: Callable[[T], K],
        name: str = "pixelbot-group-commit",
        max_batch: int = MAX_BATCH,
        threads: int = 2,
    ) -> None:
        self._write, self._key, self._max_batch = write, key, max_batch
        self._waiting: queue.SimpleQueue[tuple[T, Future[bool]] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}_{number}", daemon=True) for number in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: T) -> Future[bool]:
        """Queue `item`; the future says whether it was stored (False: it was stored before)."""
        future: Future[bool] = Future()
        self._waiting.put((item, future))
        return future

    def shutdown(self) -> None:
        """Write what is queued, then stop."""
        for _ in self._threads:
            self._waiting.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch, stopping = [first], False
            while len(batch) < self._max_batch:
                try:
                    waiting = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    stopping = True
                    break
                batch.append(waiting)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[tuple[T, Future[bool]]]) -> None:
        try:
            stored = self._write([item for item, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            logger.warning("a batch of %d rows failed (%s); writing them one by one", len(batch), error)
            for one in batch:
                self._commit([one])
            return
        for item, future in batch:
            key = self._key(item)
            future.set_result(key in stored)
            stored.discard(key)  # a second item with the same key was not the one stored
