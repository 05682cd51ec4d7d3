"""How recalled memory reads in a prompt: numbered lines with who said it and when, to cite as [n]."""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.recall.table import MemoryItem
from agent.tokens import message_tokens, truncate_to_tokens

ITEM_TOKENS = 250  # of one recalled message
HEADER = (
    "Recalled from this channel's history (older messages, other threads and files shared here, not the "
    "current conversation), most relevant first. Use them only if they help; when you use one, cite it as [n]."
)
_CITATION = re.compile(r"\[(\d{1,2})\]")


def recalled_message(items: Sequence[MemoryItem], max_tokens: int) -> tuple[str | None, list[MemoryItem]]:
    """The system message carrying `items` (best first) within `max_tokens`, and the items it holds,
    in the order of their numbers; (None, []) when none fits."""
    lines = [HEADER]
    used: list[MemoryItem] = []
    budget = max_tokens - message_tokens(HEADER)
    for item in items:
        line = _line(len(used) + 1, item)
        cost = message_tokens(line)
        if cost > budget:
            continue
        budget -= cost
        lines.append(line)
        used.append(item)
    return ("\n".join(lines), used) if used else (None, [])


def _line(number: int, item: MemoryItem) -> str:
    text = truncate_to_tokens(" ".join(item.text.split()), ITEM_TOKENS)
    if item.role == "file":
        where = f", {item.place}" if item.place else ""
        who = f"shared by user {item.user}" if item.user else "shared"
        return f"[{number}] From the file {item.user_name}{where} ({who} {item.at:%Y-%m-%d}): {text}"
    if item.role == "assistant":
        who = "pixelbot (you)"
    elif item.user:
        who = f"{item.user_name} (user {item.user})" if item.user_name else f"user {item.user}"
    else:
        who = "someone"
    where = " in a thread" if item.thread_ts else ""
    return f"[{number}] {item.at:%Y-%m-%d %H:%M} UTC, {who}{where}: {text}"


def cited(answer: str, recalled: Sequence[MemoryItem], limit: int = 3) -> list[MemoryItem]:
    """The recalled items that `answer` cites as [n], in order of first citation, at most `limit`."""
    found: list[MemoryItem] = []
    for match in _CITATION.finditer(answer):
        number = int(match.group(1))
        if 1 <= number <= len(recalled) and recalled[number - 1] not in found:
            found.append(recalled[number - 1])
    return found[:limit]
