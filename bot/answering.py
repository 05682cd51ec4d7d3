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
channel's next request is answered; otherwise it stays inside the channel's turn, so that the next
request reads it from storage. Any failure becomes a friendly message for the user and a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from agent import Agent, Request, TurnKind
from agent.agent import Outcome, PreparedTurn
from agent.errors import PixelbotError
from bot.channels import ChannelAgents
from bot.inbox import Inbox, InboxItem, RequestKind, Status
from bot.listening import ContextIntake
from bot.progress import ProgressReaction
from bot.queues import ChannelQueues
from bot.replies import (
    MENTION_USAGE,
    STORAGE_DOWN,
    already_posted,
    answer_messages,
    friendly_error,
    post_message,
    respond_in_channel,
    tool_echo,
)
from bot.sources import SourceLinks

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Bookkeeping:
    """What remains to be done for a request once its answer is delivered (or has failed)."""

    item: InboxItem
    status: Status = Status.FAILED
    agent: Agent | None = None
    outcome: Outcome | None = None

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
        intake: ContextIntake | None = None,
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
        self.intake = intake  # listened messages, edits and deletions

    def submit(self, item: InboxItem, resume: bool = False) -> None:
        """Queue `item` behind its channel's earlier requests; `resume` for one taken over after a crash.
        What is not a request (a listened message, an edit, a deletion) goes to the context intake."""
        if item.kind.is_request or self.intake is None:
            self.queues.submit(item.channel, partial(self.answer, item, resume))
        else:
            self.queues.submit(item.channel, partial(self.intake.take_in, item))

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
        turn = _Bookkeeping(item)
        try:
            turn.status = await self._answer(item, resume, turn)
        except SlackApiError as error:
            logger.error("could not deliver the answer in %s: %s", item.channel_id, error.response.get("error"))
            turn.status = Status.UNDELIVERABLE
        except Exception:
            logger.exception("unexpected error answering %s in %s", item.request_id, item.channel_id)
        if turn.agent is not None and turn.agent.keeps_recent:
            self.storage_queues.submit(item.channel, partial(self._book, turn))
        else:
            await self._book(turn)

    async def _book(self, turn: _Bookkeeping) -> None:
        """Store the turn (if there is one to store), then close its inbox row with how it ended."""
        item = turn.item
        if turn.agent is not None and turn.outcome is not None:
            try:
                await self._store(turn.agent, turn.outcome)
            except Exception:
                logger.exception("could not store the answer to %s in %s", item.request_id, item.channel_id)
                turn.agent.forget_recent(item.conversation)
                turn.status = Status.FAILED
        try:
            await self._io(partial(self.inbox.close, item.request_id, turn.status))
        except Exception:
            logger.exception("could not close request %s; it will be taken over later", item.request_id)

    async def _answer(self, item: InboxItem, resume: bool, bookkeeping: _Bookkeeping) -> Status:
        if item.kind is not RequestKind.TOOL and not item.text:
            await self._deliver(item, [MENTION_USAGE])
            return Status.ANSWERED
        agent = self.agents.cached(item.channel)
        if agent is None:  # opening an agent reads the catalog
            agent = await self._storage(partial(self.agents.get, item.channel))
        request = Request(
            item.text,
            TurnKind.TOOL if item.kind is RequestKind.TOOL else TurnKind.CHAT,
            item.user,
            item.conversation,
            item.memory_request_id,
            resume,
            item.received_at,
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
            await self._deliver(item, answer_messages(turn.stored_answer))
            return Status.ANSWERED
        return await self._think_and_deliver(agent, item, turn, bookkeeping)

    async def _think_and_deliver(
        self, agent: Agent, item: InboxItem, turn: PreparedTurn, bookkeeping: _Bookkeeping
    ) -> Status:
        progress: contextlib.AbstractAsyncContextManager[object] = contextlib.nullcontext()
        if item.kind is not RequestKind.TOOL:
            progress = ProgressReaction(self.client, self._io, item.channel_id, item.ts)
        async with progress:
            outcome = await agent.think(turn)
            bookkeeping.store(agent, outcome)  # stored even if Slack refuses the answer
            await self._deliver(item, self._messages(item, outcome), self._sources(item, outcome))
        return Status.FAILED if outcome.error else Status.ANSWERED

    @staticmethod
    def _messages(item: InboxItem, outcome: Outcome) -> list[str]:
        if outcome.error is not None:
            logger.warning("answer to %s in %s failed: %s", item.request_id, item.channel_id, outcome.error)
            return [friendly_error(outcome.error)]
        answer = outcome.answer()
        return answer_messages(answer.text, answer.input_truncated)

    def _sources(self, item: InboxItem, outcome: Outcome) -> str | None:
        return self.links.footer(item.channel_id, outcome.sources()) if self.links is not None else None

    async def _delivered_before(self, item: InboxItem) -> bool:
        """Whether an earlier try (before a crash) delivered the answer already, so it is not sent twice."""
        if item.kind is RequestKind.TOOL:
            return False  # checked by `Inbox.start_delivery` when delivering
        posted = await self._io(
            partial(already_posted, self.client, item.channel_id, item.reply_thread, item.ts, item.request_id)
        )
        if posted:
            logger.info("request %s was answered before the restart; not posting again", item.request_id)
        return posted

    async def _deliver(self, item: InboxItem, chunks: list[str], footer: str | None = None) -> None:
        if item.kind is RequestKind.TOOL:
            if not await self._io(partial(self.inbox.start_delivery, item.request_id)):
                logger.warning(
                    "the answer to %s may have been sent before a restart; not sending again", item.request_id
                )
                return
            echo = tool_echo(item.user, item.text)
            await self._io(partial(respond_in_channel, item.response_url, chunks, echo, footer))
        else:
            thread = item.reply_thread
            await self._io(partial(post_message, self.client, item.channel_id, thread, chunks, item.request_id, footer))

    async def _after_stores(self, item: InboxItem, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, once the channel's turns still being stored are stored (a read of storage must
        see them): queued behind them in the channel's storage queue."""
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def job() -> None:
            try:
                result.set_result(await read())
            except Exception as error:
                result.set_exception(error)

        self.storage_queues.submit(item.channel, job)
        return await result

    async def _store(self, agent: Agent, outcome: Outcome) -> None:
        """Store a finished turn; the first one of a new channel creates its tables on the catalog thread."""
        pool = self._storage_pool if agent.exists else self._catalog_pool
        await asyncio.get_running_loop().run_in_executor(pool, agent.finish, outcome)

    async def _storage(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._storage_pool, function)

    async def _io(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, function)
