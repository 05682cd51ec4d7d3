"""`Agent`: one persistent LLM agent in its own Pixeltable directory.

The public API is the tutorial's (`Agent(name, system_prompt, model=..., tools=...)`, `.chat()`,
`.tool_call()`), fixed: re-opening reuses the tables, each call answers the row it inserted, the model
sees the conversation's recent memory, tool use runs for several rounds, and model failures raise
`AgentError` with the user's message already stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pixeltable as pxt

from agent.context import ContextLimits, Turn, build_prompt
from agent.errors import AgentError, ModelFailure
from agent.pipeline import assistant_message, message_text, run_row
from agent.store import open_agent_tables
from agent.tool_use import use_tools

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_MAX_TOOL_ROUNDS = 3


class TurnKind(StrEnum):
    """Which entry point a turn came through."""

    CHAT = "chat"
    TOOL = "tool"


@dataclass(frozen=True)
class Answer:
    """The agent's answer, and whether the user's message was cut to fit the context."""

    text: str
    input_truncated: bool = False


class Agent:
    """A chat agent whose memory and pipelines live in the Pixeltable directory `name`."""

    def __init__(
        self,
        name: str,
        system_prompt: str,
        model: str = DEFAULT_MODEL,
        tools: pxt.func.Tools | None = None,
        *,
        limits: ContextLimits | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    ) -> None:
        self.name = name
        self.system_prompt = system_prompt
        self.model = model
        self.limits = limits or ContextLimits()
        self.max_tool_rounds = max_tool_rounds
        self.tables = open_agent_tables(name, model, tools)

    # -- the seed's API ------------------------------------------------------------------------------
    def chat(self, message: str, *, user: str = "", thread_ts: str = "") -> str:
        """Answer `message` with the conversation's memory as context."""
        return self.respond(message, TurnKind.CHAT, user=user, thread_ts=thread_ts).text

    def tool_call(self, prompt: str, *, user: str = "", thread_ts: str = "") -> str:
        """Answer `prompt`, letting the model call the agent's tools first."""
        return self.respond(prompt, TurnKind.TOOL, user=user, thread_ts=thread_ts).text

    # -- the full entry point ------------------------------------------------------------------------
    def respond(
        self,
        message: str,
        kind: TurnKind,
        *,
        user: str = "",
        thread_ts: str = "",
        request_id: str | None = None,
        resume: bool = False,
    ) -> Answer:
        """Store the message, ask the model, store and return the answer.

        The user's message is stored first, so a failing model loses nothing. With `resume`, a request
        interrupted earlier (same `request_id`) continues where it stopped: a stored answer is returned
        as it is, and a stored question is not stored twice.
        """
        if kind is TurnKind.TOOL and self.tables.tools is None:
            raise AgentError("this agent has no tools", ModelFailure.REJECTED)
        request_id = request_id or uuid.uuid4().hex
        stored = self.turns_of(request_id) if resume else {}
        if "assistant" in stored:
            return Answer(stored["assistant"])
        if "user" not in stored:
            self.remember(request_id, "user", message, kind, user=user, thread_ts=thread_ts)
        prompt = build_prompt(self.system_prompt, self.recent_turns(thread_ts), self.limits)
        if kind is TurnKind.TOOL:
            text = use_tools(self._tools_round(request_id), prompt.messages, self.max_tool_rounds)
        else:
            text = self._chat_once(request_id, prompt.messages)
        self.remember(request_id, "assistant", text, kind, user=user, thread_ts=thread_ts)
        return Answer(text, prompt.input_truncated)

    # -- memory --------------------------------------------------------------------------------------
    def remember(self, request_id: str, role: str, content: str, kind: TurnKind, *, user: str, thread_ts: str) -> None:
        """Append one message to the agent's memory."""
        self.tables.memory.insert(
            [
                {
                    "request_id": request_id,
                    "role": role,
                    "content": content,
                    "timestamp": datetime.now(UTC),
                    "user": user,
                    "thread_ts": thread_ts,
                    "kind": kind.value,
                }
            ]
        )

    def turns_of(self, request_id: str) -> dict[str, str]:
        """The stored messages of one request, by role."""
        memory = self.tables.memory
        rows = memory.where(memory.request_id == request_id).select(memory.role, memory.content).collect()
        return {row["role"]: row["content"] for row in rows}

    def recent_turns(self, thread_ts: str) -> list[Turn]:
        """The newest `max_messages` turns of one conversation, oldest first.

        A thread's conversation also holds the exchange that started it: the turn whose `request_id`
        is the thread's `thread_ts` (Slack threads are named after their first message). Served by
        indexes with a limit, so the cost does not grow with the size of the memory.
        """
        memory = self.tables.memory
        in_conversation = memory.thread_ts == thread_ts
        if thread_ts:
            in_conversation = in_conversation | (memory.request_id == thread_ts)
        rows = (
            memory.where(in_conversation)
            .order_by(memory.timestamp, asc=False)
            .limit(self.limits.max_messages)
            .select(memory.role, memory.content)
            .collect()
        )
        return [Turn(row["role"], row["content"]) for row in reversed(list(rows))]

    # -- pipelines -----------------------------------------------------------------------------------
    def _chat_once(self, request_id: str, messages: list[dict[str, Any]]) -> str:
        row = run_row(
            self.tables.chat,
            {"request_id": request_id, "timestamp": datetime.now(UTC), "messages": messages},
        )
        return message_text(assistant_message(row["response"]))

    def _tools_round(self, request_id: str) -> Any:
        tools_table = self.tables.tools
        assert tools_table is not None

        def run_round(round_number: int, messages: list[dict[str, Any]], options: dict[str, str]) -> dict[str, Any]:
            row = {
                "request_id": request_id,
                "round": round_number,
                "timestamp": datetime.now(UTC),
                "messages": messages,
                "options": dict(options),
            }
            return run_row(tools_table, row)

        return run_round
