"""The arrival log: Slack's messages and `/tool` commands as the receiving process stored them, before
their acks.

With `PIXELBOT_ACK_PROCESS=true` a process of its own takes Slack's requests (`bot.receiver`). A message
(or `/tool`) is all it needs to understand: it stores the request here as the edge admitted it, one statement
for all that arrive together, and acknowledges it. The bot's process then reads the log in arrival
order (`bot.arrival_reader`), gives each event to Bolt as if it had just come, so it is stored in the
inbox (deduplicated there) or dropped as chatter like any other, and removes it from the log. A row
is removed only once that worked, so an event is never lost between the two processes, and never
answered twice (the inbox's primary key).

Each row names its owner, the bot process (`bot.inbox.Worker`) whose receiver stored it; only the owner
reads it, and the rows of an owner that died are adopted by a live one. This module imports neither
Bolt nor Pixeltable: the receiving process runs without them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bot.database import create_tables, first_column_once_more_if_disconnected, run_once_more_if_disconnected


@dataclass(frozen=True)
class Arrival:
    """One event as the edge admitted it, with the headers it came with (Bolt reads a retry's)."""

    request_id: str  # Slack's event ID (a command's: "cmd:" and its trigger ID), for log lines
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    seq: int = 0  # its place in the log, once stored
    tries: int = 0  # how often the bot's process tried to take it in and failed
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when it was stored

    @property
    def channel(self) -> str:
        """The channel it was said in (an event's, or a command's; "" if none): the unit of order."""
        return str(self.payload.get("event", {}).get("channel") or self.payload.get("channel_id") or "")


def insert_statement(namespace: str) -> str:
    """The statement storing a batch (`columns`) in its order, for the driver (psycopg's `%(name)s`
    parameters): one array per column, as `bot.inbox._insert_of_arrays` has it."""
    return (
        f'INSERT INTO "{namespace}_arrivals" (request_id, owner, payload, headers)'
        " SELECT request_id, %(owner)s, payload, headers"
        " FROM unnest(%(request_id)s::text[], %(payload)s::text[], %(headers)s::text[])"
        " WITH ORDINALITY AS arrived(request_id, payload, headers, position) ORDER BY position"
        " RETURNING request_id"
    )


def columns(owner: str, arrivals: Sequence[Arrival]) -> dict[str, Any]:
    """The parameters of `ArrivalLog.insert` for a batch: one array per column."""
    return {
        "owner": owner,
        "request_id": [arrival.request_id for arrival in arrivals],
        "payload": [json.dumps(arrival.payload) for arrival in arrivals],
        "headers": [json.dumps(arrival.headers) for arrival in arrivals],
    }


def _table(namespace: str) -> tuple[sa.MetaData, sa.Table]:
    metadata = sa.MetaData()
    table = sa.Table(
        f"{namespace}_arrivals",
        metadata,
        sa.Column("seq", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Index(f"{namespace}_arrivals_owner", "owner", "seq"),
    )
    return metadata, table


class ArrivalLog:
    """The log's table, for the receiving process (`store`) and the bot's process (the rest)."""

    def __init__(self, engine: sa.Engine, namespace: str = "pixelbot", create: bool = False) -> None:
        """`engine`: autocommit, one statement a write (`bot.database.single_statement_engine`).
        `create`: make the table if missing (the bot's process does, before its receiver starts)."""
        self.engine = engine
        metadata, self.table = _table(namespace)
        if create:
            create_tables(engine, metadata)
        self._insert = insert_statement(namespace)

    def store(self, owner: str, arrivals: Sequence[Arrival]) -> set[str]:
        """Store events for `owner` in one statement, in the order given; the IDs stored (all of them)."""
        return set(first_column_once_more_if_disconnected(self.engine, self._insert, columns(owner, arrivals)))

    def oldest(self, owner: str, limit: int, after: int = 0) -> list[Arrival]:
        """`owner`'s oldest events (past `seq` `after`), in arrival order."""
        table = self.table
        query = (
            sa.select(table).where((table.c.owner == owner) & (table.c.seq > after)).order_by(table.c.seq).limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            Arrival(
                row["request_id"],
                json.loads(row["payload"]),
                json.loads(row["headers"]),
                row["seq"],
                row["tries"],
                row["received_at"],
            )
            for row in rows
        ]

    def count(self) -> int:
        """Rows in the log, whoever owns them: acknowledged, not yet in the inbox."""
        return int(run_once_more_if_disconnected(self.engine, sa.select(sa.func.count()).select_from(self.table)))

    def oldest_age(self) -> float:
        """Seconds since the oldest row of the log was stored (0 if none), whoever owns it."""
        query = sa.select(sa.func.min(self.table.c.received_at))
        oldest = run_once_more_if_disconnected(self.engine, query)
        return (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0

    def remove(self, arrivals: Collection[Arrival]) -> None:
        """Taken in (or given up): gone from the log."""
        if arrivals:
            seqs = sorted(arrival.seq for arrival in arrivals)
            run_once_more_if_disconnected(self.engine, self.table.delete().where(self.table.c.seq.in_(seqs)))

    def failed(self, arrivals: Collection[Arrival]) -> None:
        """Count a failed try of each, so that one that always fails is given up in the end."""
        if arrivals:
            table, seqs = self.table, sorted(arrival.seq for arrival in arrivals)
            statement = table.update().where(table.c.seq.in_(seqs)).values(tries=table.c.tries + 1)
            run_once_more_if_disconnected(self.engine, statement)

    def adopt(self, owner: str, live: Collection[str]) -> int:
        """Make the rows of owners not in `live` (processes that died) `owner`'s; how many."""
        table = self.table
        statement = table.update().where(table.c.owner.not_in(sorted({*live, owner}))).values(owner=owner)
        with self.engine.connect() as connection:
            return int(connection.execute(statement).rowcount)
