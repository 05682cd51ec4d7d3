"""The durable inbox: every request is stored before Slack gets its acknowledgement.

A row is written (primary key: Slack's event ID, or the slash command's trigger ID) before the bot
acknowledges the request, already claimed by the process that received it. A repeated delivery hits
the primary key and is dropped (`ON CONFLICT DO NOTHING`), in this process or any other sharing the
database. When the request is answered the row is closed. A process that starts, and every process
periodically, takes over the open rows of processes that died (same host: the PID is gone; any host:
no heartbeat for a while), with a conditional update so that exactly one process takes each.

The tables are plain PostgreSQL tables beside Pixeltable's (see `bot.database`), named after the
configured namespace so that several bots (or tests) can share one database without sharing requests.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from agent import StorageError
from agent.errors import StorageTimeoutError
from bot.channels import ChannelKey
from bot.database import (
    create_tables,
    first_column_once_more_if_disconnected,
    run_once_more_if_disconnected,
    single_statement_engine,
)
from bot.group_commit import GroupWriter

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=10)
PRESUMED_DEAD_AFTER = timedelta(seconds=45)
FORGET_WORKERS_AFTER = timedelta(days=1)
RECEIVE_TIMEOUT = timedelta(seconds=2)  # Slack wants the ack within 3 s
GIVE_UP_AFTER = 5  # failed tries of a listened message (edit, deletion…) before it is closed as failed
GIVE_UP_AGE = timedelta(minutes=10)  # ... if it was received that long ago


class RequestKind(StrEnum):
    MENTION = "mention"  # @pixelbot in a channel: answered in the mention's thread
    FOLLOWUP = "followup"  # a reply, without a mention, in a channel thread the bot answered in
    DIRECT = "direct"  # a message in a DM with the bot: answered in the DM
    TOOL = "tool"  # /tool: answered through the command's response_url
    LISTENED = "listened"  # a message of a listening channel: stored as context, not answered
    EDITED = "edited"  # a message edited in Slack: `text` is its new text, `ts` the message's
    DELETED = "deleted"  # a message deleted in Slack: `ts` is the message's
    FEEDBACK = "feedback"  # a click on an answer's 👍/👎: `text` the rating, `ts` the answer's request ID
    FILE_DELETED = "file_deleted"  # a file deleted in Slack: `text` is its ID (`channel_id` FILES_CHANNEL: any)

    @property
    def is_request(self) -> bool:
        """Whether the bot answers it (else it only changes what the channel's agent remembers)."""
        return self in (RequestKind.MENTION, RequestKind.FOLLOWUP, RequestKind.DIRECT, RequestKind.TOOL)


_REQUEST_KINDS = [kind.value for kind in RequestKind if kind.is_request]


class Status(StrEnum):
    ANSWERING = "answering"
    ANSWERED = "answered"
    FAILED = "failed"  # the user was told it failed, or it could not be answered at all
    UNDELIVERABLE = "undeliverable"  # Slack refused the answer (e.g. the bot left the channel)


@dataclass(frozen=True)
class InboxItem:
    """One request from Slack, as stored: everything needed to answer it after a restart."""

    request_id: str
    kind: RequestKind
    team_id: str
    channel_id: str
    user: str
    text: str
    ts: str = ""
    thread_ts: str = ""
    response_url: str = ""
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reply_ts: str = ""  # the answer's message, once a stream for it started (a restart replaces it)
    files: tuple[dict[str, Any], ...] = ()  # the message's files, as the edge admitted them
    home_team_id: str = ""  # the workspace the channel's memory lives under, if not `team_id` (`bot.channel_homes`)

    @property
    def channel(self) -> ChannelKey:
        """The channel's agent: under its home workspace, whichever workspace this came through."""
        return ChannelKey(self.home_team_id or self.team_id, self.channel_id)

    @property
    def memory_request_id(self) -> str:
        """The ID of the turn in memory: a message's ts, so that a thread can find its first message."""
        return self.ts or self.request_id

    @property
    def conversation(self) -> str:
        """The memory conversation: the thread if inside one, else the channel's top level."""
        return self.thread_ts

    @property
    def reply_thread(self) -> str | None:
        """Where the answer goes: a mention's thread (its own ts at top level); DMs answer in place."""
        if self.kind in (RequestKind.MENTION, RequestKind.FOLLOWUP):
            return self.thread_ts or self.ts
        return self.thread_ts or None

    @property
    def stream_thread(self) -> str:
        """Where a streamed answer goes: `reply_thread`, else the message's own thread (a top-level
        DM's), since Slack streams only into a thread."""
        return self.reply_thread or self.ts


@dataclass(frozen=True)
class Worker:
    """This process, as other processes see it."""

    owner: str
    host: str
    pid: int

    @classmethod
    def current(cls) -> Worker:
        return cls(owner=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())


def _tables(namespace: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    metadata = sa.MetaData()
    inbox = sa.Table(
        f"{namespace}_inbox",
        metadata,
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("team_id", sa.Text, nullable=False),
        sa.Column("channel_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("ts", sa.Text, nullable=False),
        sa.Column("thread_ts", sa.Text, nullable=False),
        sa.Column("response_url", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text, nullable=False, index=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("delivery_started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("reply_ts", sa.Text, nullable=False, server_default=""),
        sa.Column("files", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("home_team_id", sa.Text, nullable=False, server_default=""),
        # arrival order across processes, and whether a channel's lease holder took the row (`bot.shared_order`)
        sa.Column("seq", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("taken", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Index(f"{namespace}_inbox_thread", "channel_id", "thread_ts"),
        sa.Index(f"{namespace}_inbox_message", "channel_id", "ts"),
        sa.Index(  # the open, untaken rows of a channel in arrival order: small, whatever the history
            f"{namespace}_inbox_arrival",
            "channel_id",
            "seq",
            postgresql_where=sa.text("status = 'answering' AND NOT taken"),
        ),
    )
    workers = sa.Table(
        f"{namespace}_workers",
        metadata,
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    return metadata, inbox, workers


LateArrival = Callable[["InboxItem", bool], None]

_RECEIVED: dict[str, Callable[[InboxItem], Any]] = {
    "request_id": attrgetter("request_id"),
    "kind": lambda item: item.kind.value,
    "team_id": attrgetter("team_id"),
    "channel_id": attrgetter("channel_id"),
    "user_id": attrgetter("user"),
    "text": attrgetter("text"),
    "ts": attrgetter("ts"),
    "thread_ts": attrgetter("thread_ts"),
    "response_url": attrgetter("response_url"),
    "received_at": attrgetter("received_at"),
    "reply_ts": attrgetter("reply_ts"),
    "files": lambda item: json.dumps(list(item.files)),
    "home_team_id": attrgetter("home_team_id"),
}
"""A received request's columns, each from its item; with `status` and `owner`, what `receive` stores."""
assert set(_RECEIVED) == {"user_id" if name == "user" else name for name in InboxItem.__dataclass_fields__}, (
    "every field of InboxItem is stored"
)


def _insert_of_arrays(table: sa.Table) -> str:
    """`INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING request_id`, for the driver:
    a batch of requests as one array per column. SQLAlchemy's multi-row VALUES took ~0.25 ms of Python
    per row (each row's parameters processed one by one), this ~0.05 ms beyond ~0.5 ms a statement:
    psycopg adapts each list at once. A burst of requests is stored while their acks wait, on the one
    core of Python they all need."""
    names = [*_RECEIVED, "status", "owner"]
    types = {"received_at": "timestamptz", "files": "text"}  # the JSON of `files` is cast by the SELECT
    arrays = ", ".join(f"%({name})s::{types.get(name, 'text')}[]" for name in names)
    picked = ", ".join("files::jsonb" if name == "files" else name for name in names)
    return (  # in the batch's order, so that of two copies of a request the first is the one stored
        f'INSERT INTO "{table.name}" ({", ".join(names)}) SELECT {picked} FROM unnest({arrays})'
        f" WITH ORDINALITY AS received({', '.join(names)}, position) ORDER BY position"
        " ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )


class Inbox:
    """The shared inbox table, seen from one worker process."""

    def __init__(
        self, engine: sa.Engine, namespace: str = "pixelbot", worker: Worker | None = None, writers: int = 8
    ) -> None:
        self.engine = engine
        self.namespace = namespace
        self._writes = single_statement_engine(engine.url, pool_size=writers)
        self.worker = worker or Worker.current()
        metadata, self.table, self.workers = _tables(namespace)
        create_tables(engine, metadata)
        _add_missing_columns(engine, self.table)
        self._insert_statement = _insert_of_arrays(self.table)
        # requests arriving together are stored in one statement, each acknowledged once it is stored
        self._receiving = GroupWriter(self._insert, lambda item: item.request_id, "pixelbot-inbox")
        self.on_late_arrival: LateArrival | None = None
        with engine.begin() as connection:
            connection.execute(self.workers.insert().values(**asdict(self.worker), heartbeat_at=datetime.now(UTC)))

    @property
    def home(self) -> sa.ColumnElement[str]:
        """A row's channel's home workspace (`InboxItem.channel`): rows stored before homes have none."""
        return sa.func.coalesce(sa.func.nullif(self.table.c.home_team_id, ""), self.table.c.team_id)

    @property
    def writes(self) -> sa.Engine:
        """The engine for single-statement writes (autocommit, one round trip each)."""
        return self._writes

    # -- receiving -----------------------------------------------------------------------------------
    def receive(self, item: InboxItem) -> bool:
        """Store a new request, claimed by this worker; False if it was received before (anywhere).

        Raises `StorageError` if storage refused the row: it is not stored. Raises `StorageTimeoutError` if
        storage did not answer within `RECEIVE_TIMEOUT`: the write goes on and may still land, so the
        acknowledgement must not say it failed. When it finishes, `on_late_arrival(item, stored)` is
        called, so that the request is answered after all (or its user told it was lost).
        """
        future = self._receiving.submit(item)
        try:
            return future.result(timeout=RECEIVE_TIMEOUT.total_seconds())
        except FutureTimeout:
            future.add_done_callback(lambda done: self._late(item, done))
            raise StorageTimeoutError("storage did not answer in time; the request may still be stored") from None
        except sa.exc.SQLAlchemyError as error:
            raise StorageError(f"could not store the request: {type(error).__name__}") from error

    def _insert(self, items: Sequence[InboxItem]) -> set[str]:
        """Store new requests in one statement (`GroupWriter`): the IDs of those not stored before."""
        columns = {name: [value(item) for item in items] for name, value in _RECEIVED.items()}
        columns |= {"status": [Status.ANSWERING.value] * len(items), "owner": [self.worker.owner] * len(items)}
        return set(first_column_once_more_if_disconnected(self._writes, self._insert_statement, columns))

    def _late(self, item: InboxItem, done: Future[bool]) -> None:
        stored = done.exception() is None and done.result()
        logger.warning("request %s was %s after its acknowledgement", item.request_id, "stored" if stored else "lost")
        if self.on_late_arrival is not None:
            self.on_late_arrival(item, stored)

    # -- answering -----------------------------------------------------------------------------------
    def start_delivery(self, request_id: str) -> bool:
        """Mark that the answer is about to be sent; False if an earlier try already started sending it.

        For answers Slack can't be asked about afterwards (`/tool`'s response_url), this makes a resumed
        request skip a delivery that may already have happened instead of sending it twice.
        """
        table = self.table
        statement = (
            table.update()
            .where((table.c.request_id == request_id) & table.c.delivery_started_at.is_(None))
            .values(delivery_started_at=datetime.now(UTC))
        )
        return run_once_more_if_disconnected(self._writes, statement.returning(table.c.request_id)) is not None

    def note_reply(self, request_id: str, reply_ts: str) -> None:
        """Record the message the answer is being streamed into, so that a restart completes that one."""
        table = self.table
        statement = table.update().where(table.c.request_id == request_id).values(reply_ts=reply_ts)
        run_once_more_if_disconnected(self._writes, statement)

    def close(self, request_id: str, status: Status) -> None:
        """Record how a request ended, so it is not answered again."""
        table = self.table
        statement = (
            table.update()
            .where(table.c.request_id == request_id)
            .values(status=status.value, finished_at=datetime.now(UTC))
        )
        run_once_more_if_disconnected(self._writes, statement)

    def close_all(self, request_ids: list[str], status: Status) -> None:
        """`close` for many at once (a batch of listened messages)."""
        table = self.table
        statement = (
            table.update()
            .where(table.c.request_id.in_(request_ids))
            .values(status=status.value, finished_at=datetime.now(UTC))
        )
        run_once_more_if_disconnected(self._writes, statement)

    def take_run(self, channel: ChannelKey, limit: int = 1) -> list[tuple[InboxItem, bool]]:
        """The channel's oldest open request no one has taken (arrival order across processes), now
        taken by this worker, with whether an earlier try took it before (a resumed one); nothing if
        none waits. Only the holder of the channel's lease calls it (`bot.shared_order`).

        When the oldest is not a request to answer (a listened message, an edit…), the ones after it
        come too, up to the next request and at most `limit`: a busy listening channel's messages are
        taken in one statement, not one each. A request is always taken alone, and answered before
        anything after it is taken. One that is not a request, failed `GIVE_UP_AFTER` times and was
        received over `GIVE_UP_AGE` ago is closed as failed instead (`_usable`).
        """
        table = self.table
        oldest = (
            sa.select(table.c.request_id, table.c.seq, table.c.kind.in_(_REQUEST_KINDS).label("is_request"))
            .where(self._waiting_in(channel))
            .order_by(table.c.seq)
            .limit(limit)
            .with_for_update()  # a row another worker is taking over is waited for: it may be the oldest
            .cte("oldest")
        )
        bound = sa.select(
            sa.func.min(oldest.c.seq).label("first"),
            sa.func.min(oldest.c.seq).filter(oldest.c.is_request).label("first_request"),
        ).cte("bound")
        in_run = (
            (oldest.c.seq == bound.c.first) | bound.c.first_request.is_(None) | (oldest.c.seq < bound.c.first_request)
        )
        statement = (
            table.update()
            .where((table.c.request_id == oldest.c.request_id) & in_run)
            .values(owner=self.worker.owner, taken=True, tries=table.c.tries + 1)
            .returning(*table.c)
        )
        with self._writes.connect() as connection:
            rows = sorted((dict(row) for row in connection.execute(statement).mappings()), key=lambda row: row["seq"])
        if not rows:
            return []
        try:
            taken = [(item, row["tries"] > 1) for row in rows if (item := self._usable(row)) is not None]
        except BaseException:  # closing one failed: none is left taken by a turn that will not handle it
            self.give_back([row["request_id"] for row in rows])
            raise
        return taken or self.take_run(channel, limit)  # those were closed: the next ones

    def _usable(self, row: dict[str, Any]) -> InboxItem | None:
        """The row's item, unless it was closed: unreadable, or failing for good (a turn that fails
        gives back what it took, so one that always fails must not hold its channel up; the age keeps a
        short storage outage, which fails every try quickly, from closing good ones)."""
        failed_for_good = row["tries"] > GIVE_UP_AFTER and datetime.now(UTC) - row["received_at"] > GIVE_UP_AGE
        if failed_for_good and row["kind"] not in _REQUEST_KINDS:
            logger.error("giving up on %s %s after %d tries", row["kind"], row["request_id"], row["tries"] - 1)
            self.close(row["request_id"], Status.FAILED)
            return None
        return self._item_or_close(row)

    def give_back(self, request_ids: Collection[str], failed: Collection[str] = ()) -> None:
        """Leave taken requests to be taken again (whoever holds their channel's lease next): turns
        that failed on those in `failed` before handling the others. Only those keep the try they were
        taken with; the others were never tried."""
        table = self.table
        mine = table.c.request_id.in_(sorted(request_ids)) & (table.c.owner == self.worker.owner)
        tries = sa.case((table.c.request_id.in_(sorted(failed)), table.c.tries), else_=table.c.tries - 1)
        statement = table.update().where(mine).values(taken=False, tries=tries)
        run_once_more_if_disconnected(self._writes, statement)

    def has_waiting(self, channel: ChannelKey) -> bool:
        """Whether the channel has open requests no one has taken."""
        query = sa.select(self.table.c.request_id).where(self._waiting_in(channel)).limit(1)
        return run_once_more_if_disconnected(self._writes, query) is not None

    def _waiting_in(self, channel: ChannelKey) -> sa.ColumnElement[bool]:
        table = self.table
        return (
            (table.c.channel_id == channel.channel_id)
            & (self.home == channel.team_id)
            & (table.c.status == Status.ANSWERING.value)
            & ~table.c.taken
        )

    def asked_in_thread(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        """Whether someone mentioned the bot in this thread (or started it with a mention): the bot
        answers there, so later replies in it are follow-ups for the bot. Two index lookups."""
        table = self.table
        asked = sa.or_(table.c.ts == thread_ts, table.c.thread_ts == thread_ts)
        kinds = (RequestKind.MENTION.value, RequestKind.FOLLOWUP.value)
        query = (
            sa.select(table.c.request_id)
            .where((table.c.channel_id == channel_id) & (self.home == team_id) & asked)
            .where(table.c.kind.in_(kinds))
            .limit(1)
        )
        return run_once_more_if_disconnected(self._writes, query) is not None

    def purge_before(
        self, cutoff: datetime, channel: ChannelKey | None = None, keep: Collection[ChannelKey] = ()
    ) -> int:
        """Delete the finished requests received before `cutoff` (retention), of one `channel` or of
        every channel but those in `keep`; open ones stay."""
        table = self.table
        where = (table.c.received_at < cutoff) & (table.c.status != Status.ANSWERING.value)
        if channel is not None:
            where &= (self.home == channel.team_id) & (table.c.channel_id == channel.channel_id)
        for key in keep:
            where &= ~((self.home == key.team_id) & (table.c.channel_id == key.channel_id))
        statement = table.delete().where(where)
        with self.engine.begin() as connection:
            return int(connection.execute(statement).rowcount)

    def channels_with_file(self, team_id: str, file_id: str) -> list[ChannelKey]:
        """The channels (their agents' keys) whose messages that came through `team_id`, still in the
        inbox, shared the file `file_id`."""
        table = self.table
        query = (
            sa.select(self.home, table.c.channel_id)
            .where((table.c.team_id == team_id) & table.c.files.contains([{"id": file_id}]))
            .distinct()
        )
        with self.engine.connect() as connection:
            return [ChannelKey(home, channel) for home, channel in connection.execute(query)]

    def status(self, request_id: str) -> Status | None:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(self.table.c.status).where(self.table.c.request_id == request_id)
            ).scalar()
        return Status(value) if value else None

    def open_requests(self) -> tuple[int, float]:
        """How many requests are open, and the age in seconds of the oldest (0 if none)."""
        table = self.table
        query = sa.select(sa.func.count(), sa.func.min(table.c.received_at)).where(
            table.c.status == Status.ANSWERING.value
        )
        with self.engine.connect() as connection:
            count, oldest = connection.execute(query).one()
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        return int(count), age

    # -- workers ---------------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """Tell other workers this one is alive, and forget workers gone for a day."""
        workers, now = self.workers, datetime.now(UTC)
        with self.engine.begin() as connection:
            connection.execute(workers.update().where(workers.c.owner == self.worker.owner).values(heartbeat_at=now))
            connection.execute(workers.delete().where(workers.c.heartbeat_at < now - FORGET_WORKERS_AFTER))

    def take_over_orphans(self) -> list[InboxItem]:
        """Claim the open requests of dead workers, oldest first; each goes to exactly one worker.

        A row that can't be turned back into a request (stored by a buggy or older version) is closed
        as failed with a log line instead of stopping the take-over.
        """
        table = self.table
        with self.engine.begin() as connection:
            owners = set(
                connection.execute(
                    sa.select(table.c.owner).distinct().where(table.c.status == Status.ANSWERING.value)
                ).scalars()
            )
            dead = owners - {self.worker.owner} - self._live_owners(connection)
            if not dead:
                return []
            orphaned = (table.c.status == Status.ANSWERING.value) & table.c.owner.in_(sorted(dead))
            # locked in arrival order first, as `take_run` locks them, so that the two never deadlock
            connection.execute(sa.select(table.c.request_id).where(orphaned).order_by(table.c.seq).with_for_update())
            claimed = connection.execute(
                table.update()
                .where(orphaned)
                # whether its receiver began on it is unknown (alone on its database, a process answers
                # what it receives without taking it): it counts as tried, so an answer is not sent twice
                .values(owner=self.worker.owner, taken=False, tries=sa.func.greatest(table.c.tries, 1))
                .returning(*table.c)
            ).mappings()
            rows = [dict(row) for row in claimed]
            connection.execute(self.workers.delete().where(self.workers.c.owner.in_(sorted(dead))))
        items = [item for item in map(self._item_or_close, rows) if item is not None]
        return sorted(items, key=lambda item: item.received_at)

    def _item_or_close(self, row: dict[str, Any]) -> InboxItem | None:
        try:
            item = _item_from_row(row)
            _ = item.channel  # validates the IDs
        except (ValueError, KeyError, TypeError) as error:
            logger.error("closing unreadable request %s as failed: %s", row.get("request_id"), error)
            self.close(str(row.get("request_id")), Status.FAILED)
            return None
        return item

    def live_owners(self) -> set[str]:
        """The workers presumed alive (this one included)."""
        with self.engine.connect() as connection:
            return self._live_owners(connection) | {self.worker.owner}

    def _live_owners(self, connection: sa.Connection) -> set[str]:
        """Workers with a recent heartbeat, except those on this host whose process is gone."""
        recent = datetime.now(UTC) - PRESUMED_DEAD_AFTER
        rows = connection.execute(sa.select(self.workers).where(self.workers.c.heartbeat_at >= recent)).mappings()
        return {row["owner"] for row in rows if self._may_run(row)}

    def _may_run(self, row: Any) -> bool:
        """False for a worker on this host whose PID is gone or is now ours (containers reuse PID 1)."""
        if row["host"] != self.worker.host:
            return True
        return bool(row["pid"] != self.worker.pid and _pid_running(row["pid"]))

    def shutdown(self) -> None:
        """Finish the writes in progress and leave the workers table."""
        self._receiving.shutdown()
        try:
            with self.engine.begin() as connection:
                connection.execute(self.workers.delete().where(self.workers.c.owner == self.worker.owner))
        except sa.exc.SQLAlchemyError:
            logger.warning("could not leave the workers table; others will notice this worker is gone")
        self._writes.dispose()


ADDED_COLUMNS = {
    "reply_ts": "TEXT NOT NULL DEFAULT ''",
    "files": "JSONB NOT NULL DEFAULT '[]'",
    "seq": "BIGINT GENERATED BY DEFAULT AS IDENTITY",
    "taken": "BOOLEAN NOT NULL DEFAULT false",
    "tries": "INTEGER NOT NULL DEFAULT 0",
    "home_team_id": "TEXT NOT NULL DEFAULT ''",
}


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """Give an inbox made by an older version the columns added since (`ADDED_COLUMNS`); looked up
    first, because even a no-op ALTER TABLE locks the table against the writes of running processes."""
    present = {column["name"] for column in sa.inspect(engine).get_columns(table.name)}
    missing = {name: kind for name, kind in ADDED_COLUMNS.items() if name not in present}
    if not missing:
        return
    with engine.begin() as connection:
        for name, kind in missing.items():
            connection.execute(sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN IF NOT EXISTS {name} {kind}'))
        if "seq" in missing:
            where = "WHERE status = 'answering' AND NOT taken"  # as `_tables` makes it
            connection.execute(
                sa.text(
                    f'CREATE INDEX IF NOT EXISTS "{table.name}_arrival" ON "{table.name}" (channel_id, seq) {where}'
                )
            )


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _item_from_row(row: dict[str, Any]) -> InboxItem:
    fields = {name: row[name] for name in InboxItem.__dataclass_fields__ if name != "user"}
    fields["files"] = tuple(fields.get("files") or ())
    return InboxItem(**{**fields, "user": row["user_id"], "kind": RequestKind(row["kind"])})


class Caretaker:
    """A daemon thread: heartbeats, and taking over orphaned requests from workers that died."""

    def __init__(
        self, inbox: Inbox, on_orphan: Callable[[InboxItem], None], upkeep: Callable[[], None] = lambda: None
    ) -> None:
        self._inbox = inbox
        self._on_orphan = on_orphan
        self._upkeep = upkeep  # more of the round (`SharedOrder.upkeep`: channels nobody answers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixelbot-caretaker", daemon=True)
        self.last_round_ok = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY.total_seconds()):
            try:
                self._inbox.heartbeat()
                for item in self._inbox.take_over_orphans():
                    self._on_orphan(item)
                self._upkeep()
                self.last_round_ok = True
            except Exception:
                self.last_round_ok = False
                logger.exception("inbox upkeep failed; will retry")
