"""Listening: a channel that opted in has every human message remembered, without answering it.

Two parts, one capability:
- `ListeningChannels`: which channels listen (`/pixelbot listen on|off|status`), a plain table beside
  the inbox so that every process sees the same switch; read through a cache refreshed every few
  seconds, so that checking it costs nothing on the acknowledgement path.
- `ContextIntake`: what to do with a listened message, an edit or a deletion once the inbox has it
  (stored before the ack, like a request, and deduplicated by event ID). It runs in the channel's
  queue, in order with the channel's requests: a listened message joins the conversation's recent
  turns at once (the next answer sees it) and is stored in batches, one Pixeltable insert for all the
  messages of a channel that arrived meanwhile; edits and deletions follow in the channel's storage
  order, so they apply to what was stored before them. Recall indexes what is stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agent import Agent
from agent.agent import ChannelMessage
from bot.channels import ChannelAgents, ChannelKey
from bot.database import create_tables
from bot.files import FileIntake
from bot.inbox import Inbox, InboxItem, RequestKind, Status
from bot.log_format import in_thread
from bot.queues import ChannelQueues
from bot.replies import LISTEN_ALREADY, LISTEN_ANNOUNCE_OFF, LISTEN_ANNOUNCE_ON, LISTEN_FAILED, LISTEN_NOT_IN_CHANNEL

logger = logging.getLogger(__name__)

T = TypeVar("T")
CACHE_SECONDS = 5.0  # how stale another process's switch may be seen


@dataclass(frozen=True)
class ListeningState:
    on: bool
    changed_by: str
    changed_at: datetime


class ListeningChannels:
    """The listening switch of every channel, in `<namespace>_listening`."""

    def __init__(self, engine: sa.Engine, namespace: str) -> None:
        self.engine = engine
        metadata = sa.MetaData()
        self.table = sa.Table(
            f"{namespace}_listening",
            metadata,
            sa.Column("team_id", sa.Text, primary_key=True),
            sa.Column("channel_id", sa.Text, primary_key=True),
            sa.Column("listening", sa.Boolean, nullable=False),
            sa.Column("changed_by", sa.Text, nullable=False),
            sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        )
        create_tables(engine, metadata)
        self._on: frozenset[ChannelKey] = frozenset()
        self._read_at = 0.0
        self._lock = threading.Lock()

    def is_on(self, key: ChannelKey) -> bool:
        """Whether `key` listens, as of at most `CACHE_SECONDS` ago (this process's switches at once)."""
        if time.monotonic() - self._read_at > CACHE_SECONDS:
            self._refresh()
        return key in self._on

    def state(self, key: ChannelKey) -> ListeningState | None:
        table = self.table
        query = sa.select(table).where((table.c.team_id == key.team_id) & (table.c.channel_id == key.channel_id))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return ListeningState(row["listening"], row["changed_by"], row["changed_at"]) if row else None

    def switch(self, key: ChannelKey, on: bool, user: str) -> bool:
        """Turn listening on or off; False if it already was."""
        current = self.state(key)
        if current is not None and current.on == on:
            return False
        values = {"listening": on, "changed_by": user, "changed_at": datetime.now(UTC)}
        statement = (
            sa.dialects.postgresql.insert(self.table)
            .values(team_id=key.team_id, channel_id=key.channel_id, **values)
            .on_conflict_do_update(index_elements=["team_id", "channel_id"], set_=values)
        )
        with self.engine.begin() as connection:
            connection.execute(statement)
        self._refresh()
        return True

    def switch_announced(self, client: WebClient, key: ChannelKey, on: bool, user: str) -> str | None:
        """Tell the channel, then switch: a channel the bot can't post in is never listened to
        unannounced. None if switched; else why not, for the user (already so, not in the channel…)."""
        state = self.state(key)
        if (state is not None and state.on) == on:
            return LISTEN_ALREADY.format(state="on" if on else "off")
        announcement = (LISTEN_ANNOUNCE_ON if on else LISTEN_ANNOUNCE_OFF).format(user=user)
        try:
            client.chat_postMessage(channel=key.channel_id, text=announcement)
        except SlackApiError as error:
            code = error.response.get("error")
            logger.warning("cannot announce listening in %s: %s", key.channel_id, code)
            return LISTEN_NOT_IN_CHANNEL if code in ("not_in_channel", "channel_not_found") else LISTEN_FAILED
        self.switch(key, on, user)
        logger.info("listening %s in %s by %s", "on" if on else "off", key.channel_id, user)
        return None

    def _refresh(self) -> None:
        table = self.table
        query = sa.select(table.c.team_id, table.c.channel_id).where(table.c.listening.is_(True))
        try:
            with self.engine.connect() as connection:
                on = frozenset(ChannelKey(team, channel) for team, channel in connection.execute(query))
        except sa.exc.SQLAlchemyError:
            logger.warning("cannot read which channels listen; keeping what was known")
            return
        with self._lock:
            self._on, self._read_at = on, time.monotonic()


class ContextIntake:
    """Takes listened messages, edits and deletions from the inbox into the channel's agent."""

    def __init__(
        self,
        agents: ChannelAgents,
        storage_queues: ChannelQueues,
        inbox: Inbox,
        storage: Executor,
        io: Executor,
        files: FileIntake | None = None,
    ) -> None:
        self.files = files  # a listened message's files are kept as the channel's knowledge
        self.agents = agents
        self.storage_queues = storage_queues
        self.inbox = inbox
        self._storage_pool = storage
        self._io_pool = io
        self._buffers: dict[ChannelKey, list[InboxItem]] = {}

    async def take_in(self, item: InboxItem) -> None:
        """Apply `item` to its channel's agent (in the channel's queue: in order with its requests)."""
        agent = self.agents.cached(item.channel)
        if agent is None:  # opening an agent reads the catalog
            agent = await self._storage(partial(self.agents.get, item.channel))
        if item.kind is RequestKind.LISTENED:
            agent.note(_message(item))
            self._buffer(item, agent)
            if item.files and self.files is not None:
                self.files.index_later(agent, item)  # and closes the item's row once they are kept
            return
        edited = item.kind is RequestKind.EDITED
        change = partial(agent.edit, item.ts, item.text) if edited else partial(agent.erase, item.ts)
        self.storage_queues.submit(item.channel, partial(self._change, item, change))

    def _buffer(self, item: InboxItem, agent: Agent) -> None:
        """Add `item` to its channel's batch; the first one of a batch queues the store of them all."""
        batch = self._buffers.setdefault(item.channel, [])
        batch.append(item)
        if len(batch) == 1:
            self.storage_queues.submit(item.channel, partial(self._store_batch, item.channel, agent))

    async def _store_batch(self, channel: ChannelKey, agent: Agent) -> None:
        items = self._buffers.pop(channel, [])
        status = Status.ANSWERED
        try:
            await self._storage(partial(agent.absorb, [_message(item) for item in items]))
        except Exception:
            logger.exception("could not store %d listened message(s) of %s", len(items), channel.channel_id)
            agent.forget_recent_all()
            status = Status.FAILED
        with_files = self.files is not None
        await self._close([item.request_id for item in items if not (with_files and item.files)], status)

    async def _change(self, item: InboxItem, change: Callable[[], bool]) -> None:
        status = Status.ANSWERED
        try:
            found = await self._storage(change)
            logger.info(
                "%s message %s in %s: %s",
                item.kind.value,
                item.ts,
                item.channel_id,
                "applied" if found else "not in memory",
            )
        except Exception:
            logger.exception("could not apply the %s message %s in %s", item.kind.value, item.ts, item.channel_id)
            status = Status.FAILED
        await self._close([item.request_id], status)

    async def _close(self, request_ids: list[str], status: Status) -> None:
        try:
            await self._io(partial(self.inbox.close_all, request_ids, status))
        except Exception:
            # left open, they are taken over once this process stops, and stored once: `absorb` skips
            # what memory holds
            logger.exception(
                "could not close %d listened message(s); they will be taken in again after this process stops",
                len(request_ids),
            )

    async def _storage(self, function: Callable[[], T]) -> T:
        return await in_thread(self._storage_pool, function)

    async def _io(self, function: Callable[[], T]) -> T:
        return await in_thread(self._io_pool, function)


def _message(item: InboxItem) -> ChannelMessage:
    at = datetime.fromtimestamp(float(item.ts), UTC) if item.ts else item.received_at
    return ChannelMessage(item.ts, item.text, item.user, at, item.thread_ts)
