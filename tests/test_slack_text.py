"""Slack text conversions: markup to plain text, Markdown to mrkdwn, splitting (unit tests, no I/O)."""

from __future__ import annotations

import random

import pytest

from bot.slack_text import FENCE, message_blocks, readable_text, split_message, to_mrkdwn


@pytest.mark.parametrize(
    ("slack", "plain"),
    [
        ("<@UBOT> hello", "hello"),
        ("hi <@UBOT>, and <@U123> and <@U456|bob>", "hi , and @U123 and @bob"),
        ("see <#C1|general> or <#C2>", "see #general or #C2"),
        ("<https://x.io|the doc> and <https://y.io>", "the doc (https://x.io) and https://y.io"),
        ("mail <mailto:a@b.co|a@b.co>", "mail a@b.co"),
        ("<!here> <!channel> <!subteam^S1|@devs>", "@here @channel @devs"),
        ("<!date^1700000000^{date}|Nov 14>", "Nov 14"),
        ("a &lt;b&gt; &amp;lt; c", "a <b> &lt; c"),
        ("nul\x00 and bell\x07 go, tab\tand\nnewline stay", "nul and bell go, tab\tand\nnewline stay"),
        ("unbalanced < and > stay", "unbalanced < and > stay"),
        ("😀 𝔘𝔫𝔦 中文 עברית", "😀 𝔘𝔫𝔦 中文 עברית"),
    ],
)
def test_readable_text(slack: str, plain: str) -> None:
    assert readable_text(slack, bot_user_id="UBOT") == plain


def test_markdown_becomes_mrkdwn_with_code_kept_verbatim() -> None:
    markdown = (
        "# Title\n**bold** *it* [link](https://x.io) a < b & c\n\n- item\n\n```python\nx = a**b < 3\n```\n`**raw**`"
    )

    assert to_mrkdwn(markdown) == (
        "*Title*\n*bold* _it_ <https://x.io|link> a &lt; b &amp; c\n\n• item\n\n```\nx = a**b &lt; 3\n```\n`**raw**`"
    )


def test_unclosed_fence_does_not_break_conversion() -> None:
    assert to_mrkdwn("```\nprint(1)").startswith("```\nprint(1)")


def assert_valid_chunks(text: str, chunks: list[str], limit: int) -> None:
    assert all(0 < len(chunk) <= limit for chunk in chunks)
    assert all(chunk.count(FENCE) % 2 == 0 for chunk in chunks)
    rejoined = "\n".join(chunks).replace(FENCE, "").split()
    assert rejoined == text.replace(FENCE, "").split()


def test_split_keeps_code_blocks_closed_and_content_whole() -> None:
    code = "\n".join(f"line_{index} = {index}" for index in range(500))
    text = f"Intro paragraph.\n\n```\n{code}\n```\n\nOutro."

    chunks = split_message(text, limit=1000)

    assert len(chunks) > 5
    assert_valid_chunks(text, chunks, 1000)


def test_split_cuts_very_long_lines_and_handles_empty_text() -> None:
    assert split_message("") == []
    chunks = split_message("word " * 2000, limit=500)
    assert_valid_chunks("word " * 2000, chunks, 500)
    with pytest.raises(ValueError):
        split_message("x", limit=5)


def test_split_invariants_hold_on_random_texts() -> None:
    rng = random.Random(1234)
    pieces = ["plain words here", FENCE, "```python", "x" * 700, "😀 𝔘 中文", "", "<@U1> &amp;", "- list item"]
    for _ in range(200):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(1, 60)))
        limit = rng.choice([50, 200, 3000])
        chunks = split_message(text, limit=limit)
        assert all(0 < len(chunk) <= limit for chunk in chunks)
        assert all(chunk.count(FENCE) % 2 == 0 for chunk in chunks if not chunk.startswith("```python"))
        assert non_space_content(chunks) == non_space_content([text]), "nothing lost, added or reordered"


def non_space_content(chunks: list[str]) -> str:
    """The characters of `chunks`, in order, without fences (the splitter closes and reopens code blocks)
    and without whitespace (it cuts lines, at spaces where it can)."""
    return "".join("".join(chunk.replace(FENCE, "").split()) for chunk in chunks)


def test_message_blocks() -> None:
    assert message_blocks("*hi*") == [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    with pytest.raises(ValueError):
        message_blocks("x" * 3001)
