"""Turning a stored Slack request into an agent answer posted back in Slack.

This is the bot's core, independent of how requests arrive (HTTP or Socket Mode). Each request is
queued behind the earlier ones of its channel (`ChannelQueues`) and answered as a coroutine whose
steps each run where they belong:
- Pixeltable work (reading memory, unless the agent keeps the conversation's newest turns; storing
  the exchange) on the one storage thread: Pixeltable writes serialize process-wide anyway, and one
  thread keeps one warm catalog; a new channel's tables are created on a catalog thread of their own
  (~0.35 s each), so that forty new channels at once don't hold up the channels that have tables;
- the model call on the event loop, holding no thread while it waits;
- Slack and inbox calls on a pool of I/O threads.
The answer is posted before it is stored. When the agent keeps its conversations' recent turns, the
storing (and the closing of the inbox row) runs in the channel's storage queue, in order, while the
channel's next request is answered, and waits for a lull in the other answers (`bot.lull`);
otherwise it stays inside the channel's turn, so that the next request reads it from storage. Any
failure becomes a friendly message for the user and a log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from agent import Agent, Request, TurnKind
from agent.agent import Outcome, PreparedTurn
from agent.errors import PixelbotError
from agent.tool_use import TurnWatcher
from bot.acknowledgements import STORAGE_DOWN
from bot.channels import ChannelAgents, ChannelKey
from bot.feedback import feedback_block
from bot.files import SlackFiles, shared_question
from bot.inbox import Inbox, InboxItem, RequestKind, Status
from bot.log_format import in_thread, request_context
from bot.lull import Lull
from bot.metrics import Metrics
from bot.progress import ThreadStatus
from bot.queues import ChannelQueues
from bot.replies import (
    MENTION_USAGE,
    TRUNCATED_NOTE,
    Blocks,
    already_posted,
    answer_messages,
    friendly_error,
    post_message,
    replace_message,
    respond_in_channel,
    tool_echo,
)
from bot.shared_order import SharedOrder
from bot.sources import SourceLinks, footer_block
from bot.streaming import AnswerStream, StreamTarget
from bot.workspaces import in_workspace

logger = logging.getLogger(__name__)

T = TypeVar("T")

Intake = Callable[[InboxItem], Awaitable[None]]
"""What becomes of an inbox item that is not a request (a listened message, an edit, a vote)."""


def _status(outcome: Outcome) -> Status:
    return Status.FAILED if outcome.error else Status.ANSWERED


@dataclass
class _Bookkeeping:
    """What remains to be done for a request once its answer is delivered (or has failed)."""

    item: InboxItem
    status: Status = Status.FAILED
    agent: Agent | None = None
    outcome: Outcome | None = None
    ended_at: float = 0.0  # when the answer was delivered (`Lull.now`)

    def store(self, agent: Agent, outcome: Outcome) -> None:
        self.agent, self.outcome = agent, outcome


class Answerer:
    """Answers stored requests with the channel's agent, in order per channel."""

    def __init__(
        self,
        agents: ChannelAgents,
        client: WebClient,
        queues: ChannelQueues,
        storage_queues: ChannelQueues,
        inbox: Inbox,
        storage: Executor,
        catalog: Executor,
        io: Executor,
        links: SourceLinks | None = None,
        intakes: Mapping[RequestKind, Intake] | None = None,
        streaming: bool = True,
        viewed_channel: Callable[[InboxItem], ChannelKey | None] | None = None,
        metrics: Metrics | None = None,
        files: SlackFiles | None = None,
        order: SharedOrder | None = None,
        lull: Lull | None = None,
    ) -> None:
        self.agents = agents
        self.client = client
        self.queues = queues
        self.storage_queues = storage_queues
        self.inbox = inbox
        self._storage_pool = storage
        self._catalog_pool = catalog
        self._io_pool = io
        self.links = links  # for the Sources line of answers that cite recalled memory
        self.intakes = dict(intakes or {})  # listened messages, edits, deletions, votes
        self.streaming = streaming  # answers shown as they are written, where Slack allows it
        self.viewed_channel = viewed_channel  # the channel beside an assistant thread (its memory may be recalled)
        self.metrics = metrics or Metrics()
        self.files = files  # a message's files, read for its answer (`bot.files`)
        self.order = order  # with other processes on the database: channels answered by their lease holder
        self.lull = lull or Lull()  # bookkeeping waits while other answers are being prepared or delivered

    def submit(self, item: InboxItem, resume: bool = False) -> None:
        """Queue `item` behind its channel's earlier requests; `resume` for one taken over after a crash.
        What is not a request (a listened message, an edit, a deletion, a vote) goes to its intake.
        With other processes on the database (`order`), the channel's lease holder takes its stored
        requests in arrival order instead, whichever process received them."""
        if self.order is not None:
            self.order.submit(item.channel, self.handle)
        else:
            self.queues.submit(item.channel, partial(self.handle, item, resume))

    async def handle(self, item: InboxItem, resume: bool = False) -> None:
        """Answer a request, or hand what is not one to its intake."""
        intake = self.intakes.get(item.kind)
        if item.kind.is_request or intake is None:
            await self.answer(item, resume)
        else:
            await self._take_in(intake, item)

    def upkeep(self) -> None:
        """The caretaker's round, beyond taking over orphans: channels nobody answers get answered."""
        if self.order is not None:
            self.order.upkeep(self.handle)

    def pending(self) -> int:
        """Requests being answered or waiting for it, and answered turns not yet stored."""
        return self.queues.pending() + self.storage_queues.pending()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every request is answered and stored; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending():  # an answer queues its storing, so the answers are waited for first
            for queues in (self.queues, self.storage_queues):
                if not queues.wait_idle(None if deadline is None else max(0.0, deadline - time.monotonic())):
                    return False
        return True

    def late_arrival(self, item: InboxItem, stored: bool) -> None:
        """A request stored only after its acknowledgement said storage failed: answer it after all,
        or tell a `/tool` user (whose ack promised an answer) that it was lost."""
        if stored:
            self.submit(item)
        elif item.kind is RequestKind.TOOL:
            WebhookClient(item.response_url).send(response_type="ephemeral", text=STORAGE_DOWN)

    async def answer(self, item: InboxItem, resume: bool = False) -> None:
        """Answer `item`; its bookkeeping (storing the exchange, closing the inbox row) follows.

        When the channel's agent keeps its recent turns, the bookkeeping runs in the channel's storage
        queue (in order, behind the channel's earlier turns), so the channel's next request is answered
        meanwhile; otherwise the next request must read this turn from storage, so it waits for it.
        """
        with (
            request_context(item.request_id, item.channel_id),
            in_workspace(item.team_id),
        ):  # every log line, every call
            turn = _Bookkeeping(item)
            try:
                with self.lull.busy():
                    turn.status = await self._answer(item, resume, turn)
                self.metrics.delivered(item)
            except SlackApiError as error:
                logger.error("could not deliver the answer in %s: %s", item.channel_id, error.response.get("error"))
                turn.status = Status.UNDELIVERABLE
            except Exception:
                logger.exception("unexpected error answering %s in %s", item.request_id, item.channel_id)
            if turn.agent is not None and turn.agent.keeps_recent:
                turn.ended_at = self.lull.now()
                self.storage_queues.submit(item.channel, partial(self._book, turn, in_a_lull=True))
            else:
                await self._book(turn)

    async def _take_in(self, intake: Intake, item: InboxItem) -> None:
        """`intake(item)`, its log lines naming `item`; counted once taken in."""
        with request_context(item.request_id, item.channel_id), in_workspace(item.team_id):
            status = Status.FAILED
            try:
                await intake(item)
                status = Status.ANSWERED
            finally:
                self.metrics.ended(item, status)

    async def _book(self, turn: _Bookkeeping, in_a_lull: bool = False) -> None:
        """Store the turn (if there is one to store), then close its inbox row with how it ended;
        `in_a_lull`: store it once no other answer is being prepared or delivered (or soon:
        `Lull.patience`), one turn at a time (`Lull.turn`)."""
        item = turn.item
        with request_context(item.request_id, item.channel_id), in_workspace(item.team_id):  # a storage-queue job
            if turn.agent is not None and turn.outcome is not None:
                try:
                    async with self.lull.turn(turn.ended_at) if in_a_lull else nullcontext():
                        await self._store(turn.agent, turn.outcome)
                except Exception:
                    logger.exception("could not store the answer to %s in %s", item.request_id, item.channel_id)
                    turn.agent.forget_recent(item.conversation)
                    turn.status = Status.FAILED
            self.metrics.ended(item, turn.status)
            try:
                await self._io(partial(self.inbox.close, item.request_id, turn.status))
            except Exception:
                logger.exception("could not close request %s; it will be taken over later", item.request_id)

    async def _answer(self, item: InboxItem, resume: bool, bookkeeping: _Bookkeeping) -> Status:
        if item.kind is not RequestKind.TOOL and not item.text and not item.files:
            await self._deliver(item, [MENTION_USAGE])
            return Status.ANSWERED
        agent = self.agents.cached(item.channel)
        if agent is None:  # opening an agent reads the catalog
            agent = await self._storage(partial(self.agents.get, item.channel))
        request = Request(
            item.text or shared_question(item),
            TurnKind.TOOL if item.kind is RequestKind.TOOL else TurnKind.CHAT,
            item.user,
            item.conversation,
            item.memory_request_id,
            resume,
            item.received_at,
            await self._viewed_memory(item),
        )
        prepare = partial(agent.prepare, request)
        try:
            if agent.needs_storage(request):
                turn = await self._after_stores(item, partial(self._storage, prepare))
            else:
                turn = await self._io(prepare)
        except PixelbotError as error:
            logger.warning("cannot answer %s in %s: %s", item.request_id, item.channel_id, error)
            await self._deliver(item, [friendly_error(error)])
            return Status.FAILED
        if resume and await self._delivered_before(item):
            if turn.stored_answer is None:  # the question, at least, is kept
                agent.forget_recent(item.conversation)
                bookkeeping.store(agent, Outcome(turn, []))
            return Status.ANSWERED
        if turn.stored_answer is not None:
            await self._deliver(item, answer_messages(turn.stored_answer), [feedback_block(item.memory_request_id)])
            return Status.ANSWERED
        if self.files is not None and item.files:  # fetched only for an answer still to be given
            attachments = await self.files.attach(agent, item)
            turn = replace(turn, request=replace(turn.request, attachments=attachments))
        return await self._think_and_deliver(agent, item, turn, bookkeeping)

    async def _think_and_deliver(
        self, agent: Agent, item: InboxItem, turn: PreparedTurn, bookkeeping: _Bookkeeping
    ) -> Status:
        """Think, showing progress (the thread's status, or an hourglass) and streaming the answer
        where Slack allows it; then deliver it."""
        if item.kind is RequestKind.TOOL:  # answered through the response_url: nothing to stream into
            with self.lull.resting():  # waiting on the model
                outcome = await agent.think(turn)
            self.metrics.thought(outcome)
            bookkeeping.store(agent, outcome)
            await self._deliver_outcome(item, outcome)
            return _status(outcome)
        status = ThreadStatus(self.client, self._io, item.channel_id, item.stream_thread, item.ts)
        # a stream that an earlier try (before a restart) started is completed in place, not restarted
        stream = self._stream(item, status) if self.streaming and not item.reply_ts else None
        async with status:
            watcher = TurnWatcher(on_text=stream.feed if stream else None, on_tools=status.using)
            with self.lull.resting():
                outcome = await agent.think(turn, watcher)
            self.metrics.thought(outcome)
            bookkeeping.store(agent, outcome)  # stored even if Slack refuses the answer
            await self._deliver_outcome(item, outcome, stream)
        return _status(outcome)

    async def _viewed_memory(self, item: InboxItem) -> tuple[tuple[str, str], ...]:
        """The memory of the channel the user views beside an assistant thread, if it has an agent."""
        if self.viewed_channel is None or item.kind is not RequestKind.DIRECT or not item.thread_ts:
            return ()
        try:
            channel = await self._io(partial(self.viewed_channel, item))
        except Exception:
            logger.exception("could not read the assistant thread's context for %s", item.request_id)
            return ()
        return ((channel.agent_name, channel.channel_id),) if channel is not None else ()

    def _stream(self, item: InboxItem, status: ThreadStatus) -> AnswerStream:
        target = StreamTarget(item.channel_id, item.stream_thread, item.team_id, item.user)
        return AnswerStream(self.client, self._io, target, partial(self._stream_started, item, status))

    async def _stream_started(self, item: InboxItem, status: ThreadStatus, ts: str) -> None:
        """The answer shows: no status is needed any more, and a restart must complete this message."""
        status.shown()
        await self._io(partial(self.inbox.note_reply, item.request_id, ts))

    async def _deliver_outcome(self, item: InboxItem, outcome: Outcome, stream: AnswerStream | None = None) -> None:
        """The answer (or the friendly error): finishing its stream if it streamed, else posted."""
        if outcome.error is not None:
            logger.warning("answer to %s in %s failed: %s", item.request_id, item.channel_id, outcome.error)
            await self._deliver(item, [friendly_error(outcome.error)])
            return
        if outcome.cut_off is not None:
            logger.warning("answer to %s in %s was cut off: %s", item.request_id, item.channel_id, outcome.cut_off)
        answer = outcome.answer()
        markdown = f"{answer.text}\n\n{TRUNCATED_NOTE}" if answer.input_truncated else answer.text
        closing = self._closing(item, outcome)
        if stream is not None:
            finished = await stream.finish(markdown, closing, item.request_id)
            if finished.delivered:
                if finished.overflow:
                    chunks = answer_messages(finished.overflow)
                    post = partial(
                        post_message, self.client, item.channel_id, item.stream_thread, chunks, item.request_id
                    )
                    await self._io(post)
                return
        await self._deliver(item, answer_messages(markdown), closing)

    def _closing(self, item: InboxItem, outcome: Outcome) -> Blocks:
        """The blocks under an answer: the Sources line if it cites recalled messages, the feedback buttons."""
        blocks: Blocks = []
        footer = self.links.footer(item.channel_id, outcome.sources()) if self.links is not None else None
        if footer:
            blocks.append(footer_block(footer))
        blocks.append(feedback_block(item.memory_request_id))
        return blocks

    async def _delivered_before(self, item: InboxItem) -> bool:
        """Whether an earlier try (before a crash) delivered the answer already, so it is not sent twice."""
        if item.kind is RequestKind.TOOL:
            return False  # checked by `Inbox.start_delivery` when delivering
        thread = item.stream_thread if item.reply_ts else item.reply_thread
        posted = await self._io(partial(already_posted, self.client, item.channel_id, thread, item.ts, item.request_id))
        if posted:
            logger.info("request %s was answered before the restart; not posting again", item.request_id)
        return posted

    async def _deliver(self, item: InboxItem, chunks: list[str], closing: Blocks | None = None) -> None:
        """Post `chunks`: through the response_url for `/tool`; into the interrupted stream's message if
        an earlier try (before a restart) started one; else as new messages."""
        if item.kind is RequestKind.TOOL:
            if not await self._io(partial(self.inbox.start_delivery, item.request_id)):
                logger.warning(
                    "the answer to %s may have been sent before a restart; not sending again", item.request_id
                )
                return
            echo = tool_echo(item.user, item.text)
            await self._io(partial(respond_in_channel, item.response_url, chunks, echo, closing))
        elif item.reply_ts:
            thread = item.stream_thread
            replace = partial(
                replace_message, self.client, item.channel_id, thread, item.reply_ts, chunks, item.request_id, closing
            )
            await self._io(replace)
        else:
            await self._io(
                partial(post_message, self.client, item.channel_id, item.reply_thread, chunks, item.request_id, closing)
            )

    async def _after_stores(self, item: InboxItem, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, once the channel's turns still being stored are stored (a read of storage must
        see them): queued behind them in the channel's storage queue."""
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def job() -> None:
            with request_context(item.request_id, item.channel_id):  # a job of the storage queue's
                try:
                    result.set_result(await read())
                except Exception as error:
                    result.set_exception(error)

        self.storage_queues.submit(item.channel, job)
        with self.lull.needed():  # the turns it waits for are stored without waiting for a lull
            return await result

    async def _store(self, agent: Agent, outcome: Outcome) -> None:
        """Store a finished turn; the first one of a new channel creates its tables on the catalog thread."""
        pool = self._storage_pool if agent.exists else self._catalog_pool
        await in_thread(pool, partial(agent.finish, outcome))

    async def _storage(self, function: Callable[[], T]) -> T:
        return await in_thread(self._storage_pool, function)

    async def _io(self, function: Callable[[], T]) -> T:
        return await in_thread(self._io_pool, function)
