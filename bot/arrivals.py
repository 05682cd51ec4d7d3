"""Slack requests being acknowledged right now, counted so that work nobody waits for can make way.

Slack wants an acknowledgement within 3 s, and acks come in bursts: many channels' answers land
together, and their users' next messages with them. The bot has one core of Python, and a turn's
bookkeeping (storing it is ~6 ms of Python) takes the GIL from whatever else runs. So bookkeeping also
waits while any Slack request is in flight (`bot.lull`). Measured at 50 channels with a 300 ms model
(`python -m benchmarks.throughput --channels 50 --no-baseline`, two runs each, alternating): 46 and
46 % of ideal without it, 50 and 51 % with it; the acks' p99 stayed where it was (103-121 ms), since
most of an ack's wait is for the other acks of its burst.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Arrivals:
    """How many Slack requests are being screened, stored and acknowledged at this moment."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._lock = threading.Lock()

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around one request's handling: from when an HTTP thread (or Socket Mode) takes it, its body
        read, until its reply is ready to be written."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def quiet(self) -> bool:
        """Whether no request is being acknowledged (a moment's answer: one may arrive right after)."""
        return self._in_flight == 0
