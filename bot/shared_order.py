"""Per-channel order across processes: a channel's requests are answered by one process at a time,
in the order they were stored, whichever process received them.

With several processes on one PostgreSQL, each stores the requests it receives in the shared inbox,
but a channel is answered only by the process holding its lease (a row in `<namespace>_channel_leases`).
The holder takes the channel's open rows oldest first (the inbox's arrival sequence) and answers each
request before taking the next, so the next answer reads the previous one from storage; what is not
answered (listened messages, edits, deletions, votes) it takes in runs, up to the next request. When
the channel has nothing left, the holder lets the lease go and looks once more: a process that
received a request while the lease was held saw the lease taken and left the request to the holder,
and either that request is seen by this last look, or its receiver got the lease after the release.

A process that dies loses its leases at the next upkeep round of any other process (every
`HEARTBEAT_EVERY`, about 10 s; its requests are taken over at the same moment), and channels with
requests but no lease are then answered by whoever takes their lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bot.channels import ChannelKey
from bot.database import create_tables, run_once_more_if_disconnected
from bot.inbox import Inbox, InboxItem, Status
from bot.log_format import in_thread
from bot.queues import ChannelQueues

logger = logging.getLogger(__name__)

T = TypeVar("T")
RUN_LIMIT = 64  # most listened messages (or edits, deletions…) a turn takes at once; a request is taken alone
Handle = Callable[[InboxItem, bool], Awaitable[None]]
"""Answer (or take in) one inbox item; True when an earlier try took it before (a resumed one)."""


class ChannelLeases:
    """Which process answers which channel, in the shared database (beside the inbox, in its namespace)."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._owner = inbox.worker.owner
        metadata = sa.MetaData()
        self.table = sa.Table(
            f"{inbox.namespace}_channel_leases",
            metadata,
            sa.Column("team_id", sa.Text, primary_key=True),
            sa.Column("channel_id", sa.Text, primary_key=True),
            sa.Column("owner", sa.Text, nullable=False, index=True),
            sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        )
        create_tables(inbox.engine, metadata)

    def acquire(self, key: ChannelKey) -> bool:
        """Take the channel's lease, or keep it; False if another live process holds it."""
        table = self.table
        insert = postgresql.insert(table).values(
            team_id=key.team_id, channel_id=key.channel_id, owner=self._owner, since=datetime.now(UTC)
        )
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.team_id, table.c.channel_id],
            set_={"owner": insert.excluded.owner},
            where=table.c.owner == insert.excluded.owner,
        ).returning(table.c.owner)
        return run_once_more_if_disconnected(self._inbox.writes, statement) is not None

    def release(self, key: ChannelKey) -> None:
        table = self.table
        mine = (
            (table.c.team_id == key.team_id) & (table.c.channel_id == key.channel_id) & (table.c.owner == self._owner)
        )
        run_once_more_if_disconnected(self._inbox.writes, table.delete().where(mine))

    def free_dead(self) -> int:
        """Drop the leases of workers presumed dead (`Inbox.live_owners`), so others take the channels,
        once their open requests are taken over (`Inbox.take_over_orphans`). The holders are read
        before the living: a worker that took a lease meanwhile registered first, so it counts as
        living, and its lease stays. A lease outlives its dead holder's requests (checked by the
        deleting statement itself) because the take-over may have found the holder alive a moment
        before: a request it had taken would otherwise stay with it while another process answers the
        channel's next one (it comes first, after the next take-over)."""
        leases, inbox = self.table, self._inbox.table
        with self._inbox.engine.connect() as connection:
            holders = set(connection.execute(sa.select(leases.c.owner).distinct()).scalars())
        dead = holders - self._inbox.live_owners()
        if not dead:
            return 0
        open_rows = (inbox.c.owner == leases.c.owner) & (inbox.c.status == Status.ANSWERING.value)
        with_requests = sa.exists().where(open_rows)
        with self._inbox.engine.begin() as connection:
            freed = connection.execute(leases.delete().where(leases.c.owner.in_(sorted(dead)) & ~with_requests))
            return int(freed.rowcount)

    def waiting(self) -> list[ChannelKey]:
        """Channels with open requests no one has taken, and no lease held by another worker: nobody is
        answering them (this worker's own lease included: a turn that failed on storage left it)."""
        inbox, leases = self._inbox.table, self.table
        home = self._inbox.home
        leased = sa.exists().where(
            (leases.c.team_id == home) & (leases.c.channel_id == inbox.c.channel_id) & (leases.c.owner != self._owner)
        )
        query = (
            sa.select(home, inbox.c.channel_id)
            .where((inbox.c.status == Status.ANSWERING.value) & ~inbox.c.taken & ~leased)
            .distinct()
        )
        with self._inbox.engine.connect() as connection:
            return [ChannelKey(team, channel) for team, channel in connection.execute(query)]


class SharedOrder:
    """Answers the channels this process holds the lease of, each in arrival order (see the module)."""

    def __init__(
        self, leases: ChannelLeases, inbox: Inbox, queues: ChannelQueues, storage_queues: ChannelQueues, io: Executor
    ) -> None:
        self._leases = leases
        self._inbox = inbox
        self._queues = queues
        self._storage_queues = storage_queues
        self._io_pool = io
        self._queued: set[ChannelKey] = set()
        self._lock = threading.Lock()
        self._stopping = False  # at shutdown: finish the turns in progress, take no more requests
        # taken by failed turns and not handled (True: the one that failed), not given back yet
        self._give_back: dict[str, bool] = {}

    def submit(self, key: ChannelKey, handle: Handle) -> None:
        """Answer the channel's waiting requests (if this process gets its lease); safe from any thread.
        A channel already queued here is not queued twice: its turn looks at every waiting request."""
        with self._lock:
            if key in self._queued or self._stopping:
                return
            self._queued.add(key)
        self._queues.submit(key, partial(self._turn, key, handle))

    def stop(self) -> None:
        """Take no more requests (shutdown): queued turns let their leases go, so others answer."""
        self._stopping = True

    def upkeep(self, handle: Handle) -> None:
        """Free dead processes' leases, give back what failed turns could not, and answer the channels
        nobody answers (the caretaker's round)."""
        self._return_taken()
        if freed := self._leases.free_dead():
            logger.info("took back %d channel lease(s) of stopped workers", freed)
        for key in self._leases.waiting():
            self.submit(key, handle)

    async def _turn(self, key: ChannelKey, handle: Handle) -> None:
        """What the channel has next (one request, or a run of what is not one), if this process holds
        (or gets) its lease; then another turn, behind the other channels waiting for a free slot,
        while the channel has more. A channel with nothing left, or a process stopping, lets the lease
        go once what was taken in is stored, and a channel then looks once more (see the module)."""
        with self._lock:
            self._queued.discard(key)  # a request stored from now on queues another turn
        if self._stopping:  # a turn queued before the stop: what the last one took in is stored first
            await self._storage_queues.idle(key)
            await self._io(partial(self._leases.release, key))
            return
        if not await self._io(partial(self._leases.acquire, key)):
            return  # another process answers the channel, this request included
        try:
            taken = await self._io(partial(self._inbox.take_run, key, RUN_LIMIT))
            if taken:
                await self._handle_all(taken, handle)
                if not self._stopping:
                    self.submit(key, handle)  # the lease is kept meanwhile
                    return
            await self._storage_queues.idle(key)  # what was taken in is stored before another process goes on
        except BaseException:  # the upkeep round finds the channel waiting (and gives back what is left)
            await self._storage_queues.idle(key)
            if not self._give_back:  # else kept: nothing after them may be taken before they are back
                await self._io(partial(self._leases.release, key))
            raise
        await self._io(partial(self._leases.release, key))
        if not self._stopping and await self._io(partial(self._inbox.has_waiting, key)):
            self.submit(key, handle)

    async def _handle_all(self, taken: list[tuple[InboxItem, bool]], handle: Handle) -> None:
        """Handle what one turn took, in order. If one fails, it and those after it are given back,
        to be taken again by whoever holds the lease next (one that keeps failing is given up on:
        `Inbox.take_run`); if even that fails, the next upkeep round tries again."""
        for failed_at, (item, resumed) in enumerate(taken):
            try:
                await handle(item, resumed)
            except BaseException:
                with self._lock:
                    self._give_back.update((later.request_id, later is item) for later, _ in taken[failed_at:])
                await self._io(self._return_taken)
                raise

    def _return_taken(self) -> None:
        """Give back what failed turns took and did not handle (`_handle_all`); what storage refuses
        is kept for the next upkeep round."""
        with self._lock:
            ids, self._give_back = self._give_back, {}
        if not ids:
            return
        try:
            self._inbox.give_back(ids, failed=[request_id for request_id, failed in ids.items() if failed])
        except Exception:
            logger.exception("could not give back %d taken request(s); retrying later", len(ids))
            with self._lock:
                self._give_back |= ids

    async def _io(self, call: Callable[[], T]) -> T:
        return await in_thread(self._io_pool, call)
