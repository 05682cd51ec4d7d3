"""What Pixeltable keeps of deleted and updated rows, and removing it where a deletion must be one.

Pixeltable versions its tables: a delete or an update leaves the earlier version of each row in the
Postgres table that stores it (`v_max` set to the version that ended it), so that `revert()` and reads
of old versions work. A message that retention, an admin (`/pixelbot forget`) or a user's erasure
deletes must not linger there, so these helpers reach the stored versions directly, by SQL on
Pixeltable's storage layout (as `agent.recall.store_search` does for reading), and do nothing (with a
warning) if that layout is not the one expected.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredVersions:
    """The Postgres table a Pixeltable table's rows are stored in: every version of every row, the live
    ones with `v_max = MAX_VERSION`, the others kept for `revert()` and reading old versions."""

    engine: sa.Engine
    table: sa.Table
    rowid: sa.Column[Any]
    columns: dict[str, sa.Column[Any]]

    @classmethod
    def of(cls, table: pxt.Table, agent: str, needed: tuple[str, ...]) -> StoredVersions | None:
        """The store of `table`, or None (with a warning) if Pixeltable's layout is not the expected one."""
        try:
            from pixeltable.env import Env

            version = table._tbl_version.get()
            store = version.store_tbl
            [rowid] = store.rowid_columns()
            stored = version.cols_by_name.items()
            columns = {name: column.sa_col for name, column in stored if column.sa_col is not None}
            if "v_max" not in store.sa_tbl.c or "v_min" not in store.sa_tbl.c or not set(needed) <= set(columns):
                raise LookupError("a column has no storage")
            return cls(Env.get().engine, store.sa_tbl, rowid, columns)
        except Exception as error:
            logger.warning(
                "kept versions of %s's tables are not cleaned (%s): Pixeltable may still hold them", agent, error
            )
            return None

    @property
    def _kept(self) -> Any:
        return self.table.c.v_max != max_version()

    def theirs(self, user: str) -> Any:
        return (self.columns["user"] == user) & (self.columns["role"] == "user")

    def kept(self, condition: Any, *names: str) -> Iterator[dict[str, Any]]:
        selected = [self.columns[name].label(name) for name in names]
        with self.engine.connect() as connection:
            yield from (
                dict(row) for row in connection.execute(sa.select(*selected).where(self._kept, condition)).mappings()
            )

    def delete_kept(self, condition: Any, dry_run: bool) -> int:
        """Remove the kept versions matching `condition`; how many there were."""
        if dry_run:
            with self.engine.connect() as connection:
                counted = sa.select(sa.func.count()).select_from(self.table).where(self._kept, condition)
                return int(connection.execute(counted).scalar() or 0)
        with self.engine.begin() as connection:
            return int(connection.execute(sa.delete(self.table).where(self._kept, condition)).rowcount)

    def rewrite_kept(self, changes: dict[str, Any], dry_run: bool) -> int:
        """Apply `changes` (column name: function of its value) to the kept versions; how many changed."""
        present = {name: change for name, change in changes.items() if name in self.columns}
        if not present:
            return 0
        v_min = self.table.c.v_min
        stored = [self.columns[name].label(name) for name in present]
        anything = sa.or_(*(self.columns[name].is_not(None) for name in present))
        query = sa.select(self.rowid.label("rowid"), v_min.label("v_min"), *stored).where(self._kept, anything)
        updates = []
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                new = {name: change(row[name]) for name, change in present.items()}
                if any(new[name] != row[name] for name in present):
                    updates.append((row["rowid"], row["v_min"], new))
        if updates and not dry_run:
            with self.engine.begin() as connection:
                for rowid, version, new in updates:
                    values = {self.columns[name]: value for name, value in new.items()}
                    where = (self.rowid == rowid) & (v_min == version) & self._kept
                    connection.execute(sa.update(self.table).where(where).values(values))
        return len(updates)


def max_version() -> int:
    """The `v_max` of a live row (Pixeltable's "not deleted or replaced yet")."""
    from pixeltable.metadata import schema

    return int(schema.Table.MAX_VERSION)


def purge_kept_versions(table: pxt.Table, owner: str, column: str, values: Collection[str]) -> int:
    """Remove the kept (no longer live) versions of `table`'s rows whose `column` is one of `values`,
    after those rows were deleted; how many. `owner` names the agent in a warning."""
    if not values:
        return 0
    store = StoredVersions.of(table, owner, (column,))
    if store is None:
        return 0
    return store.delete_kept(store.columns[column].in_(sorted(values)), dry_run=False)


def purge_all_kept_versions(table: pxt.Table, owner: str) -> int:
    """Remove every kept version of `table`'s rows: for a table whose rows are only ever deleted,
    never updated (a view of document chunks), these are exactly the rows deleted so far."""
    store = StoredVersions.of(table, owner, ())
    if store is None:
        return 0
    return store.delete_kept(sa.true(), dry_run=False)
