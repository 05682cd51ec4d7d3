"""Thread follow-ups: once the bot answers in a channel thread, later replies there are for it too.

A thread is the bot's when someone mentioned it there (or started the thread with a mention): the
inbox, shared by every process, holds those mentions, so any process can tell (`Inbox.asked_in_thread`,
two index lookups on the acknowledgement path of a reply in a thread). Threads found, and the threads of
mentions this process received, are remembered here, so a busy thread costs no lookup at all.
`PIXELBOT_THREAD_FOLLOWUPS=false` turns follow-ups off (then no lookups either).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from bot.inbox import Inbox

REMEMBERED_THREADS = 10_000


class Followups:
    """Which channel threads the bot answers in."""

    def __init__(self, inbox: Inbox, capacity: int = REMEMBERED_THREADS) -> None:
        self._inbox = inbox
        self._capacity = capacity
        self._known: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, team_id: str, channel_id: str, thread_ts: str) -> None:
        """The bot was asked in this thread (it answers there)."""
        with self._lock:
            self._known[(team_id, channel_id, thread_ts)] = None
            self._known.move_to_end((team_id, channel_id, thread_ts))
            while len(self._known) > self._capacity:
                self._known.popitem(last=False)

    def answered_in(self, team_id: str, channel_id: str, thread_ts: str) -> bool:
        """Whether a reply in this thread is for the bot; raises if storage can't tell."""
        key = (team_id, channel_id, thread_ts)
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return True
        if not self._inbox.asked_in_thread(team_id, channel_id, thread_ts):
            return False
        self.note(*key)
        return True
