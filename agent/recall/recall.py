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
from agent.recall.indexer import FILES_GROW, Delete, Indexer, NameDirectory, Operation, Upsert
from agent.recall.ranking import CONTINUATION_GAP, CONTINUED, rank, specific_words, time_window, with_continuations
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
    start_after: int = 30  # messages in a channel's memory before recall starts (0: from the first)


@dataclass(frozen=True)
class Recollection:
    """What `find` found, and the question's vector (stored with the question, not embedded again)."""

    items: list[MemoryItem] = field(default_factory=list)
    vector: Vector | None = None


class Recall:
    """Semantic recall over every agent's recall table.

    Pixeltable work runs on two executors: `writes` (creating tables, catching up, index writes)
    and `reads` (searches; by default the same), so that an answer's search never waits behind a new
    channel's table being created or a batch being written.
    """

    def __init__(
        self,
        embedder: Embedder,
        writes: Executor,
        loop: asyncio.AbstractEventLoop,
        limits: RecallLimits | None = None,
        names: NameDirectory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reads: Executor | None = None,
    ) -> None:
        """`names`: who a user ID is, so that messages are embedded and shown with their author's
        name and a question naming someone finds what they said."""
        self.embedder = embedder
        self.limits = limits or RecallLimits()
        self.clock = clock  # "now", for questions about "last week" (a benchmark's history has its own)
        self._writes = writes
        self._reads = reads or writes
        self._tables: dict[str, pxt.Table] = {}
        self._fast: dict[str, StoreSearch] = {}
        self._caught_up: set[str] = set()
        self._absent: set[str] = set()  # agents whose table the indexer has yet to create
        self._small: dict[str, int] = {}  # memory rows of agents without a table yet
        self._lock = threading.Lock()
        self.indexer = Indexer(embedder, self.table, writes, loop, names, self._written)

    def close(self) -> None:
        """Stop indexing and the executors given (after `indexer.wait_idle`, for a clean stop)."""
        self.indexer.stop()
        for executor in {self._writes, self._reads}:
            executor.shutdown(wait=True)

    def table(self, agent: str, grow: int = 0) -> pxt.Table | None:
        """The agent's recall table, created if need be (on the writes executor), or None while the
        agent's memory (with `grow` rows about to be added) holds no more than `limits.start_after`
        messages: until then the recent turns carry a channel, and a new channel costs no recall
        table. The first time in this process it also catches up with memory rows that were stored
        but never indexed (a crash, an outage, an upgrade, a channel that just grew enough)."""
        with self._lock:
            found = self._tables.get(agent)
        if found is None and not self._big_enough(agent, grow):
            return None
        table = found or open_recall_table(agent, self.embedder.model, self.embedder.size)
        if found is None:
            self._register(agent, table)
        if agent not in self._caught_up:
            self._caught_up.add(agent)
            self.indexer.add(agent, self._catch_up(agent, table))
        return table

    def _big_enough(self, agent: str, grow: int) -> bool:
        """Whether the agent has (or had, in an earlier run) enough memory for recall (pieces of files
        make it so at once)."""
        if self.limits.start_after <= 0 or grow >= FILES_GROW:
            return True
        known = self._small.get(agent)
        if known is None:
            if pxt.get_table(recall_table.recall_table_name(agent), if_not_exists="ignore") is not None:
                return True
            memory = pxt.get_table(f"{agent}.memory", if_not_exists="ignore")
            # the rows being indexed are stored already; a count on this thread can miss a table or
            # rows another thread has just written, and an undercount here would never be made good
            known = max(memory.count() if memory is not None else 0, grow)
        else:
            known += grow
        self._small[agent] = known
        return known > self.limits.start_after

    def _register(self, agent: str, table: pxt.Table) -> None:
        table = recall_table.with_file_columns(table)  # a table of an earlier version gets them first
        fast = StoreSearch.of(table)
        with self._lock:
            self._tables[agent] = table
            self._absent.discard(agent)
            if fast is not None:
                self._fast[agent] = fast

    def _written(self, agent: str, rows: int) -> None:
        fast = self._fast.get(agent)
        if fast is not None:
            fast.grew(rows)

    def _searchable(self, agent: str) -> pxt.Table | None:
        """The agent's recall table if it exists (never created here: a search must not wait for
        that); a table found here is caught up with memory by the indexer, in the background."""
        with self._lock:
            found = self._tables.get(agent)
            if found is not None or agent in self._absent:
                return found  # an absent table is made by the indexer, which then registers it
        table = pxt.get_table(recall_table.recall_table_name(agent), if_not_exists="ignore")
        if table is not None and recall_table.made_for(table, self.embedder.model, self.embedder.size):
            self._register(agent, table)
        else:
            table = None
            with self._lock:
                self._absent.add(agent)
        if pxt.get_table(f"{agent}.memory", if_not_exists="ignore") is not None:
            self.indexer.open_later(agent)  # creates the table or catches it up
        return table

    def new_agent(self, agent: str) -> None:
        """`agent` has no tables yet, so no recall table: its searches find nothing, without looking,
        until the indexer makes the table (and registers it) once the channel has grown enough."""
        with self._lock:
            if agent not in self._tables:
                self._absent.add(agent)

    async def find(self, agent: str, question: str, exclude: set[str]) -> Recollection:
        """The memory most relevant to `question`, best first, none of `exclude` (keys); empty when
        the agent has nothing indexed or the embedding server fails. A channel without a recall
        table (yet) costs neither an embedding request nor a search."""
        loop = asyncio.get_running_loop()
        with self._lock:
            known, absent = agent in self._tables, agent in self._absent
        if absent or (not known and await loop.run_in_executor(self._reads, self._searchable, agent) is None):
            return Recollection()
        try:
            [vector] = await self.embedder.embed([question])
        except EmbeddingError as error:
            logger.warning("recall skipped for %s: %s", agent, error)
            return Recollection()
        try:
            items = await loop.run_in_executor(self._reads, self._search, agent, question, vector, exclude)
        except Exception:
            logger.exception("recall search failed for %s; answering without it", agent)
            items = []
        return Recollection(items, vector)

    def search(self, agent: str, question: str, vector: Vector, exclude: set[str]) -> list[MemoryItem]:
        """`find` for synchronous callers (the command line), on the calling thread."""
        return self._search(agent, question, vector, exclude)

    def _search(self, agent: str, question: str, vector: Vector, exclude: set[str]) -> list[MemoryItem]:
        table = self._searchable(agent)
        if table is None:
            return []  # nothing indexed yet
        limits, words, now = self.limits, specific_words(question), self.clock()
        fast = self._fast.get(agent)
        if fast is not None:
            window = time_window(question, now)
            candidates = fast.candidates(vector, limits.candidates, exclude, words, limits.per_word, window)
        else:
            candidates = recall_table.search(table, vector, limits.candidates, exclude)
            for word in words:
                candidates += recall_table.search(table, vector, limits.per_word, exclude, containing=word)
        ranked = rank(question, candidates, limits.k, now)
        anchors = ranked[:CONTINUED]
        if fast is not None:
            follows = fast.continuations(anchors, exclude, CONTINUATION_GAP)
        else:
            follows = recall_table.continuations(table, anchors, exclude, CONTINUATION_GAP)
        return with_continuations(ranked, follows, limits.k)

    def remember(
        self, agent: str, items: list[MemoryItem], vectors: dict[str, Vector] | None = None, new: bool = True
    ) -> None:
        """Index `items` (stored in memory just now; `new=False` for changed ones); `vectors` by key
        where known already."""
        known = vectors or {}
        self.indexer.add(agent, [Upsert(item, known.get(item.key), new) for item in items if item.text.strip()])

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
