"""Multi-round tool use: the model calls tools, reads their results, and answers in words.

Each round is one row of the agent's `tools` table, whose computed columns call the model with the
tools and run the calls it makes (`invoke_tools`). Results go back to the model as `tool` messages,
matched to the calls by position: Pixeltable groups results by tool name, in call order.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from agent.pipeline import assistant_message, message_text

AUTO = {"tool_choice": "auto"}
WORDS_ONLY = {"tool_choice": "none"}

RunRound = Callable[[int, list[dict[str, Any]], dict[str, str]], dict[str, Any]]


def use_tools(run_round: RunRound, messages: list[dict[str, Any]], max_rounds: int) -> str:
    """Let the model call tools for up to `max_rounds` rounds, then insist on a text answer.

    `run_round(round, messages, options)` runs one row through the tools pipeline and returns it.
    """
    for round_number in range(1, max_rounds + 2):
        options = AUTO if round_number <= max_rounds else WORDS_ONLY
        row = run_round(round_number, messages, options)
        message = assistant_message(row["response"])
        calls = message.get("tool_calls") or []
        if not calls or options is WORDS_ONLY:
            return message_text(message)
        error = (row.get("tool_results:md") or {}).get("errormsg")
        messages = [*messages, replayable(message), *tool_messages(calls, row.get("tool_results"), error)]
    raise AssertionError("unreachable: the last round insists on words")


def replayable(message: dict[str, Any]) -> dict[str, Any]:
    """The assistant's tool-calling message, reduced to what the API accepts back in `messages`."""
    return {"role": "assistant", "content": message.get("content"), "tool_calls": message["tool_calls"]}


def tool_messages(
    calls: list[dict[str, Any]], results: dict[str, Any] | None, error: str | None
) -> list[dict[str, Any]]:
    """One `tool` message per call, with its result or a readable error the model can explain."""
    seen: Counter[str] = Counter()
    messages = []
    for call in calls:
        name = call.get("function", {}).get("name", "")
        index = seen[name]
        seen[name] += 1
        content = error_text(error) if error else result_text(name, index, results or {})
        messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": content})
    return messages


def result_text(name: str, index: int, results: dict[str, Any]) -> str:
    outputs = results.get(name)
    if outputs is None or index >= len(outputs):
        return f"Error: there is no tool named {name!r}."
    output = outputs[index]
    return output if isinstance(output, str) else json.dumps(output, default=str)


def error_text(error: str) -> str:
    return f"Error: the tool call could not run ({error}). Check the tool name and arguments."
