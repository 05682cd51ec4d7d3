"""One turn of conversation with the model: calls, tool rounds, and insisting on words.

The model may call tools for up to `max_rounds` rounds; their results go back as `tool` messages, one
per call, paired by call ID. After that, or when the model answers with nothing usable (small local
models sometimes send empty content and no tool call under `tool_choice: "auto"`), one more round asks
for words only (`tool_choice: "none"`) before the user is shown an error. Every call, failed or not, is
logged in `calls` for the channel's tables. A `TurnWatcher` follows the turn as it happens: with
`on_text`, every call is streamed and its words passed on as they come; `on_tools` hears which tools
are about to run (for a status line such as "is using calculate…").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.errors import AgentError, ModelFailure
from agent.model import ModelClient, TextListener, assistant_message, message_text
from agent.toolbox import Toolbox


@dataclass(frozen=True)
class TurnWatcher:
    """Who follows a turn while it runs (both called on the event loop; neither may block)."""

    on_text: TextListener | None = None
    on_tools: Callable[[list[str]], None] | None = None


@dataclass
class ModelCall:
    """One call to the model as it is stored: what was sent, what came back or why not."""

    round: int
    request: dict[str, Any]
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    response: dict[str, Any] | None = None
    error: str | None = None
    tool_results: list[str] | None = None
    seconds: float = 0.0


async def converse(
    model: ModelClient,
    request: dict[str, Any],
    toolbox: Toolbox | None,
    max_rounds: int,
    calls: list[ModelCall],
    watcher: TurnWatcher | None = None,
) -> str:
    """The model's answer in words to `request` (model and messages), using `toolbox` if given."""
    watcher = watcher or TurnWatcher()
    messages: list[dict[str, Any]] = request["messages"]
    retried = False
    for round_number in range(1, max_rounds + 3):
        words_only = toolbox is None or round_number > max_rounds or retried
        body = _body(request, messages, toolbox, words_only)
        message = await _call(model, body, round_number, calls, watcher.on_text)
        tool_calls = message.get("tool_calls") or []
        if tool_calls and toolbox is not None and not words_only:
            if watcher.on_tools is not None:
                watcher.on_tools([str((call.get("function") or {}).get("name", "")) for call in tool_calls])
            results = list(await asyncio.gather(*(toolbox.run(call) for call in tool_calls)))
            calls[-1].tool_results = results
            messages = [*messages, replayable(message), *tool_messages(tool_calls, results)]
            continue
        text = message_text(message)
        if text is not None:
            return text
        if retried:
            break
        retried = True  # nothing usable: one more round, asking for words
    raise AgentError("the model returned an empty answer", ModelFailure.BAD_RESPONSE)


def _body(
    request: dict[str, Any], messages: list[dict[str, Any]], toolbox: Toolbox | None, words_only: bool
) -> dict[str, Any]:
    body = {**request, "messages": messages}
    if toolbox:
        body |= {"tools": toolbox.schemas(), "tool_choice": "none" if words_only else "auto"}
    return body


async def _call(
    model: ModelClient, body: dict[str, Any], round_number: int, calls: list[ModelCall], on_text: TextListener | None
) -> dict[str, Any]:
    call = ModelCall(round_number, body)
    calls.append(call)
    try:
        completion = await (model.stream(body, on_text) if on_text else model.complete(body))
        call.response, call.seconds = completion.response, completion.seconds
        return assistant_message(completion.response)
    except AgentError as error:
        call.error = f"{error.failure.value}: {error}"
        raise


def replayable(message: dict[str, Any]) -> dict[str, Any]:
    """The assistant's tool-calling message, reduced to what the API accepts back in `messages`."""
    return {"role": "assistant", "content": message.get("content"), "tool_calls": message["tool_calls"]}


def tool_messages(calls: list[dict[str, Any]], results: list[str]) -> list[dict[str, Any]]:
    """One `tool` message per call, in call order, answering it by ID."""
    return [
        {"role": "tool", "tool_call_id": str(call.get("id", "")), "content": result}
        for call, result in zip(calls, results, strict=True)
    ]
