"""Whether anyone but this process changed an agent's memory since this process last saw it.

With several bot processes on one PostgreSQL, one process at a time answers a channel (the shared
order), but each may answer it in turn, and `pixelbot import`, retention or `delete-user` may write
it from anywhere. So an agent that is not its memory's sole writer read each conversation's newest
turns from storage on every turn: a Pixeltable query costing 17.7 ms of the one storage thread's
time per answer (`benchmarks.profile_bot --database external`), half of what an answer cost there.

Pixeltable numbers every change of a table (`current_version`, in the table's metadata row), and a
write through this process leaves the new number in its catalog. So the turns kept in memory
(`agent.recent`) stay exact as long as the stored number is the one this process's own last write
made, or saw when it last read: one indexed read of one row (~1 ms) instead of the query. A write
whose number is not one past the last seen means someone else wrote in between, and what is kept is
dropped.

The number is read from Pixeltable's metadata table directly: its public `get_metadata()` costs
~4 ms of catalog work. If that layout ever changes, `MemoryVersion.of` returns None and the agent
reads from storage on every turn, as before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa

logger = logging.getLogger(__name__)


class MemoryVersion:
    """The version of one memory table as this process last knew it (None: not known)."""

    def __init__(self, table: pxt.Table, engine: sa.Engine, query: sa.Select[Any]) -> None:
        self._table = table
        self._engine = engine
        self._query = query
        self._known: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, table: pxt.Table) -> MemoryVersion | None:
        """The version tracker of `table`, or None if Pixeltable's metadata is not laid out as expected."""
        try:
            from pixeltable.env import Env
            from pixeltable.metadata import schema

            table_id = table._tbl_version.get().id
            query = sa.select(schema.Table.md["current_version"].as_integer()).where(schema.Table.id == table_id)
            tracker = cls(table, Env.get().engine, query)
            if tracker._stored() is None or tracker._local() < 0:
                raise LookupError("the table has no stored version")
            return tracker
        except Exception as error:
            logger.warning("recent turns are read from storage on every turn: %s", error)
            return None

    def unchanged(self) -> bool:
        """Whether the stored version is the one last known; it is known from now on either way."""
        stored = self._stored()
        with self._lock:
            same, self._known = stored == self._known, stored
        return same

    def wrote(self) -> bool:
        """After a write of this process: whether it was the only change since the version last known."""
        local = self._local()
        with self._lock:
            alone = self._known is not None and local == self._known + 1
            self._known = local
        return alone

    def lose_track(self) -> None:
        """After writes not counted one by one: the next `unchanged` says no."""
        with self._lock:
            self._known = None

    def _stored(self) -> int | None:
        with self._engine.connect() as connection:
            value = connection.execute(self._query).scalar()
        return None if value is None else int(value)

    def _local(self) -> int:
        return int(self._table._tbl_version.get().version)
