"""Which channels a user is a member of, as Slack says (`users.conversations`, page by page).

Memory is shown only to members: the Home tab lists a user's channels, and an assistant thread
recalls the memory of the channel beside it only if the user is in that channel. In a channel shared
with another organisation, its people are members too; a channel of ours they are not in is not theirs
to read, whatever the assistant panel's context says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from slack_sdk import WebClient

logger = logging.getLogger(__name__)

MEMBERSHIP_TYPES = "public_channel,private_channel,mpim"
PAGE_SIZE = 200  # channels per users.conversations page
MAX_PAGES = 100  # pages read at most (20,000 channels): a cursor that never ends can't hold a thread
MEMBERS_TTL = 60.0  # seconds a user's channels are reused for membership checks


def channels_of(client: WebClient, user_id: str, types: str = MEMBERSHIP_TYPES) -> Iterator[str]:
    """The channels `user_id` is a member of, page by page (`users.conversations` pages by cursor)."""
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = client.users_conversations(
            user=user_id, types=types, exclude_archived=True, limit=PAGE_SIZE, cursor=cursor
        )
        for channel in page.get("channels") or []:
            if isinstance(channel, dict) and isinstance(channel.get("id"), str):
                yield channel["id"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return
    logger.warning("stopped listing the channels of %s after %d pages", user_id, MAX_PAGES)


class Memberships:
    """`is_member`, with each user's channels kept for `MEMBERS_TTL` (a conversation asks often)."""

    def __init__(self, client: WebClient) -> None:
        self._client = client
        self._known: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def is_member(self, user_id: str, channel_id: str) -> bool:
        with self._lock:
            known = self._known.get(user_id)
        if known is None or time.monotonic() - known[0] > MEMBERS_TTL:
            known = (time.monotonic(), frozenset(channels_of(self._client, user_id, f"{MEMBERSHIP_TYPES},im")))
            with self._lock:
                self._known[user_id] = known
        return channel_id in known[1]
