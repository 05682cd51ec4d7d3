"""The bot's side of the arrival log: events its receiving process acknowledged, taken in in order.

The receiving process (`bot.receiver`) stored each message event in the arrival log and pokes this
process through a pipe. A reader thread then takes the log's oldest rows and gives each to `take_in`
(Bolt's dispatch, so the event is stored in the inbox and answered, remembered or dropped exactly as
if it had come over HTTP to this process). A channel's events are taken in one after another in
arrival order, different channels' side by side (`workers` threads), so their inbox writes are
grouped into one statement as an HTTP burst's are. A row is removed once taken in. One that failed
(storage down, say) stays, and so do its channel's later ones, while the other channels go on; the
channel is tried again after `RETRY_AFTER`. One that failed `GIVE_UP_AFTER` times and was stored over
`GIVE_UP_AGE` ago is given up with an error line, so that it cannot hold its channel up for good
(the age keeps a short outage, which fails every try quickly, from costing an acknowledged message).
The reader also looks every `POLL` without a poke, and adopts the rows of processes that died every
`ADOPT_EVERY`.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from bot.arrival_log import Arrival, ArrivalLog

logger = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the log without a poke
RETRY_AFTER = 1.0  # seconds before a channel whose event failed is tried again
ADOPT_EVERY = 10.0  # seconds between adoptions of the rows of processes that died (as the inbox's take-over)
BATCH = 256  # rows read at once
GIVE_UP_AFTER = 10  # failed tries of an event before it may be given up ...
GIVE_UP_AGE = timedelta(minutes=10)  # ... if it was stored that long ago (as the inbox's `GIVE_UP_AGE`)
STOP_TIMEOUT = 30.0  # seconds the reader gets to take in what is left when the bot stops


class ArrivalReader:
    """A daemon thread taking the log's events in for this process (`owner`)."""

    def __init__(
        self,
        log: ArrivalLog,
        owner: str,
        take_in: Callable[[Arrival], bool],
        live_owners: Callable[[], set[str]],
        workers: int = 16,
        retry_after: float = RETRY_AFTER,
        batch: int = BATCH,
    ) -> None:
        self._log, self._owner, self._take_in, self._live_owners = log, owner, take_in, live_owners
        self._retry_after, self._batch = retry_after, batch
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="pixelbot-arrival")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._adopted_at = 0.0
        self._held: dict[str, float] = {}  # channels whose event failed: when they may be tried again

    def start(self, pokes: int | None) -> None:
        """Read the log whenever `pokes` (a pipe's file descriptor) is readable, and every `POLL`."""
        self._thread = threading.Thread(target=self._run, args=(pokes,), name="pixelbot-arrivals", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take in what is left (the receiving process has stopped), then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                logger.warning("events left in the arrival log at shutdown; the next start takes them in")
        self._pool.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, pokes: int | None) -> None:
        waiting = select.poll()  # not select(2): no file descriptor limit
        if pokes is not None:
            waiting.register(pokes, select.POLLIN)
        while True:
            stopping = self._stop.is_set()
            try:
                self._adopt_now_and_then()
                self.read_all()
                if stopping:
                    return
                if pokes is not None and not self._poked(waiting, pokes):
                    waiting.unregister(pokes)
                    pokes = None
            except Exception:
                logger.exception("reading the arrival log failed; will retry")
                self._stop.wait(RETRY_AFTER)
            if pokes is None:
                self._stop.wait(POLL)

    def _poked(self, waiting: select.poll, pokes: int) -> bool:
        """Wait until poked or `POLL`; False once the pipe closed (the receiving process exited: the
        bot's process notices and stops)."""
        return not (waiting.poll(POLL * 1000) and not os.read(pokes, 65536))

    def _adopt_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._adopted_at >= ADOPT_EVERY:
            self._adopted_at = now
            if adopted := self._log.adopt(self._owner, self._live_owners()):
                logger.warning("took over %d events a stopped process had acknowledged", adopted)

    def read_all(self) -> None:
        """Take in every event of the log that is this process's, but those of channels held back."""
        now = time.monotonic()
        self._held = {channel: until for channel, until in self._held.items() if until > now}
        after, failed_now = 0, set[str]()  # channels that failed in this pass (given up or held back)
        while batch := self._log.oldest(self._owner, self._batch, after=after):
            skipped = self._held.keys() | failed_now
            failed_now |= self._take_in_batch([arrival for arrival in batch if arrival.channel not in skipped])
            if len(batch) < self._batch:
                return
            after = batch[-1].seq

    def _take_in_batch(self, batch: Sequence[Arrival]) -> set[str]:
        """Each channel's events in order, channels side by side; a channel that fails is held back
        (its later events wait for the next pass, also when the failed one was given up). Returns the
        channels that failed."""
        by_channel: dict[str, list[Arrival]] = defaultdict(list)
        for arrival in batch:
            by_channel[arrival.channel].append(arrival)
        outcomes = list(self._pool.map(self._take_in_channel, by_channel.values()))
        done = [arrival for taken, _ in outcomes for arrival in taken]
        failed = [failure for _, failure in outcomes if failure is not None]
        given_up = [arrival for arrival in failed if _past_hope(arrival)]
        for arrival in given_up:
            logger.error("giving up on event %s after %d failed tries", arrival.request_id, arrival.tries + 1)
        for arrival in failed:
            if arrival not in given_up:
                self._held[arrival.channel] = time.monotonic() + self._retry_after
        self._log.remove([*done, *given_up])
        self._log.failed([arrival for arrival in failed if arrival not in given_up])
        return {arrival.channel for arrival in failed}

    def _take_in_channel(self, arrivals: list[Arrival]) -> tuple[list[Arrival], Arrival | None]:
        """One channel's events, in order, up to the first that fails: those taken in, and that one."""
        taken: list[Arrival] = []
        for arrival in arrivals:
            try:
                ok = self._take_in(arrival)
            except Exception:
                logger.exception("could not take in event %s", arrival.request_id)
                ok = False
            if not ok:
                return taken, arrival
            taken.append(arrival)
        return taken, None


def _past_hope(arrival: Arrival) -> bool:
    return arrival.tries + 1 >= GIVE_UP_AFTER and datetime.now(UTC) - arrival.received_at > GIVE_UP_AGE
