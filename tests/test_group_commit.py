"""`GroupWriter`: rows that arrive together are written in one statement, each caller told its own fate."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from bot.group_commit import GroupWriter


class Store:
    """A table keyed by the item itself; the first write can be held until the test releases it."""

    def __init__(self, hold_first: bool = False, bad: str | None = None) -> None:
        self.rows: set[str] = set()
        self.batches: list[list[str]] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.bad = bad

    def write(self, items: Sequence[str]) -> set[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.holding.set()
            assert self.release.wait(10)
        if self.bad in items:
            raise ValueError(f"bad row {self.bad}")
        new = {item for item in items if item not in self.rows}
        self.rows |= new
        return new


def writer(store: Store, threads: int = 1) -> GroupWriter[str, str]:
    return GroupWriter(store.write, lambda item: item, threads=threads)


def busy_writer(store: Store) -> GroupWriter[str, str]:
    """A writer held up in writing "r0" (a `Store` holding its first write): what comes next queues up."""
    group = writer(store)
    group.submit("r0")
    assert store.holding.wait(10)
    return group


def test_rows_waiting_together_are_written_in_one_statement() -> None:
    store = Store(hold_first=True)
    group = writer(store)
    first = group.submit("r0")
    assert store.holding.wait(10)  # the writer is busy with r0: the next ones queue up
    waiting = [group.submit(f"r{n}") for n in range(1, 6)]
    store.release.set()
    assert first.result(10) and all(future.result(10) for future in waiting)
    assert store.batches == [["r0"], ["r1", "r2", "r3", "r4", "r5"]]
    group.shutdown()


def test_a_statement_held_up_does_not_hold_up_the_next_rows() -> None:
    store = Store(hold_first=True)
    group = writer(store, threads=2)
    held = group.submit("r0")
    assert store.holding.wait(10)  # e.g. waiting for a row lock
    assert group.submit("r1").result(10)  # written by the other thread meanwhile
    assert not held.done()
    store.release.set()
    assert held.result(10)
    group.shutdown()


def test_a_row_stored_before_is_reported_so() -> None:
    store = Store()
    group = writer(store)
    assert group.submit("r1").result(10)
    assert not group.submit("r1").result(10)
    group.shutdown()


def test_of_two_copies_in_one_batch_only_the_first_is_stored() -> None:
    store = Store(hold_first=True)
    group = busy_writer(store)
    copies = [group.submit("retried"), group.submit("retried")]
    store.release.set()
    assert [future.result(10) for future in copies] == [True, False]
    group.shutdown()


def test_a_bad_row_fails_only_its_own_request() -> None:
    store = Store(hold_first=True, bad="bad")
    group = busy_writer(store)
    good, bad, other = group.submit("good"), group.submit("bad"), group.submit("other")
    store.release.set()
    assert good.result(10) and other.result(10)
    with pytest.raises(ValueError, match="bad row"):
        bad.result(10)
    assert store.rows == {"r0", "good", "other"}
    group.shutdown()


def test_shutdown_writes_what_is_queued() -> None:
    store = Store(hold_first=True)
    group = busy_writer(store)
    queued = group.submit("r1")
    store.release.set()
    group.shutdown()
    assert queued.done() and queued.result()
    assert store.rows == {"r0", "r1"}
