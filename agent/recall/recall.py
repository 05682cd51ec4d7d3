"""`Recall`: what an agent remembers of its whole channel, found by meaning, for every answer.

The one entry point of the capability. The agent asks `find` for the memory most relevant to a
question (beyond the conversation's recent turns, which the prompt carries anyway) and tells
`remember` / `forget` what it stored or deleted; everything else (embedding, the recall tables,
batching, catch-up after a crash or an upgrade) is behind it. Recall never fails an answer: when the
embedding server is down or slow, `find` returns nothing and says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pixeltable as pxt

from agent.errors import EmbeddingError
from agent.recall import table as recall_table
from agent.recall.embeddings import Embedder, Vector
from agent.recall.indexer import Delete, Indexer, NameDirectory, Operation, Upsert
from agent.recall.ranking import rank, specific_words, time_window
from agent.recall.store_search import StoreSearch
from agent.recall.table import MemoryItem, memory_key, open_recall_table

logger = logging.getLogger(__name__)

CATCH_UP_MARGIN = timedelta(hours=1)  # memory rows this much older than the newest indexed one are re-checked
_SLACK_TS = re.compile(r"^\d{9,11}\.\d{1,6}$")


@dataclass(frozen=True)
class RecallLimits:
    """How much recall brings: `k` items at most, from `candidates` nearest plus a few per specific word."""

    k: int = 6
    candidates: int = 30
    per_word: int = 10
    max_tokens: int = 1_500  # of the prompt, after the recent turns


@dataclass(frozen=True)
class Recollection:
    """What `find` found, and the question's vector (stored with the question, not embedded again)."""

    items: list[MemoryItem] = field(default_factory=list)
    vector: Vector | None = None


class Recall:
    """Semantic recall over every agent's recall table; Pixeltable work runs on `storage`."""

    def __init__(
        self,
        embedder: Embedder,
        storage: Executor,
        loop: asyncio.AbstractEventLoop,
        limits: RecallLimits | None = None,
        names: NameDirectory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`names`: who a user ID is, so that messages are embedded and shown with their author's
        name and a question naming someone finds what they said."""
        self.embedder = embedder
        self.limits = limits or RecallLimits()
        self.clock = clock  # "now", for questions about "last week" (a benchmark's history has its own)
        self._storage = storage
        self._tables: dict[str, pxt.Table] = {}
        self._fast: dict[str, StoreSearch] = {}
        self._lock = threading.Lock()
        self.indexer = Indexer(embedder, self.table, storage, loop, names)

    def close(self) -> None:
        """Stop indexing and the storage executor given (after `indexer.wait_idle`, for a clean stop)."""
        self.indexer.stop()
        self._storage.shutdown(wait=True)

    def table(self, agent: str) -> pxt.Table:
        """The agent's recall table (storage thread), opened once per process; opening it catches up
        with memory rows that were stored but never indexed (a crash, an outage, an upgrade)."""
        with self._lock:
            found = self._tables.get(agent)
        if found is not None:
            return found
        opened = open_recall_table(agent, self.embedder.model, self.embedder.size)
        fast = StoreSearch.of(opened)
        with self._lock:
            self._tables[agent] = opened
            if fast is not None:
                self._fast[agent] = fast
        self.indexer.add(agent, self._catch_up(agent, opened))
        return opened

    async def find(self, agent: str, question: str, exclude: set[str]) -> Recollection:
        """The memory most relevant to `question`, best first, none of `exclude` (keys); empty when
        the agent has nothing indexed or the embedding server fails."""
        try:
            [vector] = await self.embedder.embed([question])
        except EmbeddingError as error:
            logger.warning("recall skipped for %s: %s", agent, error)
            return Recollection()
        loop = asyncio.get_running_loop()
        try:
            items = await loop.run_in_executor(self._storage, self._search, agent, question, vector, exclude)
        except Exception:
            logger.exception("recall search failed for %s; answering without it", agent)
            items = []
        return Recollection(items, vector)

    def search(self, agent: str, question: str, vector: Vector, exclude: set[str]) -> list[MemoryItem]:
        """`find` for synchronous callers (the command line), on the calling thread."""
        return self._search(agent, question, vector, exclude)

    def _search(self, agent: str, question: str, vector: Vector, exclude: set[str]) -> list[MemoryItem]:
        if agent not in self._tables and pxt.get_table(f"{agent}.memory", if_not_exists="ignore") is None:
            return []  # a channel with nothing stored yet
        table = self.table(agent)
        limits, words, now = self.limits, specific_words(question), self.clock()
        fast = self._fast.get(agent)
        if fast is not None:
            window = time_window(question, now)
            candidates = fast.candidates(vector, limits.candidates, exclude, words, limits.per_word, window)
        else:
            candidates = recall_table.search(table, vector, limits.candidates, exclude)
            for word in words:
                candidates += recall_table.search(table, vector, limits.per_word, exclude, containing=word)
        return rank(question, candidates, limits.k, now)

    def remember(self, agent: str, items: list[MemoryItem], vectors: dict[str, Vector] | None = None) -> None:
        """Index `items` (stored in memory just now); `vectors` by key where known already."""
        known = vectors or {}
        self.indexer.add(agent, [Upsert(item, known.get(item.key)) for item in items if item.text.strip()])

    def forget(self, agent: str, keys: list[str]) -> None:
        """Remove `keys` from recall (a deleted message, a forgotten thread)."""
        if keys:
            self.indexer.add(agent, [Delete(tuple(keys))])

    def _catch_up(self, agent: str, table: pxt.Table) -> list[Operation]:
        memory = pxt.get_table(f"{agent}.memory", if_not_exists="ignore")
        if memory is None:
            return []
        newest = recall_table.newest(table)
        since = None if newest is None else newest - CATCH_UP_MARGIN
        indexed = recall_table.stored_keys(table, since)
        query = memory if since is None else memory.where(memory.timestamp >= since)
        rows = query.select(
            memory.request_id, memory.role, memory.content, memory.user, memory.thread_ts, memory.timestamp
        ).collect()
        indexed |= self.indexer.queued_keys(agent)
        missing = [item for item in (memory_item(**row) for row in rows) if item.key not in indexed]
        if missing:
            logger.info("recall: indexing %d message(s) of %s stored before", len(missing), agent)
        return [Upsert(item) for item in missing if item.text.strip()]


def memory_item(request_id: str, role: str, content: str, user: str, thread_ts: str, timestamp: datetime) -> MemoryItem:
    """The recall item of one memory row; a turn named after a Slack message links to it."""
    ts = request_id if _SLACK_TS.match(request_id) else ""
    return MemoryItem(memory_key(request_id, role), content, role, user, timestamp, ts, thread_ts)
