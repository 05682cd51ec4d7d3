"""`Collector`: what survives a full collection is frozen, so later ones walk only newer objects;
now and then (`thaw_every`, or once the frozen objects have grown by `growth`) everything is handed
back, so that cycles that froze are freed after all."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot.collector import Collector


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


@pytest.fixture
def collector(clock: list[float]) -> Iterator[Collector]:
    collector = Collector(thaw_every=60.0, growth=100.0, clock=lambda: clock[0])
    collector.install()
    yield collector
    collector.uninstall()


def _collectable(objects: list[Cycle]) -> int:
    """How many of `objects` a collection would walk: frozen ones are left out of `gc.get_objects`.
    (Counting `gc.get_freeze_count` instead is flaky: frozen objects of earlier tests are freed
    whenever their last reference goes.)"""
    ids = {id(o) for o in objects}
    return sum(1 for o in gc.get_objects() if id(o) in ids)


def test_what_survives_a_full_collection_is_frozen(collector: Collector) -> None:
    assert gc.get_freeze_count() > 0  # start-up's objects
    kept = [Cycle() for _ in range(1000)]
    assert _collectable(kept) == len(kept)
    gc.collect()
    assert _collectable(kept) == 0


def test_a_cycle_that_froze_is_freed_once_the_collector_thaws(collector: Collector, clock: list[float]) -> None:
    cycle = Cycle()
    alive = weakref.ref(cycle)
    gc.collect()  # it survives: frozen
    del cycle
    gc.collect()
    assert alive() is not None  # frozen: no collection walks it
    clock[0] = 61.0
    gc.collect()  # time to thaw: everything is handed back,
    gc.collect()  # and the next full collection frees the cycle
    assert alive() is None


def test_uninstall_hands_everything_back(clock: list[float]) -> None:
    collector = Collector(clock=lambda: clock[0])
    collector.install()
    collector.uninstall()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gc.get_freeze_count() == 0


def test_the_collector_thaws_once_the_frozen_objects_have_grown_enough(clock: list[float]) -> None:
    collector = Collector(thaw_every=3600.0, growth=1.5, clock=lambda: clock[0])
    collector.install()
    try:
        cycle = Cycle()
        alive = weakref.ref(cycle)
        gc.collect()  # it survives: frozen
        del cycle
        grown = [Cycle() for _ in range(gc.get_freeze_count())]  # twice as many as were frozen
        gc.collect()  # they survive: frozen, and the frozen objects are too many now,
        gc.collect()  # so everything is handed back,
        gc.collect()  # and a full collection walks it all, freeing the cycle
        assert alive() is None
        assert len(grown) > 0
    finally:
        collector.uninstall()
