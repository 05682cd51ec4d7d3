"""The channel leases and the arrival-ordered inbox behind per-channel order across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
import sqlalchemy as sa

from bot.channels import ChannelKey
from bot.inbox import Inbox, InboxItem, RequestKind, Status, Worker
from bot.queues import ChannelQueues
from bot.shared_order import ChannelLeases, SharedOrder

CHANNEL = ChannelKey("T0001", "C0001")
OTHER = ChannelKey("T0001", "C0002")


def gone_worker() -> Worker:
    """A worker of this host whose process has exited."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return Worker(owner="gone-worker", host=Worker.current().host, pid=int(finished.stdout))


def request(number: int, channel: ChannelKey = CHANNEL, kind: RequestKind = RequestKind.MENTION) -> InboxItem:
    return InboxItem(f"Ev{number:04d}", kind, channel.team_id, channel.channel_id, "U1", f"q{number}")


def listened(number: int) -> InboxItem:
    return request(number, kind=RequestKind.LISTENED)


def test_a_lease_is_held_by_one_worker_until_it_lets_go(make_inbox: Callable[..., Inbox]) -> None:
    first, second = ChannelLeases(make_inbox()), ChannelLeases(make_inbox())
    assert first.acquire(CHANNEL)
    assert first.acquire(CHANNEL)  # kept
    assert not second.acquire(CHANNEL)
    assert second.acquire(OTHER)
    second.release(CHANNEL)  # not its lease: nothing happens
    assert not second.acquire(CHANNEL)
    first.release(CHANNEL)
    assert second.acquire(CHANNEL)


def test_requests_are_taken_oldest_stored_first_whoever_received_them(make_inbox: Callable[..., Inbox]) -> None:
    receiver, holder = make_inbox(), make_inbox()
    for number, inbox in [(3, receiver), (1, holder), (2, receiver)]:  # stored in this order
        assert inbox.receive(request(number))
    assert holder.receive(request(9, OTHER))
    receiver.note_reply("Ev0003", "1.1")  # an updated row moves to the end of the table's storage
    taken = []
    while (next_one := holder.take_next(CHANNEL)) is not None:
        taken.append((next_one[0].text, next_one[1]))
    assert taken == [("q3", False), ("q1", False), ("q2", False)]
    assert not holder.has_waiting(CHANNEL)
    assert holder.has_waiting(OTHER)


def test_a_dead_workers_leases_and_requests_pass_to_the_living(make_inbox: Callable[..., Inbox]) -> None:
    dead_inbox, living_inbox = make_inbox(gone_worker()), make_inbox()
    dead, living = ChannelLeases(dead_inbox), ChannelLeases(living_inbox)
    for number in (1, 2):
        assert dead_inbox.receive(request(number))
    assert dead.acquire(CHANNEL)
    assert dead_inbox.take_next(CHANNEL) is not None  # q1 was being answered when the worker died
    assert living.waiting() == []  # leased: its holder answers it
    assert not living.acquire(CHANNEL)

    assert [item.text for item in living_inbox.take_over_orphans()] == ["q1", "q2"]
    assert living.free_dead() == 1
    assert living.waiting() == [CHANNEL]
    assert living.acquire(CHANNEL)
    first, second = living_inbox.take_next(CHANNEL), living_inbox.take_next(CHANNEL)
    assert first is not None and second is not None
    assert (first[0].text, first[1]) == ("q1", True)  # resumed: an earlier try may have answered it
    assert (second[0].text, second[1]) == ("q2", False)
    living_inbox.close(first[0].request_id, Status.ANSWERED)
    assert living_inbox.take_next(CHANNEL) is None


def test_requests_of_a_dead_worker_that_answered_them_itself_are_resumed_under_the_shared_order(
    make_inbox: Callable[..., Inbox],
) -> None:
    """A worker alone on its database answers what it stores without `take_next`: whoever takes its
    rows over must treat each as tried, since its answer may have gone out before the crash."""
    alone = make_inbox(gone_worker(), answers_what_it_receives=True)
    assert alone.receive(request(1))
    living_inbox = make_inbox()
    assert [item.text for item in living_inbox.take_over_orphans()] == ["q1"]
    assert ChannelLeases(living_inbox).acquire(CHANNEL)
    taken = living_inbox.take_next(CHANNEL)
    assert taken is not None and (taken[0].text, taken[1]) == ("q1", True)


def test_requests_left_open_by_a_version_without_tries_are_resumed(
    make_inbox: Callable[..., Inbox], bookkeeping: sa.Engine
) -> None:
    """Rows stored before the `tries` column existed may have been answered already: when the column is
    added, the open ones count as tried once, so a taker resumes them instead of answering them anew."""
    dead_inbox = make_inbox(gone_worker())
    assert dead_inbox.receive(request(1))
    assert dead_inbox.receive(request(2))
    dead_inbox.close("Ev0002", Status.ANSWERED)
    name = dead_inbox.table.name
    with bookkeeping.begin() as connection:
        connection.execute(sa.text(f'ALTER TABLE "{name}" DROP COLUMN tries'))
    living_inbox = make_inbox()
    with bookkeeping.connect() as connection:
        tries: dict[str, int] = dict(
            connection.execute(sa.text(f'SELECT request_id, tries FROM "{name}"')).tuples().all()
        )
    assert tries == {"Ev0001": 1, "Ev0002": 0}
    assert [item.text for item in living_inbox.take_over_orphans()] == ["q1"]
    assert ChannelLeases(living_inbox).acquire(CHANNEL)
    taken = living_inbox.take_next(CHANNEL)
    assert taken is not None and taken[1]


def test_a_channel_whose_turn_failed_is_found_again_by_its_own_holder(make_inbox: Callable[..., Inbox]) -> None:
    """A turn that failed on storage may leave its lease behind: the holder's own upkeep still sees the
    channel waiting (others leave it to the holder)."""
    holder_inbox, other_inbox = make_inbox(), make_inbox()
    holder, other = ChannelLeases(holder_inbox), ChannelLeases(other_inbox)
    assert holder_inbox.receive(request(1))
    assert holder.acquire(CHANNEL)

    assert holder.waiting() == [CHANNEL]
    assert other.waiting() == []


def test_what_is_not_answered_is_taken_in_runs_up_to_the_next_request(make_inbox: Callable[..., Inbox]) -> None:
    receiver, holder = make_inbox(), make_inbox()
    for item in [listened(1), listened(2), request(3), request(4), listened(5), listened(6), listened(7)]:
        assert receiver.receive(item)

    def texts(taken: list[tuple[InboxItem, bool]]) -> list[str]:
        return [item.text for item, _ in taken]

    assert texts(holder.take_run(CHANNEL, 64)) == ["q1", "q2"]
    assert texts(holder.take_run(CHANNEL, 64)) == ["q3"]  # a request alone: answered before anything after it
    assert texts(holder.take_run(CHANNEL, 64)) == ["q4"]
    assert texts(holder.take_run(CHANNEL, 2)) == ["q5", "q6"]
    assert texts(holder.take_run(CHANNEL, 64)) == ["q7"]
    assert holder.take_run(CHANNEL, 64) == []


def test_requests_given_back_are_taken_again_as_resumed(make_inbox: Callable[..., Inbox]) -> None:
    holder, other = make_inbox(), make_inbox()
    for number in (1, 2, 3):
        assert holder.receive(listened(number))
    taken = holder.take_run(CHANNEL, 64)
    other.give_back([item.request_id for item, _ in taken])  # not its own: nothing happens
    assert not holder.has_waiting(CHANNEL)
    holder.give_back([item.request_id for item, _ in taken[1:]])
    assert [(item.text, resumed) for item, resumed in holder.take_run(CHANNEL, 64)] == [("q2", True), ("q3", True)]


class _Queues:
    """The two queues a turn may use, for a turn run by hand: it is never queued again here."""

    def submit(self, key: ChannelKey, job: object) -> None:
        pass

    async def idle(self, key: ChannelKey) -> None:
        pass


def test_a_turn_that_fails_gives_back_what_it_took_but_had_not_handled(make_inbox: Callable[..., Inbox]) -> None:
    """A run taken at once and then interrupted must not leave the rest taken by nobody at work."""
    inbox = make_inbox()
    for number in (1, 2, 3):
        assert inbox.receive(listened(number))
    handled = []

    async def handle(item: InboxItem, resumed: bool) -> None:
        if item.text == "q2":
            raise RuntimeError("storage failed")
        handled.append(item.text)

    queues = cast(ChannelQueues, _Queues())
    with ThreadPoolExecutor(1) as io:
        order = SharedOrder(ChannelLeases(inbox), inbox, queues, queues, io)
        with pytest.raises(RuntimeError):
            asyncio.run(order._turn(CHANNEL, handle))
    assert handled == ["q1"]
    assert [item.text for item, _ in inbox.take_run(CHANNEL, 64)] == ["q2", "q3"]
