"""Remembering which Slack events were already taken, so a retried or repeated delivery is answered once."""

from __future__ import annotations

import threading
from collections import OrderedDict


class SeenEvents:
    """The most recent `capacity` event IDs; `first_time` is atomic across threads."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """True the first time `event_id` is offered, False for every repeat."""
        with self._lock:
            if event_id in self._seen:
                return False
            self._seen[event_id] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True
