"""A plain SQLAlchemy engine on Pixeltable's database, for the bot's own bookkeeping tables.

The inbox is written before every acknowledgement and read by every process; through Pixeltable each
write is a new table version under a table lock (~20 ms, and a 0.1-0.5 s sleep on a collision). As a
plain table in the same database a write is one row-locked statement (~1 ms), duplicates are dropped
by `ON CONFLICT`, and processes sharing the database never collide on a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
Parameters = Mapping[str, Any] | list[dict[str, Any]] | None  # one set of parameters, or one per row

STATEMENT_TIMEOUT_MS = 15_000  # no statement may hang a request thread for longer


def bookkeeping_engine(pool_size: int = 10) -> sa.Engine:
    """An engine on the database Pixeltable uses (embedded or `PIXELTABLE_DB_CONNECT_STR`)."""
    from pixeltable.env import Env

    return sa.create_engine(
        Env.get().db_url,
        pool_size=pool_size,
        max_overflow=2 * pool_size,
        pool_pre_ping=True,
        connect_args={"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"},
    )


def single_statement_engine(url: sa.URL, pool_size: int, connect_timeout: int | None = None) -> sa.Engine:
    """An engine for writes of one statement each (storing a request before its ack, closing it).

    Each write is one round trip: autocommit (no BEGIN and COMMIT of their own) and no ping before
    a pooled connection is used. Under load a round trip costs a wait for the GIL, so the ack of a
    request took 21 ms median this way against 8.5 ms. A connection that died meanwhile (a database
    restart) fails its statement, which `run_once_more_if_disconnected` then runs again.
    """
    connect_args: dict[str, Any] = {"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}
    if connect_timeout is not None:
        connect_args["connect_timeout"] = connect_timeout
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, isolation_level="AUTOCOMMIT", connect_args=connect_args
    )


def run_once_more_if_disconnected(engine: sa.Engine, statement: sa.Executable) -> Any:
    """Execute `statement` and return its first column of its first row (None if it returns none);
    again, once, on a new connection if the pooled one had been disconnected (SQLAlchemy then discards
    the whole pool, so the second try gets a fresh connection). The result is read while the
    connection is still open."""
    return _once_more_if_disconnected(lambda: _scalar(engine, statement))


def first_column_once_more_if_disconnected(
    engine: sa.Engine, statement: sa.Executable | str, rows: Parameters = None
) -> list[Any]:
    """`run_once_more_if_disconnected`, returning the first column of every row returned; with `rows`,
    the statement's parameters (a list: it runs for each, batched by SQLAlchemy into one statement
    where it can). A `str` statement goes to the driver as it is (psycopg's `%(name)s` parameters)."""
    return _once_more_if_disconnected(lambda: _first_column(engine, statement, rows))


def _once_more_if_disconnected(run: Callable[[], T]) -> T:
    try:
        return run()
    except sa.exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
    return run()


def _first_column(engine: sa.Engine, statement: sa.Executable | str, rows: Parameters) -> list[Any]:
    with engine.connect() as connection:
        if isinstance(statement, str):
            return list(connection.exec_driver_sql(statement, rows).scalars())
        return list(connection.execute(statement, rows).scalars())


def _scalar(engine: sa.Engine, statement: sa.Executable) -> Any:
    with engine.connect() as connection:
        result = connection.execute(statement)
        return result.scalar() if result.returns_rows else None


def create_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create the tables if missing; two processes starting at once may race, and one loses harmlessly."""
    try:
        metadata.create_all(engine, checkfirst=True)
    except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
        metadata.create_all(engine, checkfirst=True)
