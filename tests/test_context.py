"""Which memory goes into a prompt (`agent.context.build_prompt`): unit tests, no storage, no model."""

from __future__ import annotations

import pytest

from agent.context import TRUNCATION_MARK, ContextLimits, Turn, build_prompt
from agent.tokens import count_tokens, message_tokens

SYSTEM = "You are a test."


def conversation(count: int) -> list[Turn]:
    """`count` turns, user and assistant alternating, oldest first; each content is distinct."""
    return [Turn("user" if index % 2 == 0 else "assistant", f"turn number {index}") for index in range(count)]


def contents(messages: list[dict[str, str]]) -> list[str]:
    return [message["content"] for message in messages]


def test_system_prompt_first_then_turns_oldest_first_with_roles() -> None:
    turns = conversation(5)

    prompt = build_prompt(SYSTEM, turns, ContextLimits())

    assert prompt.messages == [
        {"role": "system", "content": SYSTEM},
        *({"role": turn.role, "content": turn.content} for turn in turns),
    ]
    assert prompt.input_truncated is False


def test_message_count_bounds_the_turns_including_the_new_one() -> None:
    turns = conversation(10)

    prompt = build_prompt(SYSTEM, turns, ContextLimits(max_messages=3))

    assert contents(prompt.messages) == [SYSTEM, *(turn.content for turn in turns[-3:])]


def budget_for(turns: list[Turn]) -> int:
    """The token budget that holds exactly the system prompt and `turns`."""
    return message_tokens(SYSTEM) + sum(message_tokens(turn.content) for turn in turns)


def test_token_budget_keeps_the_newest_turns_that_fit() -> None:
    turns = conversation(6)

    exact = build_prompt(SYSTEM, turns, ContextLimits(max_tokens=budget_for(turns[-3:])))
    one_short = build_prompt(SYSTEM, turns, ContextLimits(max_tokens=budget_for(turns[-3:]) - 1))

    assert contents(exact.messages) == [SYSTEM, *(turn.content for turn in turns[-3:])]
    assert contents(one_short.messages) == [SYSTEM, *(turn.content for turn in turns[-2:])]


def test_an_old_turn_is_never_kept_past_a_newer_one_that_did_not_fit() -> None:
    """The prompt is a contiguous stretch of the conversation: no holes the model would misread."""
    short_old, long_middle, short_new, newest = (
        Turn("user", "short"),
        Turn("assistant", "long " * 200),
        Turn("user", "also short"),
        Turn("user", "the question"),
    )
    limits = ContextLimits(max_tokens=budget_for([short_old, short_new, newest]))

    prompt = build_prompt(SYSTEM, [short_old, long_middle, short_new, newest], limits)

    assert contents(prompt.messages) == [SYSTEM, "also short", "the question"]


def test_the_new_message_is_kept_even_when_nothing_else_fits() -> None:
    turns = conversation(4)

    prompt = build_prompt(SYSTEM, turns, ContextLimits(max_tokens=1))

    assert contents(prompt.messages) == [SYSTEM, turns[-1].content]
    assert prompt.input_truncated is False


def test_an_oversized_new_message_is_cut_with_a_visible_mark() -> None:
    giant = "word " * 500
    turns = [*conversation(2), Turn("user", giant)]

    prompt = build_prompt(SYSTEM, turns, ContextLimits(max_input_tokens=50))

    newest = prompt.messages[-1]["content"]
    assert prompt.input_truncated is True
    assert newest.endswith(TRUNCATION_MARK)
    kept = newest.removesuffix(TRUNCATION_MARK)
    assert giant.startswith(kept) and count_tokens(kept) == 50
    assert contents(prompt.messages)[1:-1] == [turn.content for turn in turns[:-1]]


def test_the_cut_new_message_counts_against_the_budget_as_cut() -> None:
    """A giant message is charged at its cut size, so it does not push out the whole history."""
    history = conversation(2)
    giant = Turn("user", "word " * 5_000)
    cut = build_prompt(SYSTEM, [giant], ContextLimits(max_input_tokens=50)).messages[-1]["content"]
    limits = ContextLimits(max_input_tokens=50, max_tokens=budget_for([*history, Turn("user", cut)]))

    prompt = build_prompt(SYSTEM, [*history, giant], limits)

    assert contents(prompt.messages) == [SYSTEM, *(turn.content for turn in history), cut]


def test_a_prompt_needs_the_new_message() -> None:
    with pytest.raises(ValueError, match="at least the new message"):
        build_prompt(SYSTEM, [], ContextLimits())


@pytest.mark.parametrize("field", ["max_messages", "max_tokens", "max_input_tokens"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        ContextLimits(**{field: 0})
