"""Which memory goes into a prompt: the newest turns of a conversation, bounded twice.

The bound is a number of messages and a token budget, oldest dropped first, so that a long
conversation never produces a prompt that the model refuses or that costs more than intended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.recall.prompt import recalled_message
from agent.recall.table import MemoryItem
from agent.tokens import message_tokens, truncate_to_tokens

TRUNCATION_MARK = "\n\n[…message truncated: it was longer than the agent reads]"


@dataclass(frozen=True)
class Turn:
    """One message of a conversation as the model sees it."""

    role: str
    content: str
    request_id: str = ""


@dataclass(frozen=True)
class ContextLimits:
    """How much memory a prompt carries.

    `max_messages` and `max_tokens` bound the remembered turns (the system prompt counts against the
    tokens); `max_input_tokens` bounds the newest user message alone, so that one giant message cannot
    push everything else out or past the model's window.
    """

    max_messages: int = 20
    max_tokens: int = 8_000
    max_input_tokens: int = 4_000
    max_recall_tokens: int = 1_500

    def __post_init__(self) -> None:
        if min(self.max_messages, self.max_tokens, self.max_input_tokens, self.max_recall_tokens) < 1:
            raise ValueError("context limits must be positive")


@dataclass(frozen=True)
class Prompt:
    """The messages sent to the model, and whether the newest message had to be cut."""

    messages: list[dict[str, Any]]
    input_truncated: bool
    recalled: list[MemoryItem] = field(default_factory=list)  # in the prompt, numbered from 1


def fit_input(text: str, limits: ContextLimits) -> tuple[str, bool]:
    """The newest user message as the model reads it: cut to `max_input_tokens` with a visible mark."""
    cut = truncate_to_tokens(text, limits.max_input_tokens)
    if cut == text:
        return text, False
    return cut + TRUNCATION_MARK, True


def build_prompt(
    system_prompt: str, recent: Sequence[Turn], limits: ContextLimits, recalled: Sequence[MemoryItem] = ()
) -> Prompt:
    """System prompt plus the newest turns that fit, then the recalled memory that still fits.

    `recent` is oldest first and ends with the new message, which is always kept; the recent turns
    come first in the budget, recalled items (best first) get what is left, up to `max_recall_tokens`.
    """
    if not recent:
        raise ValueError("a prompt needs at least the new message")
    *history, newest = recent[-limits.max_messages :]
    newest_content, truncated = fit_input(newest.content, limits)
    budget = limits.max_tokens - message_tokens(system_prompt) - message_tokens(newest_content)
    kept: list[Turn] = []
    for turn in reversed(history):
        cost = message_tokens(turn.content)
        if cost > budget:
            break
        budget -= cost
        kept.append(turn)
    turns = [*reversed(kept), Turn(newest.role, newest_content)]
    messages = [{"role": "system", "content": system_prompt}]
    recall_text, used = recalled_message(recalled, min(max(budget, 0), limits.max_recall_tokens))
    if recall_text is not None:
        messages.append({"role": "system", "content": recall_text})
    messages += [{"role": turn.role, "content": turn.content} for turn in turns]
    return Prompt(messages, truncated, used)
