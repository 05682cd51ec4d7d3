"""The channel leases and the arrival-ordered inbox behind per-channel order across processes."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from bot.channels import ChannelKey
from bot.inbox import GIVE_UP_AFTER, GIVE_UP_AGE, Inbox, InboxItem, RequestKind, Status, Worker
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


def take_next(inbox: Inbox) -> tuple[InboxItem, bool] | None:
    taken = inbox.take_run(CHANNEL)
    return taken[0] if taken else None


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
    while (next_one := take_next(holder)) is not None:
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
    assert take_next(dead_inbox) is not None  # q1 was being answered when the worker died
    assert living.waiting() == []  # leased: its holder answers it
    assert not living.acquire(CHANNEL)
    assert living.free_dead() == 0, "kept until its requests are taken over: q1 must not be overtaken"

    assert [item.text for item in living_inbox.take_over_orphans()] == ["q1", "q2"]
    assert living.free_dead() == 1
    assert living.waiting() == [CHANNEL]
    assert living.acquire(CHANNEL)
    first, second = take_next(living_inbox), take_next(living_inbox)
    assert first is not None and second is not None
    assert (first[0].text, first[1]) == ("q1", True)  # resumed: an earlier try may have answered it
    # resumed too: a process alone on its database answers what it receives without taking it, so a
    # row taken over may have been answered even if it was never taken
    assert (second[0].text, second[1]) == ("q2", True)
    living_inbox.close(first[0].request_id, Status.ANSWERED)
    assert take_next(living_inbox) is None


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


def test_what_failed_is_taken_again_as_resumed_and_what_was_never_tried_as_new(
    make_inbox: Callable[..., Inbox],
) -> None:
    holder, other = make_inbox(), make_inbox()
    for number in (1, 2, 3):
        assert holder.receive(listened(number))
    taken = holder.take_run(CHANNEL, 64)
    other.give_back([item.request_id for item, _ in taken])  # not its own: nothing happens
    assert not holder.has_waiting(CHANNEL)
    holder.give_back([item.request_id for item, _ in taken[1:]], failed=["Ev0002"])
    assert [(item.text, resumed) for item, resumed in holder.take_run(CHANNEL, 64)] == [("q2", True), ("q3", False)]


def test_a_listened_message_whose_taking_in_keeps_failing_is_given_up_on(make_inbox: Callable[..., Inbox]) -> None:
    """Each failed turn gives back what it took; one message that always fails must not hold up the
    channel's later messages and requests forever. Only the failing one is charged, and only an old
    one is given up on: a short storage outage fails every try in quick succession."""
    inbox = make_inbox()
    old = datetime.now(UTC) - GIVE_UP_AGE - timedelta(minutes=1)
    assert inbox.receive(dataclasses.replace(listened(1), received_at=old))
    assert inbox.receive(listened(2))  # recent: failing as often, it is kept
    assert inbox.receive(listened(3))  # behind them, never tried
    assert inbox.receive(request(4))
    for _ in range(GIVE_UP_AFTER):
        taken = inbox.take_run(CHANNEL, 64)
        assert [item.text for item, _ in taken] == ["q1", "q2", "q3"]
        inbox.give_back([item.request_id for item, _ in taken], failed=["Ev0001", "Ev0002"])
    assert [(item.text, resumed) for item, resumed in inbox.take_run(CHANNEL, 64)] == [("q2", True), ("q3", False)]
    assert inbox.status("Ev0001") is Status.FAILED


class _Queues:
    """The two queues a turn uses, for a turn run by hand: never queued again here; counts the waits
    for the channel's storage."""

    def __init__(self, other: Inbox) -> None:
        self.other = other  # another worker, which must not get the lease meanwhile
        self.storage_waits = 0

    def submit(self, key: ChannelKey, job: object) -> None:
        pass

    async def idle(self, key: ChannelKey) -> None:
        assert not ChannelLeases(self.other).acquire(key), "the lease is let go only once storage is idle"
        self.storage_waits += 1


def test_a_turn_that_fails_gives_back_what_it_took_but_had_not_handled(
    make_inbox: Callable[..., Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run taken at once and then interrupted must not leave the rest taken by nobody at work, and
    lets its lease go only once what it took in is stored. If giving back fails too, the lease is kept
    (nothing after them may be taken first) and the next upkeep round gives them back."""
    inbox, other = make_inbox(), make_inbox()
    for number in (1, 2, 3):
        assert inbox.receive(listened(number))
    handled = []

    async def handle(item: InboxItem, resumed: bool) -> None:
        if item.text == "q2":
            raise RuntimeError("storage failed")
        handled.append(item.text)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database is down")

    queues = _Queues(other)
    with ThreadPoolExecutor(1) as io:
        order = SharedOrder(ChannelLeases(inbox), inbox, cast(ChannelQueues, queues), cast(ChannelQueues, queues), io)
        with monkeypatch.context() as patched:
            patched.setattr(inbox, "give_back", refuse)
            with pytest.raises(RuntimeError, match="storage failed"):
                asyncio.run(order._turn(CHANNEL, handle))
        assert not inbox.has_waiting(CHANNEL)
        assert not ChannelLeases(other).acquire(CHANNEL), "kept while q2 and q3 are not given back"
        order.upkeep(handle)
        assert inbox.has_waiting(CHANNEL)
        with pytest.raises(RuntimeError, match="storage failed"):
            asyncio.run(order._turn(CHANNEL, handle))  # q2 fails again; this time they are given back
    assert handled == ["q1"]
    assert queues.storage_waits == 2
    assert ChannelLeases(other).acquire(CHANNEL), "the lease was let go"
    taken = [(item.text, resumed) for item, resumed in other.take_run(CHANNEL, 64)]
    assert taken == [("q2", True), ("q3", False)], "only the one that failed counts as tried"


def test_a_stopping_process_lets_a_lease_go_once_what_it_took_in_is_stored(make_inbox: Callable[..., Inbox]) -> None:
    """A turn queued before the stop still holds the lease of the turn before it, whose listened
    messages may be in the storage queue: another process may take the channel only once they are stored."""
    inbox, other = make_inbox(), make_inbox()
    assert ChannelLeases(inbox).acquire(CHANNEL)
    queues = _Queues(other)

    async def handle(item: InboxItem, resumed: bool) -> None:
        raise AssertionError("a stopping process takes nothing more")

    with ThreadPoolExecutor(1) as io:
        order = SharedOrder(ChannelLeases(inbox), inbox, cast(ChannelQueues, queues), cast(ChannelQueues, queues), io)
        order.stop()
        asyncio.run(order._turn(CHANNEL, handle))
    assert queues.storage_waits == 1
    assert ChannelLeases(other).acquire(CHANNEL)
