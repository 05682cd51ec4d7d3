"""The durable inbox: every request is stored before Slack gets its acknowledgement.

A row is written (primary key: Slack's event ID, or the slash command's trigger ID) before the bot
acknowledges the request, already claimed by the process that received it. A repeated delivery hits
the primary key and is dropped, in this process or any other sharing the database. When the request
is answered the row is closed. A process that starts, and every process periodically, takes over the
open rows of processes that died (same host: the PID is gone; any host: no heartbeat for a while),
with a conditional update so that exactly one process takes each.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pixeltable as pxt
from pixeltable import exceptions as pxt_errors

from bot.batching import Batcher
from bot.channels import AGENTS_DIR, ChannelKey

logger = logging.getLogger(__name__)

INBOX_TABLE = f"{AGENTS_DIR}_system.inbox"
WORKERS_TABLE = f"{AGENTS_DIR}_system.workers"
HEARTBEAT_EVERY = timedelta(seconds=10)
PRESUMED_DEAD_AFTER = timedelta(seconds=45)
FORGET_WORKERS_AFTER = timedelta(days=1)
RECEIVE_TIMEOUT = timedelta(seconds=10)


class RequestKind(StrEnum):
    MENTION = "mention"  # @pixelbot in a channel: answered in the mention's thread
    DIRECT = "direct"  # a message in a DM with the bot: answered in the DM
    TOOL = "tool"  # /tool: answered through the command's response_url


class Status(StrEnum):
    ANSWERING = "answering"
    ANSWERED = "answered"
    FAILED = "failed"  # the user was told it failed
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

    @property
    def channel(self) -> ChannelKey:
        return ChannelKey(self.team_id, self.channel_id)

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
        if self.kind is RequestKind.MENTION:
            return self.thread_ts or self.ts
        return self.thread_ts or None


@dataclass(frozen=True)
class Worker:
    """This process, as other processes see it."""

    owner: str
    host: str
    pid: int

    @classmethod
    def current(cls) -> Worker:
        return cls(owner=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())


INBOX_SCHEMA: dict[str, Any] = {
    "request_id": pxt.Required[pxt.String],
    "kind": pxt.String,
    "team_id": pxt.String,
    "channel_id": pxt.String,
    "user": pxt.String,
    "text": pxt.String,
    "ts": pxt.String,
    "thread_ts": pxt.String,
    "response_url": pxt.String,
    "received_at": pxt.Timestamp,
    "status": pxt.String,
    "owner": pxt.String,
    "finished_at": pxt.Timestamp | None,
}
WORKERS_SCHEMA: dict[str, Any] = {
    "owner": pxt.Required[pxt.String],
    "host": pxt.String,
    "pid": pxt.Int,
    "heartbeat_at": pxt.Timestamp,
}


class Inbox:
    """The shared inbox table, seen from one worker process."""

    def __init__(self, worker: Worker | None = None) -> None:
        self.worker = worker or Worker.current()
        pxt.create_dir(f"{AGENTS_DIR}_system", if_exists="ignore")
        self.table = pxt.create_table(INBOX_TABLE, INBOX_SCHEMA, primary_key="request_id", if_exists="ignore")
        self.table.add_btree_index("status", if_exists="ignore")
        self.workers = pxt.create_table(WORKERS_TABLE, WORKERS_SCHEMA, primary_key="owner", if_exists="ignore")
        self.workers.insert([{**asdict(self.worker), "heartbeat_at": datetime.now(UTC)}])
        self._writer: Batcher[_Write, bool | None] = Batcher(self._write, "pixelbot-inbox-writer")

    def receive(self, item: InboxItem) -> bool:
        """Store a new request, claimed by this worker; False if it was received before (anywhere).

        Concurrent calls are written together (see `Batcher`); the call returns once its row is stored.
        """
        row = {**asdict(item), "kind": item.kind.value, "status": Status.ANSWERING.value, "owner": self.worker.owner}
        future = self._writer.submit(_Write(row, close=False))
        return bool(future.result(timeout=RECEIVE_TIMEOUT.total_seconds()))

    def close(self, request_id: str, status: Status) -> Future[bool | None]:
        """Record how a request ended, so it is not answered again; written in the background."""
        row = {"request_id": request_id, "status": status.value, "finished_at": datetime.now(UTC)}
        return self._writer.submit(_Write(row, close=True))

    def shutdown(self) -> None:
        """Write what is still queued."""
        self._writer.stop()

    def _write(self, writes: list[_Write]) -> list[bool | None]:
        """One thread writes the table: Pixeltable locks a table per write and sleeps 0.1-0.5 s when it
        finds the lock taken, so two writer threads of one process would mostly wait for each other.
        New requests go first (someone waits for their ack)."""
        inserted = iter(self._insert_new([write.row for write in writes if not write.close]))
        closes = [write.row for write in writes if write.close]
        if closes:
            self.table.batch_update(closes)
        return [None if write.close else next(inserted) for write in writes]

    def _insert_new(self, rows: list[dict[str, Any]]) -> list[bool]:
        """Insert rows in one go; if some were received before, insert one by one to tell which."""
        if not rows:
            return []
        try:
            self.table.insert(rows)
        except pxt_errors.Error as error:
            if not _is_duplicate(error):
                raise
            if len(rows) == 1:
                return [False]
            return [self._insert_new([row])[0] for row in rows]
        return [True] * len(rows)

    def status(self, request_id: str) -> Status | None:
        rows = self.table.where(self.table.request_id == request_id).select(self.table.status).collect()
        return Status(rows[0]["status"]) if len(rows) else None

    def heartbeat(self) -> None:
        """Tell other workers this one is alive, and forget workers gone for a day."""
        workers, now = self.workers, datetime.now(UTC)
        workers.update({"heartbeat_at": now}, where=workers.owner == self.worker.owner)
        workers.delete(where=workers.heartbeat_at < now - FORGET_WORKERS_AFTER)

    def take_over_orphans(self) -> list[InboxItem]:
        """Claim the open requests of dead workers, oldest first; each goes to exactly one worker."""
        table = self.table
        open_rows = list(table.where(table.status == Status.ANSWERING.value).collect())
        dead = {row["owner"] for row in open_rows} - {self.worker.owner} - self._live_owners()
        taken = [
            _item_from_row(row)
            for row in open_rows
            if row["owner"] in dead and self._claim(row["request_id"], row["owner"])
        ]
        if dead:
            self.workers.delete(where=self.workers.owner.isin(sorted(dead)))
        return sorted(taken, key=lambda item: item.received_at)

    def _claim(self, request_id: str, previous_owner: str) -> bool:
        table = self.table
        status = table.update(
            {"owner": self.worker.owner},
            where=(table.request_id == request_id)
            & (table.owner == previous_owner)
            & (table.status == Status.ANSWERING.value),
        )
        return status.num_rows == 1

    def _live_owners(self) -> set[str]:
        """Workers with a recent heartbeat, except those on this host whose process is gone."""
        recent = datetime.now(UTC) - PRESUMED_DEAD_AFTER
        return {row["owner"] for row in self.workers.collect() if row["heartbeat_at"] >= recent and self._may_run(row)}

    def _may_run(self, row: dict[str, Any]) -> bool:
        """False for a worker on this host whose PID is gone or is now ours (containers reuse PID 1)."""
        if row["host"] != self.worker.host:
            return True
        return row["pid"] != self.worker.pid and _pid_running(row["pid"])


@dataclass(frozen=True)
class _Write:
    """A row for the inbox's writer thread: a new request, or the close of one."""

    row: dict[str, Any]
    close: bool


def _is_duplicate(error: Exception) -> bool:
    return "Duplicate primary key" in str(error)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _item_from_row(row: dict[str, Any]) -> InboxItem:
    fields = {name: row[name] for name in InboxItem.__dataclass_fields__}
    return InboxItem(**{**fields, "kind": RequestKind(row["kind"])})


class Caretaker:
    """A daemon thread: heartbeats, and taking over orphaned requests from workers that died."""

    def __init__(self, inbox: Inbox, on_orphan: Any) -> None:
        self._inbox = inbox
        self._on_orphan = on_orphan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixelbot-caretaker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY.total_seconds()):
            try:
                self._inbox.heartbeat()
                for item in self._inbox.take_over_orphans():
                    self._on_orphan(item)
            except Exception:
                logger.exception("inbox upkeep failed; will retry")
