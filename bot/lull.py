"""Answers first, bookkeeping in the lulls between them.

The bot has one core of Python (the GIL). When many conversations are answered at once their work
comes in bursts: forty model calls made together come back together, and every answer then has to be
posted while the turns just answered are stored. Storing a turn (a Pixeltable insert, ~15 ms of
Python) does not make any user wait, but it takes the GIL from the answers that do: measured at 40
channels with a 3 s model, an answer spent ~0.5 s beyond the model's 3 s, most of it in such a burst.
So a turn's bookkeeping waits until no answer is being prepared or delivered (the model calls
themselves need no Python), for at most `patience` after the answer was delivered; a request that
must read storage (`needed`) ends the wait at once. Bookkeeping also makes way for Slack requests
being acknowledged (`bot.arrivals`): the users whose answers just landed send their next messages
then. And the turns stored together go one at a time (`turn`), each once there is a lull: a hundred
turns let go together (~1.5 s of Python) would otherwise run on, on the storage thread, into the next
burst of answers. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from bot.arrivals import Arrivals

PATIENCE = 1.0  # seconds a turn's bookkeeping may wait for a lull: a crash in it only repeats the check of Slack
ARRIVALS_POLL = 0.005  # seconds between looks at the acks in flight (they are counted on the HTTP threads)


class Lull:
    """Counts the answers being prepared or delivered; `wait` returns when there are none, and no
    Slack request is being acknowledged (`arrivals`)."""

    def __init__(
        self,
        patience: float = PATIENCE,
        clock: Callable[[], float] = time.monotonic,
        arrivals: Arrivals | None = None,
    ) -> None:
        self.patience = patience
        self._clock = clock
        self._arrivals = arrivals or Arrivals()
        self._busy = 0
        self._readers = 0  # requests waiting to read storage: bookkeeping goes at once
        self._go = asyncio.Event()  # set while bookkeeping may go (bound to the loop at its first wait)
        self._go.set()
        self._one = asyncio.Lock()  # one piece of bookkeeping at a time (`turn`)

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Around an answer's own work (on the loop)."""
        self._add(1)
        try:
            yield
        finally:
            self._add(-1)

    @contextmanager
    def resting(self) -> Iterator[None]:
        """Inside `busy`, around a wait that needs no Python of this process (the model call)."""
        self._add(-1)
        try:
            yield
        finally:
            self._add(1)

    @contextmanager
    def needed(self) -> Iterator[None]:
        """Around a request's wait for the turns still being stored: meanwhile no bookkeeping waits."""
        self._readers += 1
        self._update()
        try:
            yield
        finally:
            self._readers -= 1
            self._update()

    async def wait(self, since: float) -> None:
        """Until no answer is being prepared or delivered and no ack is in flight, or `patience` after
        `since` (a `clock` time). The acks are looked at every `ARRIVALS_POLL`: they are counted on other
        threads, and only one piece of bookkeeping waits at a time (`turn`)."""
        deadline = since + self.patience
        while (left := deadline - self._clock()) > 0:
            if not self._go.is_set():
                try:
                    await asyncio.wait_for(self._go.wait(), left)
                except TimeoutError:
                    return  # its patience spent, by the loop's clock (a `clock` given for tests may stand still)
            elif self._readers > 0 or self._arrivals.quiet():
                return
            else:
                await asyncio.sleep(min(ARRIVALS_POLL, left))

    @asynccontextmanager
    async def turn(self, since: float) -> AsyncIterator[None]:
        """Around one piece of bookkeeping (of an answer delivered at `since`): it goes after the
        others waiting, once there is a lull (`wait`), so that each one, not only the first of a
        burst, looks for a lull before it takes the GIL."""
        async with self._one:
            await self.wait(since)
            yield

    def now(self) -> float:
        return self._clock()

    def _add(self, step: int) -> None:
        self._busy += step
        self._update()

    def _update(self) -> None:
        if self._busy <= 0 or self._readers > 0:
            self._go.set()
        else:
            self._go.clear()
