"""Python's cycle collector without its long pauses in a serving process.

A full collection (generation 2) walks every object the process holds, with the GIL held: in the bot
under load that took 125-320 ms every few seconds (`benchmarks.throughput --channels 50`, gc callbacks
timing it), and every acknowledgement in flight waited for it. Most of what a full collection walks
is the process's lasting state (modules, Pixeltable's catalog, the open agents), which survives every
collection. So what survives a full collection is frozen (`gc.freeze`: ignored by later collections),
and the next ones walk only what is newer: 10-40 ms in the same run.

A frozen object is still freed when nothing refers to it; only a frozen object that later becomes
part of an unreachable cycle (an answer's objects, frozen while it was in progress; an agent dropped
from the cache) stays until the collector sees it again. So the frozen objects are handed back
(`gc.unfreeze`) once they are `GROWTH` times as many as after the last full walk, or `THAW_EVERY`
after it, and the next full collection walks everything, as Python would have done every time: one
long pause now and then instead of one every few seconds, and memory held back bounded by the live
heap.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

THAW_EVERY = 3600.0  # seconds between full collections that walk everything (and free what froze in cycles)
GROWTH = 1.5  # or sooner, once this many times as many objects are frozen as after the last full walk


class Collector:
    """Freezes the survivors of each full collection; thaws them `thaw_every` seconds after the last
    thaw, or once `growth` times as many are frozen as after the full walk that followed it."""

    def __init__(
        self, thaw_every: float = THAW_EVERY, growth: float = GROWTH, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.thaw_every = thaw_every
        self.growth = growth
        self._clock = clock
        self._thawed_at = clock()
        self._walked = 0  # objects frozen after the last collection that walked everything
        self._thawed = False

    def install(self) -> None:
        """Collect and freeze what start-up made (its pause is before serving), then keep freezing."""
        gc.collect()
        gc.freeze()
        self._walked = gc.get_freeze_count()
        gc.callbacks.append(self._after_collection)
        logger.debug("cycle collector: %d start-up objects frozen", self._walked)

    def uninstall(self) -> None:
        """Hand everything back to the collector, as before `install`."""
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        if self._clock() >= self._thawed_at + self.thaw_every or gc.get_freeze_count() > self.growth * self._walked:
            self._thawed_at, self._thawed = self._clock(), True
            gc.unfreeze()  # the next full collection walks everything
            return
        gc.freeze()
        if self._thawed:  # this collection walked everything
            self._walked, self._thawed = gc.get_freeze_count(), False
