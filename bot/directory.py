"""Who a Slack user ID is: display names for recall, from `users.info`, asked once per user.

Recall embeds and shows each remembered message with its author's name, so that "what did Priya
say about the vendor?" finds Priya's messages. Names change rarely; a process asks Slack once per
user (and again after `TTL`), and a user Slack can't tell about (deleted, another organisation's)
is remembered as unnamed instead of being asked about on every message.
"""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.channels import ChannelKey
from bot.workspaces import in_workspace

logger = logging.getLogger(__name__)

TTL = 24 * 3600.0  # seconds a name is trusted


class UserDirectory:
    """Display names by user ID, cached."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._names: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def name_in(self, user: str, agent: str) -> str:
        """`name`, asked of the workspace of the channel agent `agent` (the recall indexer's question)."""
        with in_workspace(ChannelKey.from_agent_name(agent).team_id):
            return self.name(user)

    def name(self, user: str) -> str:
        """The user's display name (or real name, or handle); "" if Slack can't say."""
        with self._lock:
            known = self._names.get(user)
        if known is not None and time.monotonic() - known[1] < TTL:
            return known[0]
        name = self._ask(user)
        with self._lock:
            self._names[user] = (name, time.monotonic())
        return name

    def _ask(self, user: str) -> str:
        try:
            profile = self.client.users_info(user=user)["user"]
        except SlackApiError as error:
            logger.info("no name for %s: %s", user, error.response.get("error"))
            return ""
        details = profile.get("profile") or {}
        for name in (
            details.get("display_name"),
            details.get("real_name"),
            profile.get("real_name"),
            profile.get("name"),
        ):
            if isinstance(name, str) and name.strip():
                return name.strip()
        return ""
