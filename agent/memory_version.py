"""Whether anyone but this process changed an agent's memory since this process last saw it.

With several bot processes on one PostgreSQL, one process at a time answers a channel (the shared
order), but each may answer it in turn, and `pixelbot import`, retention or `delete-user` may write
it from anywhere. So an agent that is not its memory's sole writer read each conversation's newest
turns from storage on every turn: a Pixeltable query costing 17.7 ms of the one storage thread's
time per answer (`benchmarks.profile_bot --database external`), half of what an answer cost there.

Pixeltable numbers every change of a table (`current_version`, in the table's metadata row: one
insert, update or delete, one number; a delete that matched nothing, none). So the turns kept in
memory (`agent.recent`) stay exact as long as the stored number is the one this process saw when it
last read, or one past it right after a single write of its own: one indexed read of one row (~1 ms)
instead of the query. Anything else means someone else wrote in between, and what is kept is
dropped. An error reading the number counts as a change: kept turns are only ever dropped wrongly,
never used wrongly.

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

    def __init__(self, engine: sa.Engine, query: sa.Select[Any]) -> None:
        self._engine = engine
        self._query = query
        self._known: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, table: pxt.Table) -> MemoryVersion | None:
        """The version tracker of `table`, or None if Pixeltable's metadata is not laid out as expected.
        Raises `sqlalchemy.exc.DBAPIError` if the database could not be asked (try again later)."""
        try:
            from pixeltable.env import Env
            from pixeltable.metadata import schema

            table_id = table._tbl_version.get().id
            query = sa.select(schema.Table.md["current_version"].as_integer()).where(schema.Table.id == table_id)
            tracker = cls(Env.get().engine, query)
            if tracker._stored() is None:
                raise LookupError("the table has no stored version")
            return tracker
        except sa.exc.DBAPIError:
            raise
        except Exception as error:
            logger.warning("recent turns are read from storage on every turn: %s", error)
            return None

    def unchanged(self) -> bool:
        """Whether the stored version is the one last known; it is known from now on either way."""
        stored = self._stored_or_none()
        with self._lock:
            same = stored is not None and stored == self._known
            self._known = stored
        return same

    def wrote(self) -> bool:
        """After one write of this process that changed the version (not a delete that matched
        nothing): whether it was the only change since the version last known."""
        stored = self._stored_or_none()
        with self._lock:
            alone = stored is not None and self._known is not None and stored == self._known + 1
            self._known = stored
        return alone

    def lose_track(self) -> None:
        """After writes not counted one by one: the next `unchanged` says no."""
        with self._lock:
            self._known = None

    def _stored_or_none(self) -> int | None:
        try:
            return self._stored()
        except sa.exc.SQLAlchemyError as error:
            logger.warning("could not read the memory's version (%s); its recent turns are read again", error)
            return None

    def _stored(self) -> int | None:
        with self._engine.connect() as connection:
            value = connection.execute(self._query).scalar()
        return None if value is None else int(value)
