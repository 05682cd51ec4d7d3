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
The answer is posted before it is stored (still inside the channel's turn, so the next message sees
it). Any failure becomes a friendly message for the user and a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
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

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Answerer:
    """Answers stored requests with the channel's agent, in order per channel."""

    def __init__(
        self,
        agents: ChannelAgents,
        client: WebClient,
        queues: ChannelQueues,
        inbox: Inbox,
        storage: Executor,
        catalog: Executor,
        io: Executor,
    ) -> None:
        self.agents = agents
        self.client = client
        self.queues = queues
        self.inbox = inbox
        self._storage_pool = storage
        self._catalog_pool = catalog
        self._io_pool = io

    def submit(self, item: InboxItem, resume: bool = False) -> None:
        """Queue `item` behind its channel's earlier requests; `resume` for one taken over after a crash."""
        self.queues.submit(item.channel, partial(self.answer, item, resume))

    def late_arrival(self, item: InboxItem, stored: bool) -> None:
        """A request stored only after its acknowledgement said storage failed: answer it after all,
        or tell a `/tool` user (whose ack promised an answer) that it was lost."""
        if stored:
            self.submit(item)
        elif item.kind is RequestKind.TOOL:
            WebhookClient(item.response_url).send(response_type="ephemeral", text=STORAGE_DOWN)

    async def answer(self, item: InboxItem, resume: bool = False) -> None:
        status = Status.FAILED
        try:
            status = await self._answer(item, resume)
        except SlackApiError as error:
            logger.error("could not deliver the answer in %s: %s", item.channel_id, error.response.get("error"))
            status = Status.UNDELIVERABLE
        except Exception:
            logger.exception("unexpected error answering %s in %s", item.request_id, item.channel_id)
        finally:
            try:
                await self._io(partial(self.inbox.close, item.request_id, status))
            except Exception:
                logger.exception("could not close request %s; it will be taken over later", item.request_id)

    async def _answer(self, item: InboxItem, resume: bool) -> Status:
        if item.kind is not RequestKind.TOOL and not item.text:
            await self._deliver(item, [MENTION_USAGE])
            return Status.ANSWERED
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
            turn = await (self._storage(prepare) if agent.needs_storage(request) else self._io(prepare))
        except PixelbotError as error:
            logger.warning("cannot answer %s in %s: %s", item.request_id, item.channel_id, error)
            await self._deliver(item, [friendly_error(error)])
            return Status.FAILED
        if resume and await self._delivered_before(item):
            if turn.stored_answer is None:
                await self._store(agent, Outcome(turn, []))
            return Status.ANSWERED
        if turn.stored_answer is not None:
            await self._deliver(item, answer_messages(turn.stored_answer))
            return Status.ANSWERED
        return await self._think_and_deliver(agent, item, turn)

    async def _think_and_deliver(self, agent: Agent, item: InboxItem, turn: PreparedTurn) -> Status:
        progress: contextlib.AbstractAsyncContextManager[object] = contextlib.nullcontext()
        if item.kind is not RequestKind.TOOL:
            progress = ProgressReaction(self.client, self._io, item.channel_id, item.ts)
        async with progress:
            outcome = await agent.think(turn)
            try:
                await self._deliver(item, self._messages(item, outcome))
            finally:  # stored even if Slack refuses the answer
                await self._store(agent, outcome)
        return Status.FAILED if outcome.error else Status.ANSWERED

    @staticmethod
    def _messages(item: InboxItem, outcome: Outcome) -> list[str]:
        if outcome.error is not None:
            logger.warning("answer to %s in %s failed: %s", item.request_id, item.channel_id, outcome.error)
            return [friendly_error(outcome.error)]
        answer = outcome.answer()
        return answer_messages(answer.text, answer.input_truncated)

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

    async def _deliver(self, item: InboxItem, chunks: list[str]) -> None:
        if item.kind is RequestKind.TOOL:
            if not await self._io(partial(self.inbox.start_delivery, item.request_id)):
                logger.warning(
                    "the answer to %s may have been sent before a restart; not sending again", item.request_id
                )
                return
            echo = tool_echo(item.user, item.text)
            await self._io(partial(respond_in_channel, item.response_url, chunks, echo))
        else:
            await self._io(
                partial(post_message, self.client, item.channel_id, item.reply_thread, chunks, item.request_id)
            )

    async def _store(self, agent: Agent, outcome: Outcome) -> None:
        """Store a finished turn; the first one of a new channel creates its tables on the catalog thread."""
        pool = self._storage_pool if agent.exists else self._catalog_pool
        await asyncio.get_running_loop().run_in_executor(pool, agent.finish, outcome)

    async def _storage(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._storage_pool, function)

    async def _io(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, function)
