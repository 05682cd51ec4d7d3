"""The recall search as one SQL statement on the recall table's own Postgres table.

A Pixeltable query costs ~12 ms of catalog work before its SQL runs (~35 ms with building the query),
and recall needs one query for the nearest vectors and one per specific word of the question: about
100 ms per answer, on the thread that all recall work shares. The same search as one statement
(`UNION ALL` of the branches) on the table Pixeltable stores the rows in takes 2-5 ms: the nearest
vectors come from the HNSW index Pixeltable made for the embedding index, the word branches from a
full-text index added here (a GIN index of each message's words, core Postgres: no extension). A
word matches a message that has it as a word, case aside ("PX-1234" has "px" and "1234").

This reads Pixeltable's storage layout (live rows have `v_max = MAX_VERSION`; the embedding index's
vectors are in its value column), which Pixeltable does not promise to keep: `StoreSearch.of` returns
None when the layout is not what it expects, and recall then uses the Pixeltable query instead
(`agent.recall.table.search`, the reference the tests compare this with). Writes always go through
Pixeltable.
"""

from __future__ import annotations

import logging
import string
from datetime import datetime, timedelta
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa

from agent.recall.embeddings import Vector
from agent.recall.table import FIELDS, MemoryItem

logger = logging.getLogger(__name__)

EF_SEARCH = 100  # HNSW candidates examined (pgvector's default 40 is tight with exclusions)
ANALYZE_AFTER = 200  # rows written before a table's statistics are gathered again (if it has doubled)
# For the statement's transaction. A plan made for the question's words: psycopg prepares a statement
# run five times, and Postgres's generic plan for it would not know a common word from a rare one.
_SEARCH_SETTINGS = sa.text(
    f"SELECT set_config('hnsw.ef_search', '{EF_SEARCH}', true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true)"
)
_SPACES = str.maketrans(string.punctuation, " " * len(string.punctuation))


class StoreSearch:
    """Nearest items (and nearest among those containing given words) by one SQL statement."""

    def __init__(self, engine: sa.Engine, table: sa.Table, columns: dict[str, sa.Column[Any]], vectors: Any) -> None:
        self.engine = engine
        self.table = table
        self.columns = columns
        self.vectors = vectors  # the embedding index's value column (halfvec or vector)
        self.live = table.c.v_max == _max_version()
        self.words = _words_of(columns["text"], columns["user_name"])
        self._analyzed = 0  # rows when Postgres last gathered the table's statistics (as far as we know)
        self._written = 0  # rows written since

    @classmethod
    def of(cls, table: pxt.Table) -> StoreSearch | None:
        """The search for `table`, or None if Pixeltable's storage is not laid out as expected."""
        try:
            from pixeltable.env import Env

            version = table._tbl_version.get()
            store = version.store_tbl.sa_tbl
            columns = {name: version.cols_by_name[name].sa_col for name in FIELDS}
            [index] = [info for info in version.idxs_by_name.values() if info.col.name == "embedding"]
            vectors = index.val_col.sa_col
            if any(column is None for column in columns.values()) or vectors is None or "v_max" not in store.c:
                raise LookupError("a column has no storage")
            search = cls(Env.get().engine, store, columns, vectors)
            search._add_author_index()
            search._add_word_index()
            search._analyzed = search._rows_known_to_planner()
            return search
        except Exception as error:
            logger.warning("recall searches through Pixeltable queries (slower): %s", error)
            return None

    def candidates(
        self,
        vector: Vector,
        limit: int,
        exclude: set[str],
        words: list[str],
        per_word: int,
        window: tuple[datetime, datetime] | None = None,
    ) -> list[MemoryItem]:
        """The `limit` items nearest `vector`, then for each word the `per_word` nearest among items
        whose text or author's name has it as a word, and the `per_word` nearest from `window`;
        none of `exclude`. Scores are cosine similarities."""
        distance = self.vectors.cosine_distance(vector.tolist())
        conditions = [self.live]
        if exclude:
            conditions.append(~self.columns["key"].in_(sorted(exclude)))
        branches = [self._nearest(distance, conditions, limit)]
        for query in filter(None, map(_word_query, words)):
            contains = self.words.bool_op("@@")(sa.func.to_tsquery(_SIMPLE, query))
            branches.append(self._nearest(distance, [*conditions, contains], per_word))
        if window is not None:
            at = self.columns["at"]
            branches.append(self._nearest(distance, [*conditions, at >= window[0], at < window[1]], per_word))
        statement = sa.union_all(*(branch.subquery().select() for branch in branches))
        with self.engine.connect() as connection:
            connection.execute(_SEARCH_SETTINGS)
            rows = connection.execute(statement).mappings().all()
        return [MemoryItem(**{name: _text(row, name) for name in (*FIELDS, "score")}) for row in rows]

    def _nearest(self, distance: Any, conditions: list[Any], limit: int) -> sa.Select[Any]:
        """The `limit` nearest of the items that meet `conditions`. Postgres picks the index: for a
        word most messages have, the HNSW index (filtering the `EF_SEARCH` nearest); for a rare one,
        the word index (then sorting the few messages that have it), which is why it must know a
        common word from a rare one (`_add_word_index`)."""
        selected = [*(self.columns[name].label(name) for name in FIELDS), (1 - distance).label("score")]
        return sa.select(*selected).where(*conditions).order_by(distance).limit(limit)

    def continuations(self, anchors: list[MemoryItem], exclude: set[str], gap: timedelta) -> dict[str, MemoryItem]:
        """For each of `anchors` (by key), its author's next message if that `ranking.continues` it
        and is not one of `exclude` (the prompt has it already): one statement, a branch per anchor
        over a few minutes of the `(user, at)` index (a second statement, as only the few best
        results after ranking are continued)."""
        anchors = [anchor for anchor in anchors if anchor.role != "file"]
        if not anchors:
            return {}
        column = self.columns
        thread = sa.func.coalesce(column["thread_ts"], "")
        top_level = (thread == "") | (thread == column["ts"])
        branches = []
        for number, anchor in enumerate(anchors):
            same = thread == (anchor.thread_ts or anchor.ts)
            if anchor.thread_ts in ("", anchor.ts):
                same = same | top_level
            conditions = [self.live, column["user"] == anchor.user, column["role"] != "file", same]
            conditions += [column["at"] > anchor.at, column["at"] <= anchor.at + gap]
            selected = [*(column[name].label(name) for name in FIELDS), sa.literal(number).label("anchor")]
            branches.append(sa.select(*selected).where(*conditions).order_by(column["at"]).limit(1))
        statement = sa.union_all(*(branch.subquery().select() for branch in branches))
        with self.engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return {
            anchors[row["anchor"]].key: MemoryItem(**{name: _text(row, name) for name in FIELDS})
            for row in rows
            if row["key"] not in exclude
        }

    def grew(self, rows: int) -> None:
        """`rows` were written to the table: once it has doubled since Postgres last gathered its
        statistics, gather them (on the calling thread, the writes'). Autovacuum would, but up to a
        minute later, and meanwhile the planner takes a table that grew from nothing for a tiny
        one: it would read every row's words for a word search (~50 µs a row) instead of the index."""
        self._written += rows
        if self._written < max(ANALYZE_AFTER, self._analyzed):
            return
        self._analyzed, self._written = self._analyzed + self._written, 0
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.text(f'ANALYZE "{self.table.name}"'))
        except sa.exc.SQLAlchemyError as error:
            logger.info("no fresh statistics for a recall table (autovacuum gathers them later): %s", error)

    def _rows_known_to_planner(self) -> int:
        with self.engine.connect() as connection:
            statement = sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)")
            known = connection.execute(statement, {"name": self.table.name}).scalar()
        return max(0, int(known or 0))

    def _add_author_index(self) -> None:
        """A btree index on (author, time), so that a continuation is a lookup of a few index entries,
        not a scan (Pixeltable's own index on the time column is not one Postgres can use for it)."""
        name, user, at = self.table.name, self.columns["user"].name, self.columns["at"].name
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.text(f'CREATE INDEX IF NOT EXISTS {name}_user_at ON "{name}" ("{user}", "{at}")'))
        except sa.exc.SQLAlchemyError as error:
            logger.info("no author index for recall's continuations (they still work, by scanning): %s", error)

    def _add_word_index(self) -> None:
        """A full-text index of the words of each message and its author's name, so that "contains
        this word" is an index lookup, not a scan of every message; best effort, as a scan still
        finds them. A new index gets its statistics at once (the planner needs to know a common word
        from a rare one; autovacuum keeps them current). Earlier versions' trigram indexes
        (`pg_trgm`, which the embedded Postgres lacks) are dropped."""
        name = self.table.name
        try:
            with self.engine.begin() as connection:
                for field in ("text", "user_name"):
                    connection.execute(sa.text(f'DROP INDEX IF EXISTS "{name}_trgm_{field}"'))
                if connection.execute(sa.text("SELECT to_regclass(:index)"), {"index": f"{name}_words"}).scalar():
                    return
                connection.execute(sa.text(f'CREATE INDEX "{name}_words" ON "{name}" USING gin ({self.words})'))
                connection.execute(sa.text(f'ANALYZE "{name}"'))
        except sa.exc.SQLAlchemyError as error:
            logger.info("no word index for recall's word search (it still works, by scanning): %s", error)


_SIMPLE: sa.ColumnElement[Any] = sa.literal_column("'simple'::regconfig")  # no language's stemming, no stopwords


def _words_of(text: sa.Column[Any], user_name: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """The words of a message and its author's name as Postgres indexes them: SQL text with no
    parameters, the same in the index and in every query, so that the planner matches the two.
    Punctuation becomes space first, as Python's `\\w+` splits words (Postgres would read the "-1234"
    of "PX-1234" as a negative number)."""
    punctuation = string.punctuation.replace("'", "''")
    document = f"""coalesce("{text.name}", '') || ' ' || coalesce("{user_name.name}", '')"""
    translated = f"translate({document}, '{punctuation}', '{' ' * len(string.punctuation)}')"
    return sa.literal_column(f"to_tsvector('simple'::regconfig, {translated})")


def _word_query(word: str) -> str:
    """The full-text query for messages with each part of `word` as a word (`""`: a word of
    punctuation only, which matches nothing). Whole words, not prefixes: Postgres estimates how
    many messages have a word from its statistics, but guesses 2 % for any prefix, and a planner
    that takes a common word for a rare one sorts every message that has it."""
    return " & ".join(word.translate(_SPACES).split())


def _max_version() -> int:
    from pixeltable.metadata import schema

    return int(schema.Table.MAX_VERSION)


def _text(row: Any, name: str) -> Any:
    """A field of a result row; the file columns are empty (NULL) for the rows of an upgraded table."""
    value = row[name]
    return (value or "") if name in ("link", "place") else value
