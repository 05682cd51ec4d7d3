"""The recall search as one SQL statement on the recall table's own Postgres table.

A Pixeltable query costs ~12 ms of catalog work before its SQL runs (~35 ms with building the query),
and recall needs one query for the nearest vectors and one per specific word of the question: about
100 ms per answer, on the thread that all recall work shares. The same search as one statement
(`UNION ALL` of the branches) on the table Pixeltable stores the rows in takes 2-5 ms: the nearest
vectors come from the HNSW index Pixeltable made for the embedding index, the word branches from a
trigram index added here (`pg_trgm`, where the database allows the extension).

This reads Pixeltable's storage layout (live rows have `v_max = MAX_VERSION`; the embedding index's
vectors are in its value column), which Pixeltable does not promise to keep: `StoreSearch.of` returns
None when the layout is not what it expects, and recall then uses the Pixeltable query instead
(`agent.recall.table.search`, the reference the tests compare this with). Writes always go through
Pixeltable.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa

from agent.recall.embeddings import Vector
from agent.recall.table import FIELDS, MemoryItem

logger = logging.getLogger(__name__)

EF_SEARCH = 100  # HNSW candidates examined (pgvector's default 40 is tight with exclusions)


class StoreSearch:
    """Nearest items (and nearest among those containing given words) by one SQL statement."""

    def __init__(self, engine: sa.Engine, table: sa.Table, columns: dict[str, sa.Column[Any]], vectors: Any) -> None:
        self.engine = engine
        self.table = table
        self.columns = columns
        self.vectors = vectors  # the embedding index's value column (halfvec or vector)
        self.live = table.c.v_max == _max_version()

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
            search._add_word_indexes()
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
        whose text or author contains it, and the `per_word` nearest from `window`; none of
        `exclude`. Scores are cosine similarities."""
        distance = self.vectors.cosine_distance(vector.tolist())
        selected = [*(self.columns[name].label(name) for name in FIELDS), (1 - distance).label("score")]
        conditions = [self.live]
        if exclude:
            conditions.append(~self.columns["key"].in_(sorted(exclude)))
        branches = [sa.select(*selected).where(*conditions).order_by(distance).limit(limit)]
        for word in words:
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            contains = self.columns["text"].ilike(pattern) | self.columns["user_name"].ilike(pattern)
            branches.append(sa.select(*selected).where(*conditions, contains).order_by(distance).limit(per_word))
        if window is not None:
            at = self.columns["at"]
            during = (at >= window[0]) & (at < window[1])
            branches.append(sa.select(*selected).where(*conditions, during).order_by(distance).limit(per_word))
        statement = sa.union_all(*(branch.subquery().select() for branch in branches))
        with self.engine.connect() as connection:
            connection.execute(sa.text(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}"))
            rows = connection.execute(statement).mappings().all()
        return [MemoryItem(**{name: _text(row, name) for name in (*FIELDS, "score")}) for row in rows]

    def continuations(self, anchors: list[MemoryItem], exclude: set[str], gap: timedelta) -> dict[str, MemoryItem]:
        """For each of `anchors` (by key), its author's next message that `ranking.continues` it, if
        any, none of `exclude`: one statement, a branch per anchor over a few minutes of the `at`
        index (a second statement, as only the few best results after ranking are continued)."""
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
            if exclude:
                conditions.append(~column["key"].in_(sorted(exclude)))
            selected = [*(column[name].label(name) for name in FIELDS), sa.literal(number).label("anchor")]
            branches.append(sa.select(*selected).where(*conditions).order_by(column["at"]).limit(1))
        statement = sa.union_all(*(branch.subquery().select() for branch in branches))
        with self.engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return {anchors[row["anchor"]].key: MemoryItem(**{name: _text(row, name) for name in FIELDS}) for row in rows}

    def _add_author_index(self) -> None:
        """A btree index on (author, time), so that a continuation is a lookup of a few index entries,
        not a scan (Pixeltable's own index on the time column is not one Postgres can use for it)."""
        name, user, at = self.table.name, self.columns["user"].name, self.columns["at"].name
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.text(f'CREATE INDEX IF NOT EXISTS {name}_user_at ON "{name}" ("{user}", "{at}")'))
        except sa.exc.SQLAlchemyError as error:
            logger.info("no author index for recall's continuations (they still work, by scanning): %s", error)

    def _add_word_indexes(self) -> None:
        """Trigram indexes on the text and author columns, so that "contains this word" is an index
        lookup, not a scan; best effort (an external database may not allow the extension)."""
        if not _trigrams(self.engine):
            return
        name = self.table.name
        try:
            with self.engine.begin() as connection:
                for field in ("text", "user_name"):
                    connection.execute(
                        sa.text(
                            f'CREATE INDEX IF NOT EXISTS {name}_trgm_{field} ON "{name}" '
                            f'USING gin ("{self.columns[field].name}" gin_trgm_ops)'
                        )
                    )
        except sa.exc.SQLAlchemyError as error:
            logger.info("no trigram index for recall's word search (it still works, by scanning): %s", error)


@functools.cache
def _trigrams(engine: sa.Engine) -> bool:
    """Whether the database has `pg_trgm` (created here if allowed); asked once per process."""
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.SQLAlchemyError as error:
        logger.info("no pg_trgm: recall's word search scans instead of using an index: %s", error)
        return False
    return True


def _max_version() -> int:
    from pixeltable.metadata import schema

    return int(schema.Table.MAX_VERSION)


def _text(row: Any, name: str) -> Any:
    """A field of a result row; the file columns are empty (NULL) for the rows of an upgraded table."""
    value = row[name]
    return (value or "") if name in ("link", "place") else value
