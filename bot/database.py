"""A plain SQLAlchemy engine on Pixeltable's database, for the bot's own bookkeeping tables.

The inbox is written before every acknowledgement and read by every process; through Pixeltable each
write is a new table version under a table lock (~20 ms, and a 0.1-0.5 s sleep on a collision). As a
plain table in the same database a write is one row-locked statement (~1 ms), duplicates are dropped
by `ON CONFLICT`, and processes sharing the database never collide on a lock.
"""

from __future__ import annotations

import sqlalchemy as sa

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
