"""The recall table of one agent: every remembered message with its embedding, searchable by meaning.

`<agent>.recall` mirrors the agent's memory (which stays the record of what was said): one row per
message (`key`: the memory turn's request ID and role, or a listened/imported message's ts), with who
said it, when, in which thread, and its vector under a Pixeltable embedding index (cosine, pgvector)
on an array column. The vectors are computed by pixelbot (`agent.recall.embeddings`), so rows are
written in batches after the fact, and a primary key makes every write an idempotent upsert.
A table made for another embedding model or size is dropped and rebuilt from memory.
"""

from __future__ import annotations

import functools
import logging
import operator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pixeltable as pxt

from agent.recall.embeddings import Vector
from agent.store import creating
from agent.versions import purge_kept_versions

FIELDS = ("key", "text", "role", "user", "at", "ts", "thread_ts", "user_name", "link", "place")
"""The recall table's columns a `MemoryItem` is read from."""

logger = logging.getLogger(__name__)

MODEL_COLUMN = "model"


@dataclass(frozen=True)
class MemoryItem:
    """One message as recall stores and returns it; `score` is set on search results."""

    key: str
    text: str
    role: str
    user: str
    at: datetime
    ts: str = ""  # the Slack message, for a permalink ("" when there is none, e.g. an answer)
    thread_ts: str = ""
    user_name: str = ""  # the author's display name, when known
    score: float = 0.0
    channel_id: str = ""  # set when recalled from another channel than the answering one (the assistant panel's)
    link: str = ""  # a piece of a file (role "file"): the file's permalink; `user_name` is the file's name
    place: str = ""  # and where in the file it is ("page 2", a heading)

    @property
    def embedded_text(self) -> str:
        """What is embedded: who said it matters in a conversation ("what did Priya find?"), which file
        and where in it for a piece of a file ("what does the spec say on page 2?")."""
        if self.role == "file":
            return f"{self.user_name}, {self.place}: {self.text}" if self.place else f"{self.user_name}: {self.text}"
        return f"{self.user_name}: {self.text}" if self.user_name else self.text


def memory_key(request_id: str, role: str) -> str:
    """The recall key of a memory row: a turn stores at most one message per role."""
    return f"{request_id}:{role}"


def recall_table_name(agent_name: str) -> str:
    return f"{agent_name}.recall"


def open_recall_table(agent_name: str, model: str, size: int) -> pxt.Table:
    """The agent's recall table for this embedding model and size, created (or rebuilt) if need be."""
    name = recall_table_name(agent_name)
    table = pxt.get_table(name, if_not_exists="ignore")
    if table is not None and made_for(table, model, size):
        return with_file_columns(table)
    with creating():  # against other threads and processes changing the catalog at the same time
        table = _create(name, model, size)
    return with_file_columns(table)


def _create(name: str, model: str, size: int) -> pxt.Table:
    table = pxt.get_table(name, if_not_exists="ignore")
    if table is not None and not made_for(table, model, size):
        pxt.drop_table(name, force=True)
        table = None
    if table is None:
        schema: dict[str, Any] = {
            "key": pxt.Required[pxt.String],
            "text": pxt.String,
            "role": pxt.String,
            "user": pxt.String,
            "user_name": pxt.String,
            "at": pxt.Timestamp,
            "ts": pxt.String,
            "thread_ts": pxt.String,
            "link": pxt.String,
            "place": pxt.String,
            MODEL_COLUMN: pxt.String,
            "embedding": pxt.Array[(size,), pxt.Float],  # type: ignore[misc]
        }
        table = pxt.create_table(name, schema, primary_key=["key"], if_exists="ignore")
        table.add_embedding_index("embedding", metric="cosine", if_exists="ignore")
        table.add_btree_index("at", if_exists="ignore")
    return table


def with_file_columns(table: pxt.Table) -> pxt.Table:
    """A recall table made before files were recalled gets their columns (empty for messages)."""
    missing: dict[str, Any] = {name: pxt.String | None for name in FILE_COLUMNS if name not in table.columns()}
    if missing:
        try:
            with creating():
                table.add_columns(missing, if_exists="ignore")
        except Exception:  # recall then finds and keeps no pieces of files here, and says so, once per start
            logger.exception("could not add the file columns to %s", table._name())
    return table


FILE_COLUMNS = ("link", "place")


def made_for(table: pxt.Table, model: str, size: int) -> bool:
    """Whether `table` holds vectors of this model and size (else it is rebuilt)."""
    schema = table._get_schema()
    if getattr(schema.get("embedding"), "shape", None) != (size,) or "user_name" not in schema:
        return False
    rows = table.select(getattr(table, MODEL_COLUMN)).limit(1).collect()
    return len(rows) == 0 or next(iter(rows))[MODEL_COLUMN] == model


def upsert(table: pxt.Table, items: list[tuple[MemoryItem, Vector]], model: str, new: bool = True) -> None:
    """Store `items` with their vectors; an item stored before is replaced (an edit, or a retry).

    `new`: the items are most likely not stored yet (a turn just stored, a listened message), so
    they are inserted in one call, and only if that finds a key stored already is each checked.
    """
    rows = [_row(item, vector, model) for item, vector in items]
    latest = list({row["key"]: row for row in rows}.values())  # the last version of a key, if a batch has two
    if new:
        try:
            table.insert(latest)
            return
        except pxt.Error as error:
            if "Duplicate primary key" not in str(error):
                raise
    _checked_upsert(table, latest)


def _checked_upsert(table: pxt.Table, rows: list[dict[str, Any]]) -> None:
    keys = sorted({row["key"] for row in rows})
    stored = {row["key"] for row in table.where(table.key.isin(keys)).select(table.key).collect()}
    fresh = [row for row in rows if row["key"] not in stored]
    changed = [row for row in rows if row["key"] in stored]
    if fresh:
        table.insert(fresh)  # ~6x faster than `batch_update`, which upserts row by row
    if changed:
        table.batch_update(changed)


def delete(table: pxt.Table, keys: list[str]) -> None:
    """Delete the rows of `keys`, and what Pixeltable keeps of them: a deleted message is gone."""
    table.delete(table.key.isin(keys))
    purge_kept_versions(table, table._name(), "key", keys)


def stored_keys(table: pxt.Table, since: datetime | None) -> set[str]:
    query = table if since is None else table.where(table.at >= since)
    return {row["key"] for row in query.select(table.key).collect()}


def newest(table: pxt.Table) -> datetime | None:
    rows = list(table.order_by(table.at, asc=False).limit(1).select(table.at).collect())
    return rows[0]["at"] if rows else None


def search(
    table: pxt.Table, vector: Vector, limit: int, exclude: set[str], containing: str | None = None
) -> list[MemoryItem]:
    """The `limit` items most similar to `vector`, best first, none of `exclude`; with `containing`,
    only items whose text or author's name contains that word (case-insensitive), still ranked by
    similarity."""
    similarity = table.embedding.similarity(vector=vector)
    conditions = [~table.key.isin(sorted(exclude))] if exclude else []
    if containing is not None:
        conditions.append(
            table.text.contains(containing, case=False) | table.user_name.contains(containing, case=False)
        )
    query = table.where(functools.reduce(operator.and_, conditions)) if conditions else table
    rows = (
        query.order_by(similarity, asc=False)
        .limit(limit)
        .select(
            table.key,
            table.text,
            table.role,
            table.user,
            table.at,
            table.ts,
            table.thread_ts,
            table.user_name,
            table.link,
            table.place,
            score=similarity,
        )
        .collect()
    )
    return [MemoryItem(**(row | {name: row.get(name) or "" for name in FILE_COLUMNS})) for row in rows]


def continuations(
    table: pxt.Table, anchors: list[MemoryItem], exclude: set[str], gap: timedelta
) -> dict[str, MemoryItem]:
    """`StoreSearch.continuations` as one Pixeltable query (the reference, and the slower way): the
    authors' messages soon after each anchor, of which the first that continues it, unless the
    prompt has it already (`exclude`)."""
    from agent.recall.ranking import continues

    anchors = [anchor for anchor in anchors if anchor.role != "file"]
    if not anchors:
        return {}
    near = [(table.user == a.user) & (table.at > a.at) & (table.at <= a.at + gap) for a in anchors]
    rows = table.where(functools.reduce(operator.or_, near)).select(*(getattr(table, name) for name in FIELDS))
    later = sorted(
        (
            MemoryItem(**(row | {name: row.get(name) or "" for name in (*FILE_COLUMNS, "thread_ts", "ts")}))
            for row in rows.collect()
        ),
        key=lambda item: item.at,
    )
    found: dict[str, MemoryItem] = {}
    for anchor in anchors:
        follow = next((item for item in later if continues(anchor, item, gap)), None)
        if follow is not None and follow.key not in exclude:
            found[anchor.key] = follow
    return found


def _row(item: MemoryItem, vector: Vector, model: str) -> dict[str, Any]:
    return {
        "key": item.key,
        "text": item.text,
        "role": item.role,
        "user": item.user,
        "user_name": item.user_name,
        "at": item.at,
        "ts": item.ts,
        "thread_ts": item.thread_ts,
        "link": item.link,
        "place": item.place,
        MODEL_COLUMN: model,
        "embedding": vector,
    }
