"""Group commit: many threads' small writes become one write per round trip.

Pixeltable turns every insert or update into a new version of the table, so writes to one table are
serialized; under load, twenty acknowledgements each waiting for their own insert take seconds. A
`Batcher` hands everything queued while the previous write ran to a single call of `flush`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
_STOP = object()


class Batcher(Generic[Item, Result]):
    """Runs `flush(items) -> results` on its own thread, for as many queued items as are waiting."""

    def __init__(self, flush: Callable[[list[Item]], Sequence[Result]], name: str, max_batch: int = 200) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._queue: queue.Queue[tuple[Item, Future[Result]] | object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Future[Result]:
        future: Future[Result] = Future()
        self._queue.put((item, future))
        return future

    def stop(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if batch:
                self._write(batch)

    def _next_batch(self) -> tuple[list[tuple[Item, Future[Result]]], bool]:
        entries = [self._queue.get()]
        while len(entries) < self._max_batch and not self._queue.empty():
            entries.append(self._queue.get_nowait())
        batch = [entry for entry in entries if entry is not _STOP]
        return batch, len(batch) < len(entries)  # type: ignore[return-value]

    def _write(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        try:
            results = self._flush([item for item, _ in batch])
        except Exception as error:
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
