"""The "Sources" line under an answer that used recalled memory: links to the messages (and the files,
with the page or section) it cites.

Links use Slack's documented permalink form (`https://<workspace>.slack.com/archives/<channel>/p<ts
without the dot>`, with `thread_ts` for a reply), built from the workspace URL that `auth.test`
gives once at start, so an answer costs no extra Slack call per source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agent.recall import MemoryItem
from bot.slack_text import escape

MAX_SOURCES = 3


class SourceLinks:
    """Permalinks into one workspace."""

    def __init__(self, workspace_url: str | Callable[[], str]) -> None:
        """`workspace_url`: the workspace's URL, or how to learn the current workspace's (OAuth: one
        bot serves many)."""
        self._url = workspace_url

    @property
    def workspace_url(self) -> str:
        url = self._url if isinstance(self._url, str) else self._url()
        return url if url.endswith("/") else url + "/"

    def permalink(self, channel_id: str, item: MemoryItem) -> str | None:
        if item.link:  # a piece of a file: the file's own permalink
            return item.link
        if not item.ts:
            return None
        channel_id = item.channel_id or channel_id
        link = f"{self.workspace_url}archives/{channel_id}/p{item.ts.replace('.', '')}"
        if item.thread_ts and item.thread_ts != item.ts:
            link += f"?thread_ts={item.thread_ts}&cid={channel_id}"
        return link

    def footer(self, channel_id: str, items: Sequence[MemoryItem]) -> str | None:
        """The mrkdwn of the Sources line for `items` (at most `MAX_SOURCES`), or None without any."""
        parts = []
        for item in items[:MAX_SOURCES]:
            label = f"{'<@' + item.user + '>' if item.user else 'someone'}, {item.at:%b %-d, %Y}"
            if item.role == "file":  # the file and the page or section, e.g. "spec.pdf, page 2"
                named = (item.user_name, item.place)  # from the document: never markup
                label = ", ".join(escape(part).replace("|", "¦") for part in named if part)
            link = self.permalink(channel_id, item)
            parts.append(f"<{link}|{label}>" if link else label)
        return "Sources: " + " · ".join(parts) if parts else None


def footer_block(footer: str) -> dict[str, Any]:
    """A context block (Slack's small grey line) holding `footer`."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]}
