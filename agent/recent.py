"""The newest turns of each conversation, kept in memory so that a turn does not read them back.

Reading a conversation's newest turns is a Pixeltable query (~8 ms of the one storage thread's time,
on every turn). A process that is the only writer of an agent's memory knows every turn it stores, so
after the first read of a conversation it keeps the newest `max_messages` turns itself and appends
each new turn as soon as the model has answered (the next turn need not wait for the store). Only
the busiest conversations are kept (least recently used dropped first), so a channel with thousands
of threads holds a bounded number of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from agent.context import Turn

DEFAULT_CONVERSATIONS = 64  # per agent


class RecentTurns:
    """Per conversation (thread ts, "" for the top level), its newest turns, oldest first."""

    def __init__(self, max_messages: int, conversations: int = DEFAULT_CONVERSATIONS) -> None:
        self._max_messages = max_messages
        self._capacity = conversations
        self._turns: OrderedDict[str, deque[Turn]] = OrderedDict()
        self._lock = threading.Lock()

    def knows(self, conversation: str) -> bool:
        with self._lock:
            return conversation in self._turns

    def get(self, conversation: str) -> list[Turn] | None:
        """The conversation's newest turns, or None if they have to be read from storage."""
        with self._lock:
            turns = self._turns.get(conversation)
            if turns is None:
                return None
            self._turns.move_to_end(conversation)
            return list(turns)

    def put(self, conversation: str, turns: list[Turn]) -> None:
        """Remember the newest turns as read from storage."""
        with self._lock:
            self._turns[conversation] = deque(turns, maxlen=self._max_messages)
            self._turns.move_to_end(conversation)
            while len(self._turns) > self._capacity:
                self._turns.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()

    def forget(self, conversation: str) -> None:
        with self._lock:
            self._turns.pop(conversation, None)

    def add(self, conversation: str, request_id: str, turns: list[Turn]) -> None:
        """Turns just stored in `conversation` by request `request_id`.

        A thread's conversation also holds the exchange that started it (see `Agent.recent_turns`): if
        a thread named after this request is known, it is read again rather than patched. A turn kept
        already (a listened message taken in again, and skipped by storage) is not kept twice.
        """
        with self._lock:
            known = self._turns.get(conversation)
            if known is not None:
                kept = {(turn.request_id, turn.role) for turn in known}
                known.extend(turn for turn in turns if not turn.request_id or (turn.request_id, turn.role) not in kept)
            if request_id != conversation:
                self._turns.pop(request_id, None)
