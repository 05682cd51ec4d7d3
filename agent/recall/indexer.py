"""Writing the recall tables in the background: batched embeddings, in order per agent, never lost.

Every change to what an agent remembers (a stored turn, a listened message, an edit, a deletion)
becomes an operation in its agent's queue. One coroutine works through the queues: consecutive
upserts of an agent are embedded together (one request for up to `BATCH_SIZE` texts; under load the
queue fills while the previous batch is written, so batches grow by themselves) and written in one
Pixeltable call on the storage executor; deletions are applied in their place in the order. When the
embedding server fails, the agent's operations stay queued and are retried with backoff; messages
stored meanwhile are in memory already and answers go on without recall. What a crash loses from
these queues, `Recall` finds again by comparing memory with the recall table when it next opens it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import pixeltable as pxt

from agent.errors import EmbeddingError
from agent.recall import table as recall_table
from agent.recall.embeddings import BATCH_SIZE, Embedder, Vector
from agent.recall.table import MemoryItem

logger = logging.getLogger(__name__)

MAX_BATCH = 4 * BATCH_SIZE  # upserts written by one Pixeltable call
RETRY_FIRST, RETRY_MAX = 2.0, 60.0  # seconds between tries while the embedding server fails
GATHER_SECONDS = 0.5  # wait after new work before writing it: a Pixeltable insert costs per call, not per row


@dataclass(frozen=True)
class Upsert:
    item: MemoryItem
    vector: Vector | None = None  # known already (a question embedded for its own recall)
    new: bool = True  # not indexed before, as far as the caller knows (an edit is not)


@dataclass(frozen=True)
class Delete:
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Open:
    """Open (or create) the agent's recall table, which catches it up with memory the first time."""


Operation = Upsert | Delete | Open
TableOpener = Callable[[str, int], "pxt.Table | None"]  # (agent, rows about to be added), on the storage executor
NameDirectory = Callable[[str, str], str]  # (user ID, agent) -> display name ("" if unknown); may be slow at first


FILES_GROW = 1 << 30  # what a batch with pieces of files "adds": the recall table is made at once


class Indexer:
    """The queues of recall writes, one per agent, and the coroutine that applies them."""

    def __init__(
        self,
        embedder: Embedder,
        open_table: TableOpener,
        storage: Executor,
        loop: asyncio.AbstractEventLoop,
        names: NameDirectory | None = None,
        written: Callable[[str, int], None] = lambda agent, rows: None,
    ) -> None:
        """`written(agent, rows)` is told of every batch written, on the storage executor."""
        self._embedder = embedder
        self._written = written
        self._names = names
        self._open_table = open_table
        self._storage = storage
        self._loop = loop
        self._queues: dict[str, deque[Operation]] = {}
        self._lock = threading.RLock()  # also the condition's, whose predicate takes it again
        self._wake = asyncio.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight: dict[str, list[Operation]] = {}  # the batch being applied, per agent
        self._retry_after = 0.0
        self._task = asyncio.run_coroutine_threadsafe(self._run(), loop)
        self.batches: deque[int] = deque(maxlen=10_000)  # sizes of the latest embedding requests (benchmarks)

    def add(self, agent: str, operations: list[Operation]) -> None:
        """Queue `operations` for `agent` (from any thread)."""
        if not operations:
            return
        with self._lock:
            self._queues.setdefault(agent, deque()).extend(operations)
        self._loop.call_soon_threadsafe(self._wake.set)

    def open_later(self, agent: str) -> None:
        """Queue an `Open` for `agent`, unless one is queued already."""
        with self._lock:
            if any(isinstance(op, Open) for op in self._queues.get(agent, ())):
                return
        self.add(agent, [Open()])

    def queued_keys(self, agent: str) -> set[str]:
        """Keys of the upserts waiting or being written for `agent` (so that catching up does not
        embed them twice)."""
        with self._lock:
            ops = [*self._queues.get(agent, ()), *self._in_flight.get(agent, ())]
            return {op.item.key for op in ops if isinstance(op, Upsert)}

    def pending(self) -> int:
        with self._lock:
            return sum(len(ops) for ops in (*self._queues.values(), *self._in_flight.values()))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued operation is applied (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self.pending() == 0, timeout)

    def stop(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.pending() < MAX_BATCH:
                await asyncio.sleep(GATHER_SECONDS)  # let more arrive: one write for many rows
            self._wake.clear()
            for agent in self._agents_with_work():
                await self._drain(agent)
            if self._retry_after:
                delay, self._retry_after = self._retry_after, 0.0
                self._loop.call_later(delay, self._wake.set)

    def _agents_with_work(self) -> list[str]:
        with self._lock:
            return [agent for agent, queue in self._queues.items() if queue]

    async def _drain(self, agent: str) -> None:
        while batch := self._take(agent):
            try:
                await self._apply(agent, batch)
            except EmbeddingError as error:
                self._put_back(agent, batch)
                self._back_off(agent, error)
                return
            except Exception:
                logger.exception("recall indexing failed for %s; %d change(s) dropped", agent, len(batch))
                self._done(agent)
                return
            self._done(agent)

    def _take(self, agent: str) -> list[Operation]:
        """The next run of upserts (up to `MAX_BATCH`), or the next deletion, of `agent`'s queue."""
        with self._lock:
            queue = self._queues.get(agent)
            if not queue:
                return []
            if not isinstance(queue[0], Upsert):
                batch: list[Operation] = [queue.popleft()]
            else:
                batch = []
                while queue and isinstance(queue[0], Upsert) and len(batch) < MAX_BATCH:
                    batch.append(queue.popleft())
            self._in_flight[agent] = batch
            return batch

    def _put_back(self, agent: str, batch: list[Operation]) -> None:
        with self._idle:
            self._queues.setdefault(agent, deque()).extendleft(reversed(batch))
            self._done(agent)

    def _done(self, agent: str) -> None:
        with self._idle:
            self._in_flight.pop(agent, None)
            self._idle.notify_all()

    def _back_off(self, agent: str, error: EmbeddingError) -> None:
        self._retry_after = RETRY_FIRST if not self._retry_after else min(RETRY_MAX, self._retry_after * 2)
        logger.warning("recall indexing for %s postponed %.0f s: %s", agent, self._retry_after, error)
        with self._idle:
            self._idle.notify_all()

    async def _apply(self, agent: str, batch: list[Operation]) -> None:
        first = batch[0]
        if isinstance(first, Open):
            await self._on_storage(lambda: self._opened(agent))
            return
        if isinstance(first, Delete):
            keys = list(first.keys)
            await self._on_storage(lambda: self._delete(agent, keys))
            return
        grow = len(batch)
        if any(isinstance(op, Upsert) and op.item.role == "file" for op in batch):
            grow = FILES_GROW  # pieces of files are never in memory, so they could not be indexed later
        table = await asyncio.get_running_loop().run_in_executor(self._storage, self._open_table, agent, grow)
        if table is None:
            return  # too little memory for recall yet: these rows are indexed from memory when it starts
        upserts = [await self._named(op, agent) for op in batch if isinstance(op, Upsert)]
        missing = [op.item.embedded_text for op in upserts if op.vector is None]
        if missing:
            self.batches.append(len(missing))
        fresh = iter(await self._embedder.embed(missing) if missing else [])
        items = [(op.item, op.vector if op.vector is not None else next(fresh)) for op in upserts]
        new = all(op.new for op in upserts)
        await self._on_storage(lambda: self._upsert(agent, table, items, new))

    def _upsert(self, agent: str, table: pxt.Table, items: list[tuple[MemoryItem, Vector]], new: bool) -> None:
        recall_table.upsert(table, items, self._embedder.model, new)
        self._written(agent, len(items))

    async def _named(self, op: Upsert, agent: str) -> Upsert:
        """`op` with its author's display name, if a directory knows it (and the vector is still to come)."""
        if self._names is None or op.item.user_name or not op.item.user or op.vector is not None:
            return op
        name = await asyncio.get_running_loop().run_in_executor(self._storage, self._names, op.item.user, agent)
        return replace(op, item=replace(op.item, user_name=name)) if name else op

    def _opened(self, agent: str) -> None:
        self._open_table(agent, 0)

    def _delete(self, agent: str, keys: list[str]) -> None:
        table = self._open_table(agent, 0)
        if table is not None:
            recall_table.delete(table, keys)

    async def _on_storage(self, work: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._storage, work)
