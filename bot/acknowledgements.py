"""What the bot answers the moment `/tool` arrives, before any work is done.

Both the listeners (`bot.listeners`) and the receiving process (`bot.receiver`, which loads neither
Bolt nor Pixeltable) acknowledge a `/tool` command, so the words live here, where both can read them,
and a user reads the same whichever process answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.slack_text import quoted, readable_text

ECHO_LIMIT = 200  # characters of the user's request repeated above a /tool answer
STORAGE_DOWN = ":warning: I couldn't save your request just now (storage unavailable). Please try again shortly."
STORAGE_SLOW = (
    ":hourglass_flowing_sand: Storage is slow right now; I'll answer as soon as your request is saved,"
    " or tell you here if it can't be."
)
TOOL_USAGE = "Usage: `/tool <request>`, for example: `/tool what time is it in Tokyo?`"
TOOL_WORKING = ":hourglass_flowing_sand: Working on `/tool {text}`…"  # .format(text=...)
ACKNOWLEDGED = "pixelbot_acknowledged"
"""Bolt context key: the receiving process acknowledged this request already, so a failure to store it
must fail its dispatch (to be tried again), not be told to the user (who was told it is being worked on)."""


def tool_text(command: Mapping[str, Any]) -> str:
    """The request of a `/tool` command, as plain text ("" if there is none)."""
    return readable_text(str(command.get("text", "")))


def tool_acknowledgement(text: str) -> str:
    """The ack of a `/tool` command with request `text`: how to use it if empty, else that it is being worked on."""
    return TOOL_WORKING.format(text=quoted(text, ECHO_LIMIT)) if text else TOOL_USAGE
