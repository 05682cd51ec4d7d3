"""Text between Slack and the model: Slack markup to plain text, Markdown to mrkdwn, and message splitting.

`markdown_to_mrkdwn` does the Markdown conversion. It rewrites inside inline code (`**x**` → `*x*`) and
does not escape `&`, `<`, `>`, which Slack treats as control characters, so code is set aside before
converting and the three characters are escaped here.
"""

from __future__ import annotations

import re
from typing import Any

from markdown_to_mrkdwn import SlackMarkdownConverter

SECTION_LIMIT = 3000  # characters of mrkdwn in one section block
FENCE = "```"

_SLACK_TOKEN = re.compile(r"<((?:[@#!]|[A-Za-z][\w+.-]*:)[^<>\n]*)>")  # <@U1>, <#C1|x>, <!here>, <https://…>
_FENCED_CODE = re.compile(r"^```[^\n`]*\n(.*?)(?:^```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_PLACEHOLDER = "PXBCODE{}X"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # NUL can't even be stored
_converter = SlackMarkdownConverter()


# -- Slack → model -----------------------------------------------------------------------------------
def readable_text(text: str, bot_user_id: str | None = None) -> str:
    """A Slack message as plain text: the bot's mention removed, markup made readable, entities decoded."""

    def replace(match: re.Match[str]) -> str:
        return _readable_token(match.group(1), bot_user_id)

    plain = _SLACK_TOKEN.sub(replace, _CONTROL_CHARACTERS.sub("", text))
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def _readable_token(token: str, bot_user_id: str | None) -> str:
    target, _, label = token.partition("|")
    if target.startswith("@"):
        return "" if target[1:] == bot_user_id else f"@{label or target[1:]}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!subteam^"):
        return label or "@team"
    if target.startswith("!date^"):
        return label
    if target.startswith("!"):
        return f"@{target[1:]}"
    if target.startswith("mailto:"):
        return label or target.removeprefix("mailto:")
    if label and label != target:
        return f"{label} ({target})"
    return target


# -- model → Slack -----------------------------------------------------------------------------------
def escape(text: str) -> str:
    """Slack's three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoted(text: str, limit: int) -> str:
    """User text to repeat inside inline code: literal (no live mention, broadcast or link, since
    `<`, `>` and `&` are escaped), on one line, without backticks that would end the code, at most
    `limit` characters."""
    flat = " ".join(text.replace("`", "'").split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return escape(flat)


def to_mrkdwn(markdown: str) -> str:
    """The model's Markdown as Slack mrkdwn, with code kept verbatim (escaped, language tags dropped)."""
    code: list[str] = []

    def set_aside(rendered: str) -> str:
        code.append(rendered)
        return _PLACEHOLDER.format(len(code) - 1)

    text = _FENCED_CODE.sub(lambda m: set_aside(f"{FENCE}\n{escape(m.group(1).rstrip(chr(10)))}\n{FENCE}"), markdown)
    text = _INLINE_CODE.sub(lambda m: set_aside(escape(m.group(0))), text)
    converted: str = _converter.convert(escape(text))
    for index, rendered in enumerate(code):
        converted = converted.replace(_PLACEHOLDER.format(index), rendered, 1)
    return converted.strip()


def split_message(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Split mrkdwn into chunks of at most `limit` characters, at line breaks where possible.

    A chunk that ends inside a code block closes it, and the next chunk reopens it, so every chunk
    renders on its own. Empty text gives no chunks.
    """
    if limit < 2 * len(FENCE) + 3:
        raise ValueError("limit too small to hold a code block")
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    in_code = False
    for line in _bounded_lines(text, limit - 2 * (len(FENCE) + 1)):
        reserve = len(FENCE) + 1 if in_code or line.startswith(FENCE) else 0
        if current and size + len(line) + 1 + reserve > limit:
            chunks.append(_close("\n".join(current), in_code))
            current, size = ([FENCE] if in_code else []), (len(FENCE) + 1 if in_code else 0)
        current.append(line)
        size += len(line) + 1
        if line.startswith(FENCE):
            in_code = not in_code
    if current:
        chunks.append(_close("\n".join(current), in_code))
    return [chunk for chunk in chunks if chunk.strip() and chunk.strip() != f"{FENCE}\n{FENCE}"]


def _close(chunk: str, in_code: bool) -> str:
    return f"{chunk}\n{FENCE}" if in_code else chunk


def _bounded_lines(text: str, width: int) -> list[str]:
    """The lines of `text`, each cut into pieces of at most `width` (at a space when there is one)."""
    lines: list[str] = []
    for line in text.strip("\n").split("\n") if text.strip() else []:
        while len(line) > width:
            cut = line.rfind(" ", width // 2, width)
            cut = cut if cut > 0 else width
            lines.append(line[:cut])
            line = line[cut:].lstrip(" ")
        lines.append(line)
    return lines


def message_blocks(chunk: str) -> list[dict[str, Any]]:
    """Block Kit blocks for one chunk of an answer."""
    if len(chunk) > SECTION_LIMIT:
        raise ValueError(f"a section holds at most {SECTION_LIMIT} characters, got {len(chunk)}")
    return [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}]
