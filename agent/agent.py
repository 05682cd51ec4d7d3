"""`Agent`: one persistent LLM agent in its own Pixeltable directory.

The public API is the tutorial's (`Agent(name, system_prompt, model=..., tools=...)`, `.chat()`,
`.tool_call()`). Inside, a turn has three steps, so that a server can run each where it belongs:
`prepare` reads memory (storage), `think` talks to the model and runs tools (async, holds nothing
else while it waits), `finish` stores the exchange and every model call (storage). `respond` runs the
three in a row for synchronous callers.

The user's message is stored in `finish` together with the answer, or alone if the model failed: a
server keeps the request durably elsewhere until then (pixelbot's inbox), and one write instead of
two per answer matters under load.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa

from agent.attachments import ATTACHED_TOKENS, Attachments, with_images, without_image_data
from agent.context import ContextLimits, Prompt, Turn, build_prompt
from agent.errors import AgentError, EmbeddingError, ModelFailure, NoToolsError
from agent.governance import scrub_calls, scrub_pattern
from agent.loop import run_sync
from agent.memory_version import MemoryVersion
from agent.model import ModelClient, TextListener
from agent.recall import MemoryItem, Recall, memory_item, memory_key
from agent.recall.embeddings import similarity
from agent.recall.prompt import cited
from agent.recent import RecentTurns
from agent.store import (
    MEMORY_SCHEMA,
    AgentTables,
    creating,
    existing_memory,
    feedback_counts,
    find_agent_tables,
    open_agent_tables,
)
from agent.tool_use import ModelCall, TurnWatcher, converse
from agent.toolbox import Toolbox
from agent.versions import StoredVersions, purge_kept_versions

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_MAX_TOOL_ROUNDS = 3
MAX_RANKED_PIECES = 512  # pieces of attached documents embedded while the user waits
IMAGE_REFUSED = "The model could not read the image, so I answered without looking at it."
CUT_OFF_NOTE = "_(My answer was cut off here: the model stopped responding. Please ask again.)_"


class TurnKind(StrEnum):
    """Which entry point a turn came through."""

    CHAT = "chat"
    TOOL = "tool"


@dataclass(frozen=True)
class Answer:
    """The agent's answer, and whether the user's message was cut to fit the context."""

    text: str
    input_truncated: bool = False


@dataclass(frozen=True)
class Request:
    """A message for the agent. `request_id` names the turn in memory; `resume` continues an earlier try."""

    message: str
    kind: TurnKind = TurnKind.CHAT
    user: str = ""
    thread_ts: str = ""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    resume: bool = False
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    recall_also: tuple[tuple[str, str], ...] = ()  # (agent, channel ID): other memory the asker may see
    attachments: Attachments | None = None  # the message's files (`agent.attachments`)


@dataclass(frozen=True)
class ChannelMessage:
    """A message of the channel stored as context, not as a request: `kind` says how it came."""

    ts: str
    text: str
    user: str
    at: datetime
    thread_ts: str = ""
    kind: str = "listened"  # or "imported"
    user_name: str = ""  # the author's display name, if known (an export names its users)


@dataclass(frozen=True)
class PreparedTurn:
    """A request with its prompt, or with the answer stored by an earlier try (`stored_answer`)."""

    request: Request
    prompt: Prompt | None
    stored_answer: str | None = None
    question_stored: bool = False
    history: list[Turn] = field(default_factory=list)


@dataclass
class Outcome:
    """What the model made of a turn: the answer or the error, and every call it took."""

    turn: PreparedTurn
    calls: list[ModelCall]
    text: str | None = None
    error: AgentError | None = None
    answered_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # before it is posted or stored
    recalled: list[MemoryItem] = field(default_factory=list)  # in the prompt, numbered [1], [2], …
    question_vector: Any = None  # the question's embedding, if recall made one
    cut_off: AgentError | None = None  # the model failed midway: `text` is what was shown, and a note

    def sources(self) -> list[MemoryItem]:
        """The recalled messages the answer cites ([n]), for a Sources line."""
        return cited(self.text, self.recalled) if self.text else []

    def answer(self) -> Answer:
        """The answer, or the `AgentError` raised."""
        if self.error is not None:
            raise self.error
        assert self.text is not None
        truncated = self.turn.prompt.input_truncated if self.turn.prompt else False
        return Answer(self.text, truncated)


class Agent:
    """A chat agent whose memory and model calls live in the Pixeltable directory `name`.

    The tables are looked up when the agent is made and created with its first stored turn, so that
    a brand-new channel's first answer does not wait for table creation.
    """

    def __init__(
        self,
        name: str,
        system_prompt: str,
        model: str = DEFAULT_MODEL,
        tools: pxt.func.Tools | None = None,
        *,
        limits: ContextLimits | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        model_client: ModelClient | None = None,
        sole_writer: bool = False,
        recall: Recall | None = None,
    ) -> None:
        """`sole_writer`: this object is the only one writing the agent's memory (one bot process on its
        own database), so the newest turns of each conversation are kept in memory instead of read back
        from storage for every turn. Otherwise they are kept too, but used only while the memory's
        stored version says nobody else wrote it (`agent.memory_version`). `recall`: every prompt also
        carries the most relevant older memory of the whole channel (and what is stored is indexed for it)."""
        self.name = name
        self.system_prompt = system_prompt
        self.model = model
        self.toolbox = Toolbox(tools) if tools is not None else None
        self.limits = limits or ContextLimits()
        self.max_tool_rounds = max_tool_rounds
        self.model_client = model_client or ModelClient()
        self._sole_writer = sole_writer
        self._recent = RecentTurns(self.limits.max_messages)
        self._version: MemoryVersion | None = None  # with other writers: what the kept turns are as of
        self._versioned = False  # whether `_version` was looked for (None then: read every turn)
        self.recall = recall
        self._tables = find_agent_tables(name)

    @property
    def tables(self) -> AgentTables:
        """The agent's tables, created if they don't exist yet."""
        if self._tables is None:
            self._tables = open_agent_tables(self.name)
        return self._tables

    @property
    def exists(self) -> bool:
        return self._tables is not None

    def reconfigure(self, *, system_prompt: str, model: str, toolbox: Toolbox | None) -> None:
        """Use these from the next turn on (a channel's settings changed); a turn already thinking keeps
        what it started with, and what is stored stays as it was: each model call records its model
        and tools."""
        self.system_prompt, self.model, self.toolbox = system_prompt, model, toolbox

    # -- the seed's API ------------------------------------------------------------------------------
    def chat(self, message: str, *, user: str = "", thread_ts: str = "") -> str:
        """Answer `message` with the conversation's memory as context."""
        return self.respond(message, TurnKind.CHAT, user=user, thread_ts=thread_ts).text

    def tool_call(self, prompt: str, *, user: str = "", thread_ts: str = "") -> str:
        """Answer `prompt`, letting the model call the agent's tools first."""
        return self.respond(prompt, TurnKind.TOOL, user=user, thread_ts=thread_ts).text

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
        """Prepare, think and finish in a row. With `resume`, a request interrupted earlier (same
        `request_id`) continues: a stored answer is returned as it is, a stored question not stored twice."""
        request = Request(message, kind, user, thread_ts, request_id or uuid.uuid4().hex, resume)
        turn = self.prepare(request)
        if turn.stored_answer is not None:
            return Answer(turn.stored_answer)
        outcome = run_sync(self.think(turn))
        self.finish(outcome)
        return outcome.answer()

    # -- the three steps -----------------------------------------------------------------------------
    def needs_storage(self, request: Request) -> bool:
        """Whether `prepare` reads storage for `request` (else it is quick and safe on any thread)."""
        # with other writers, the memory's version is read first (storage, if quick)
        return request.resume or not self._sole_writer or not self._recent.knows(request.thread_ts)

    def prepare(self, request: Request) -> PreparedTurn:
        """Read what the turn needs from memory (storage; no model call)."""
        if request.kind is TurnKind.TOOL and not self.toolbox:
            raise NoToolsError("this agent has no tools")
        stored = self.turns_of(request.request_id) if request.resume else {}
        if "assistant" in stored:
            return PreparedTurn(request, None, stored_answer=stored["assistant"])
        history = [turn for turn in self.recent_turns(request.thread_ts) if turn.request_id != request.request_id]
        prompt = build_prompt(self.system_prompt, [*history, Turn("user", request.message)], self.limits)
        return PreparedTurn(request, prompt, question_stored="user" in stored, history=history)

    async def think(self, turn: PreparedTurn, watcher: TurnWatcher | None = None) -> Outcome:
        """Ask the model (and run tools); never raises for the model's failures, they are in the outcome.

        With a `watcher`, the answer is streamed to it as it is written. If the model fails after some
        of it was shown, the answer is what was shown plus `CUT_OFF_NOTE`, so that what is stored says
        what the user saw."""
        assert turn.prompt is not None, "a turn with a stored answer needs no thinking"
        calls: list[ModelCall] = []
        toolbox = self.toolbox if turn.request.kind is TurnKind.TOOL else None
        prompt, vector = await self._with_recall(turn)
        request = {"model": self.model, "messages": prompt.messages}
        shown: list[str] = []
        if watcher is not None and watcher.on_text is not None:
            watcher = _showing(watcher, watcher.on_text, shown)
        images = turn.request.attachments.images if turn.request.attachments else []
        request["messages"] = with_images(prompt.messages, images)
        notes = list(turn.request.attachments.notes) if turn.request.attachments else []
        try:
            try:
                text = await converse(self.model_client, request, toolbox, self.max_tool_rounds, calls, watcher)
            except AgentError as error:
                if not images or error.failure is not ModelFailure.REJECTED or "".join(shown):
                    raise
                request["messages"] = prompt.messages  # the model refused the images: once more without them
                notes.append(IMAGE_REFUSED)
                text = await converse(self.model_client, request, toolbox, self.max_tool_rounds, calls, watcher)
        except AgentError as error:
            partial = "".join(shown)  # as shown, so that the streamed message can end with the note
            outcome = Outcome(turn, calls, error=error)
            if partial.strip():
                outcome = Outcome(turn, calls, text=f"{partial}\n\n{CUT_OFF_NOTE}", cut_off=error)
        else:
            outcome = Outcome(turn, calls, text=_with_notes(text, notes))
        outcome.recalled, outcome.question_vector = prompt.recalled, vector
        self._keep(outcome)
        return outcome

    async def _with_recall(self, turn: PreparedTurn) -> tuple[Prompt, Any]:
        """The turn's prompt with the channel's relevant older memory, if this agent recalls; the
        question's vector comes back too, to be stored with it."""
        assert turn.prompt is not None
        request = turn.request
        chunks = request.attachments.chunks if request.attachments else []
        if self.recall is None and not chunks:
            return turn.prompt, None
        items: list[MemoryItem] = []
        vector = None
        if self.recall is not None:
            exclude = {memory_key(t.request_id, t.role) for t in turn.history if t.request_id}
            exclude |= {memory_key(request.request_id, role) for role in ("user", "assistant")}
            exclude |= {chunk.key for chunk in chunks}  # shown as attached, not twice
            if not self.exists:  # a channel without tables has nothing to recall: no catalog lookups for it
                self.recall.new_agent(self.name)
            found = await self.recall.find(self.name, request.message, exclude)
            items, vector = list(found.items), found.vector
            for agent, channel_id in request.recall_also:  # e.g. the channel beside an assistant thread
                also = await self.recall.find(agent, request.message, set())
                items += [replace(item, channel_id=channel_id) for item in also.items]
            items.sort(key=lambda item: item.score, reverse=True)
        attached, vector = await self._attached(chunks, request.message, vector)
        if not items and not attached:
            return turn.prompt, vector
        limits = self.limits
        if attached:
            limits = replace(limits, max_recall_tokens=limits.max_recall_tokens + ATTACHED_TOKENS)
        recent = [*turn.history, Turn("user", request.message)]
        return build_prompt(self.system_prompt, recent, limits, [*attached, *items]), vector

    async def _attached(self, chunks: list[MemoryItem], question: str, vector: Any) -> tuple[list[MemoryItem], Any]:
        """The attached documents' pieces, most relevant to `question` first, and the question's vector.

        Each piece is embedded now (it is indexed for recall with that vector, so it is embedded once):
        the answer needs its ranking. Without recall, or when the embedding server fails, the pieces
        come in document order."""
        if not chunks or self.recall is None:
            return chunks, vector
        chunks, later = chunks[:MAX_RANKED_PIECES], chunks[MAX_RANKED_PIECES:]
        if later:  # a very long document: its first pieces are ranked now, the rest indexed for recall
            self.recall.remember(self.name, later)
        texts = [chunk.embedded_text for chunk in chunks]
        try:
            vectors = await self.recall.embedder.embed(texts if vector is not None else [question, *texts])
        except EmbeddingError:
            self.recall.remember(self.name, chunks)  # embedded later by the indexer
            return chunks, vector
        if vector is None:
            vector, vectors = vectors[0], vectors[1:]
        self.recall.remember(self.name, chunks, {chunk.key: v for chunk, v in zip(chunks, vectors, strict=True)})
        scored = [replace(chunk, score=similarity(vector, v)) for chunk, v in zip(chunks, vectors, strict=True)]
        return sorted(scored, key=lambda chunk: chunk.score, reverse=True), vector

    def _keep(self, outcome: Outcome) -> None:
        """The turn goes to the conversation's kept turns as soon as it is thought, so that a sole
        writer's next turn can start while this one is still being stored (`finish`)."""
        request = outcome.turn.request
        turns = [] if outcome.turn.question_stored else [Turn("user", request.message, request.request_id)]
        if outcome.text is not None:
            turns.append(Turn("assistant", outcome.text, request.request_id))
        self._recent.add(request.thread_ts, request.request_id, turns)

    @property
    def keeps_recent(self) -> bool:
        """Whether the next turn's prompt may come from kept turns before `finish` has stored this one
        (with other writers it is read, or checked, after: `finish` tells whether it was the only write)."""
        return self._sole_writer

    def forget_recent(self, thread_ts: str) -> None:
        """Read the conversation from storage next time (after a turn could not be stored, say)."""
        self._recent.forget(thread_ts)

    def forget_recent_all(self) -> None:
        """Read every conversation from storage next time."""
        self._recent.clear()

    def finish(self, outcome: Outcome) -> None:
        """Store the question (unless stored before), the answer if there is one, and every model call
        (on the turn's last row), in one insert."""
        request = outcome.turn.request
        rows = [] if outcome.turn.question_stored else [self._memory_row(request, "user", request.message)]
        if outcome.text is not None:
            rows.append(self._memory_row(request, "assistant", outcome.text, outcome.answered_at))
        if rows and outcome.calls:
            rows[-1]["calls"] = [self._call_record(call) for call in outcome.calls]
        if rows:
            self.tables.memory.insert(rows)
            self._wrote()
            self._index(rows, outcome.question_vector)

    # -- memory --------------------------------------------------------------------------------------
    def remember(self, request_id: str, role: str, content: str, kind: TurnKind, *, user: str, thread_ts: str) -> None:
        """Append one message to the agent's memory."""
        request = Request(content, kind, user, thread_ts, request_id)
        row = self._memory_row(request, role, content)
        self.tables.memory.insert([row])
        self._wrote()
        self._index([row])
        self._recent.add(thread_ts, request_id, [Turn(role, content, request_id)])

    def absorb(self, messages: list[ChannelMessage]) -> int:
        """Store channel messages that were not addressed to the agent (imported or listened to) as
        context, each once: a message whose ts is in memory already is skipped. How many were new."""
        if not messages:
            return 0
        memory = self.tables.memory
        wanted = sorted({message.ts for message in messages})
        found = memory.where(memory.request_id.isin(wanted)).select(memory.request_id).collect()
        known = {row["request_id"] for row in found}
        fresh = list({m.ts: m for m in messages if m.ts not in known}.values())
        rows = [self._channel_row(message) for message in fresh]
        if rows:
            memory.insert(rows)
            self._wrote()
            self._index(rows, names={m.ts: m.user_name for m in fresh if m.user_name})
        return len(rows)

    def take_memory_of(self, stray: str) -> int:
        """Store the memory of agent directory `stray` (this agent's conversation, kept under another
        key by an earlier version) in this agent's memory, each message once, then remove `stray`;
        how many messages were new. Run again after an interruption, it stores nothing twice."""
        theirs = existing_memory(stray)
        if theirs is None:
            return 0
        columns = [name for name in MEMORY_SCHEMA if name in theirs.columns()]
        rows = [dict(row) for row in theirs.select(*[theirs[name] for name in columns]).collect()]
        memory = self.tables.memory
        known = {(row["request_id"], row["role"]) for row in memory.select(memory.request_id, memory.role).collect()}
        fresh = [row for row in rows if (row["request_id"], row["role"]) not in known]
        if fresh:
            memory.insert(fresh)
            self._index(fresh)
        with creating():
            pxt.drop_dir(stray, force=True, if_not_exists="ignore")
        self._lose_track()
        return len(fresh)

    def note(self, message: ChannelMessage) -> None:
        """A channel message goes to its conversation's kept turns before it is stored (`absorb`), so
        the next answer in that conversation sees it."""
        self._recent.add(message.thread_ts, message.ts, [Turn("user", message.text, message.ts)])

    def edit(self, ts: str, text: str) -> bool:
        """A message of the channel was edited in Slack: memory and recall hold its new text."""
        memory, where = self._message_at(ts)
        if memory is None:
            return False
        columns = (memory.user, memory.thread_ts, memory.timestamp, memory.content)
        rows = list(memory.where(where).select(*columns).collect())
        if not rows:
            return False
        if all(row["content"] == text for row in rows):
            return True  # Slack also sends `message_changed` for a new reply count: nothing to rewrite or re-embed
        memory.update({"content": text}, where=where)
        self._wrote()
        row = rows[0]
        if self.recall is not None:
            item = memory_item(ts, "user", text, row["user"], row["thread_ts"], row["timestamp"])
            self.recall.remember(self.name, [item], new=False)
        self.forget_recent(row["thread_ts"])
        self.forget_recent(ts)  # the thread it may have started holds it too
        return True

    def erase(self, ts: str) -> bool:
        """A message of the channel was deleted in Slack: it is gone from memory and recall too."""
        memory, where = self._message_at(ts)
        if memory is None:
            return False
        threads = [row["thread_ts"] for row in memory.where(where).select(memory.thread_ts).collect()]
        if not threads:
            return False
        deleted = memory.delete(where=where).num_rows  # none: someone else deleted it meanwhile
        self._wrote(changed=deleted > 0)
        purge_kept_versions(memory, self.name, "request_id", [ts])  # its edits, and old versions of the answer
        if self.recall is not None:
            self.recall.forget(self.name, [memory_key(ts, "user")])
        self.forget_recent(threads[0])
        self.forget_recent(ts)  # the thread it may have started holds it too
        return True

    def forget_thread(self, thread_ts: str) -> int:
        """Delete a thread's messages (and the message that started it) from memory and recall."""
        if self._tables is None:
            return 0
        memory = self._tables.memory
        return self._forget_where((memory.thread_ts == thread_ts) | (memory.request_id == thread_ts))

    def forget_everything(self) -> int:
        """Delete the whole memory of the channel (the tables stay), and its recall index."""
        if self._tables is None:
            return 0
        memory = self._tables.memory
        return self._forget_where(memory.timestamp != None)  # noqa: E711 (every row)

    def forget_before(self, cutoff: datetime) -> int:
        """Delete every message stored before `cutoff` (with its model calls and votes, on the same
        rows) from memory and recall; how many. Retention: the conversation continues without them."""
        if self._tables is None:
            return 0
        return self._forget_where(self._tables.memory.timestamp < cutoff)

    def _forget_where(self, where: Any) -> int:
        """Delete the memory rows matching `where`, and their recall entries; how many."""
        assert self._tables is not None, "the callers return 0 for an agent without tables"
        memory = self._tables.memory
        rows = memory.where(where).select(memory.request_id, memory.role).collect()
        keys = [memory_key(row["request_id"], row["role"]) for row in rows]
        if not keys:
            return 0
        memory.delete(where=where)
        purge_kept_versions(memory, self.name, "request_id", {row["request_id"] for row in rows})
        if self.recall is not None:
            self.recall.forget(self.name, keys)
        self._lose_track()
        return len(keys)

    def scrub_quotes(self, texts: list[str]) -> int:
        """Replace every quotation of `texts` in the stored model calls (and the kept versions of
        them) by `[deleted]`: a file removed from the agent must not live on in the prompts that
        carried its pieces. How many rows changed."""
        pattern = scrub_pattern(texts)
        if self._tables is None or pattern is None:
            return 0
        memory = self._tables.memory
        rows = memory.where(memory.calls != None).select(memory.request_id, memory.calls).collect()  # noqa: E711
        changed = sorted({row["request_id"] for row in rows if scrub_calls(row["calls"], pattern) != row["calls"]})
        for request_id in changed:
            where = (memory.request_id == request_id) & (memory.calls != None)  # noqa: E711
            for row in memory.where(where).select(memory.role, memory.calls).collect():
                scrubbed = scrub_calls(row["calls"], pattern)
                memory.update({"calls": scrubbed}, where=where & (memory.role == row["role"]))
                self._lose_track()  # the calls are not in the kept turns, but the version moved on
        store = StoredVersions.of(memory, self.name, ("calls",))
        if store is not None:
            store.rewrite_kept({"calls": lambda calls: scrub_calls(calls, pattern)}, dry_run=False)
        return len(changed)

    def rate(self, request_id: str, user: str, rating: str) -> bool:
        """`user` rated the answer to `request_id` ("good" or "bad"; a second click replaces the first);
        False if memory holds no such answer."""
        if self._tables is None:
            return False
        memory = self._tables.memory
        where = (memory.request_id == request_id) & (memory.role == "assistant")
        rows = list(memory.where(where).select(memory.feedback).collect())
        if not rows:
            return False
        votes = dict(rows[0]["feedback"] or {}) | {user: rating}
        memory.update({"feedback": votes}, where=where)
        self._wrote()
        return True

    def feedback_counts(self) -> tuple[int, int]:
        """How many 👍 and 👎 the agent's answers got."""
        if self._tables is None:
            return 0, 0
        return feedback_counts(self._tables.memory)

    def _message_at(self, ts: str) -> tuple[pxt.Table | None, Any]:
        """The memory table (None before anything is stored) and the condition selecting the user's
        message with Slack timestamp `ts` (a request's question, or a listened or imported message)."""
        if self._tables is None:
            return None, None
        memory = self._tables.memory
        return memory, (memory.request_id == ts) & (memory.role == "user")

    def _channel_row(self, message: ChannelMessage) -> dict[str, Any]:
        request = Request(message.text, TurnKind.CHAT, message.user, message.thread_ts, message.ts)
        row = self._memory_row(request, "user", message.text, message.at)
        row["kind"] = message.kind
        return row

    def _index(
        self, rows: list[dict[str, Any]], question_vector: Any = None, names: dict[str, str] | None = None
    ) -> None:
        """Hand rows just stored to recall (the question with the vector its recall computed, authors'
        names where known)."""
        if self.recall is None:
            return
        known = names or {}
        items = [
            replace(
                memory_item(r["request_id"], r["role"], r["content"], r["user"], r["thread_ts"], r["timestamp"]),
                user_name=known.get(r["request_id"], ""),
            )
            for r in rows
        ]
        vectors = {item.key: question_vector for item in items if item.role == "user" and question_vector is not None}
        self.recall.remember(self.name, items, vectors)

    def turns_of(self, request_id: str) -> dict[str, str]:
        """The stored messages of one request, by role."""
        if self._tables is None:
            return {}
        memory = self._tables.memory
        rows = memory.where(memory.request_id == request_id).select(memory.role, memory.content).collect()
        return {row["role"]: row["content"] for row in rows}

    def recent_turns(self, thread_ts: str) -> list[Turn]:
        """The newest `max_messages` turns of one conversation, oldest first.

        A thread's conversation also holds the exchange that started it: the turn whose `request_id`
        is the thread's `thread_ts` (Slack threads are named after their first message). Served by
        indexes with a limit, so the cost does not grow with the size of the memory; kept in memory
        afterwards while no one else writes it (`_kept_turns_exact`).
        """
        exact = self._kept_turns_exact()
        if exact and (cached := self._recent.get(thread_ts)) is not None:
            return cached
        turns = self._stored_turns(thread_ts)
        if exact:
            self._recent.put(thread_ts, turns)
        return turns

    def _kept_turns_exact(self) -> bool:
        """Whether the kept turns are all there is: always for a sole writer; with other writers, if
        nobody else wrote the memory since this process last read or wrote it (else they are dropped)."""
        if self._sole_writer:
            return True
        version = self._memory_version()
        if version is None:  # nothing is kept then: every turn is read
            return False
        if not version.unchanged():
            self._recent.clear()
        return True

    def _memory_version(self) -> MemoryVersion | None:
        if not self._versioned and self._tables is not None:
            try:
                self._version, self._versioned = MemoryVersion.of(self._tables.memory), True
            except sa.exc.DBAPIError as error:  # asked again next time
                logger.warning("could not read the memory's version of %s: %s", self.name, error)
        return self._version

    def _wrote(self, changed: bool = True) -> None:
        """After one write to memory (`changed`: it made a new version, which a delete that matched
        nothing does not): with other writers, drop the kept turns unless it was the only change since
        they were known."""
        if self._sole_writer or self._tables is None:
            return
        version = self._memory_version()
        if version is None or not changed or not version.wrote():
            self._lose_track()

    def _lose_track(self) -> None:
        """After writes that changed the memory's version more than once: read everything next time."""
        self._recent.clear()
        if self._version is not None:
            self._version.lose_track()

    def _stored_turns(self, thread_ts: str) -> list[Turn]:
        if self._tables is None:
            return []
        memory = self._tables.memory
        in_conversation = memory.thread_ts == thread_ts
        if thread_ts:
            in_conversation = in_conversation | (memory.request_id == thread_ts)
        rows = (
            memory.where(in_conversation)
            .order_by(memory.timestamp, asc=False)
            .limit(self.limits.max_messages)
            .select(memory.role, memory.content, memory.request_id)
            .collect()
        )
        return [Turn(row["role"], row["content"], row["request_id"]) for row in reversed(list(rows))]

    @staticmethod
    def _memory_row(request: Request, role: str, content: str, at: datetime | None = None) -> dict[str, Any]:
        return {
            "request_id": request.request_id,
            "role": role,
            "content": content,
            "timestamp": at or request.received_at,
            "user": request.user,
            "thread_ts": request.thread_ts,
            "kind": request.kind.value,
            "calls": None,
        }

    def _call_record(self, call: ModelCall) -> dict[str, Any]:
        return {
            "round": call.round,
            "timestamp": call.timestamp.isoformat(),
            "model": str(call.request.get("model", self.model)),
            "tools": [tool["function"]["name"] for tool in call.request.get("tools", [])],
            "request": without_image_data(call.request),
            "response": call.response,
            "error": call.error,
            "tool_results": call.tool_results,
            "seconds": call.seconds,
        }


def _with_notes(text: str, notes: list[str]) -> str:
    """The answer, then what could not be read of the message's files, in italics."""
    if not notes:
        return text
    return text + "\n\n" + "\n".join(f"_:warning: {note}_" for note in notes)


def _showing(watcher: TurnWatcher, on_text: TextListener, shown: list[str]) -> TurnWatcher:
    """`watcher`, with every piece of text it is shown also added to `shown`."""

    def show(piece: str) -> None:
        shown.append(piece)
        on_text(piece)

    return replace(watcher, on_text=show)
