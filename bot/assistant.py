"""The assistant panel: Slack's "Agents & AI Apps" split view, through Bolt's `Assistant` middleware.

- A new assistant thread gets a greeting and suggested prompts (`PIXELBOT_ASSISTANT_GREETING`,
  `PIXELBOT_ASSISTANT_PROMPTS`), sent from the I/O pool so the acknowledgement never waits for Slack.
- A question in the thread is a direct message (the panel's threads live in the user's DM with the
  bot), so it is stored before the ack and answered like one, with the user's own DM agent; the
  thread's first question becomes its title.
- Each thread remembers the channel the user was viewing when they opened it (`ThreadContexts`, a plain
  table beside the inbox, shared by every process; Bolt reads and writes it as its thread context
  store). The answer may then recall that channel's memory too: the user can see that channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.store import AssistantThreadContextStore
from slack_bolt.middleware import CustomMiddleware
from slack_bolt.middleware.assistant import Assistant
from slack_bolt.request.payload_utils import is_assistant_event
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.dialects import postgresql

from bot.answering import Answerer
from bot.channel_homes import ChannelHomes
from bot.channels import ChannelKey
from bot.database import create_tables, run_once_more_if_disconnected, single_statement_engine
from bot.inbox import InboxItem
from bot.listeners import NEW_REQUEST, Middleware
from bot.membership import Memberships

logger = logging.getLogger(__name__)

TITLE_LIMIT = 80  # characters of the first question shown as the thread's title


class ThreadContexts(AssistantThreadContextStore):
    """The channel each assistant thread was opened beside, and whether the thread has its title."""

    def __init__(self, engine: sa.Engine, namespace: str, homes: ChannelHomes | None = None) -> None:
        self._homes = homes  # the viewed channel's agent key
        metadata = sa.MetaData()
        self.table = sa.Table(
            f"{namespace}_assistant_threads",
            metadata,
            sa.Column("channel_id", sa.Text, primary_key=True),
            sa.Column("thread_ts", sa.Text, primary_key=True),
            sa.Column("context", postgresql.JSONB, nullable=False, server_default="{}"),
            sa.Column("titled", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        create_tables(engine, metadata)
        self._writes = single_statement_engine(engine.url, pool_size=2)

    def close(self) -> None:
        self._writes.dispose()

    def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        """Bolt's hook: the user moved to another channel with the panel open (or opened it)."""
        now = datetime.now(UTC)
        values = {"channel_id": channel_id, "thread_ts": thread_ts, "context": dict(context), "updated_at": now}
        statement = postgresql.insert(self.table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["channel_id", "thread_ts"], set_={"context": statement.excluded.context, "updated_at": now}
        )
        run_once_more_if_disconnected(self._writes, statement)

    def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        table = self.table
        query = sa.select(table.c.context).where((table.c.channel_id == channel_id) & (table.c.thread_ts == thread_ts))
        context = run_once_more_if_disconnected(self._writes, query)
        return AssistantThreadContext(context) if context and context.get("channel_id") else None

    def viewed_channel(self, item: InboxItem) -> ChannelKey | None:
        """The channel the user was viewing beside the assistant thread of `item`, if any."""
        if not item.thread_ts:
            return None
        context = self.find(channel_id=item.channel_id, thread_ts=item.thread_ts)
        if context is None:
            return None
        team = context.team_id or item.team_id
        try:
            key = ChannelKey(team, context.channel_id)
            return self._homes.key(team, key.channel_id) if self._homes is not None else key
        except ValueError:
            return None

    def viewed_by_member(self, memberships: Memberships) -> Callable[[InboxItem], ChannelKey | None]:
        """`viewed_channel`, but only a channel the asking user is a member of: the panel's context
        names whatever channel the user looks at, and its memory is for its members only."""

        def viewed_channel(item: InboxItem) -> ChannelKey | None:
            channel = self.viewed_channel(item)
            if channel is None or memberships.is_member(item.user, channel.channel_id):
                return channel
            logger.info("not recalling %s for %s, who is not a member", channel.channel_id, item.user)
            return None

        return viewed_channel

    def claim_title(self, channel_id: str, thread_ts: str) -> bool:
        """True once per thread: for its first question, which becomes the title."""
        table, now = self.table, datetime.now(UTC)
        statement = postgresql.insert(table).values(
            channel_id=channel_id, thread_ts=thread_ts, titled=True, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=["channel_id", "thread_ts"], set_={"titled": True}, where=table.c.titled.is_(False)
        )
        return run_once_more_if_disconnected(self._writes, statement.returning(table.c.channel_id)) is not None


class AssistantPanel:
    """What pixelbot does in the panel, besides answering: greet, suggest, title."""

    def __init__(
        self, client: WebClient, contexts: ThreadContexts, greeting: str, prompts: tuple[str, ...], io: Executor
    ) -> None:
        self.client, self.contexts, self.io = client, contexts, io
        self.greeting, self.prompts = greeting, prompts

    def greet(self, channel_id: str, thread_ts: str) -> None:
        try:
            self.client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=self.greeting)
            if self.prompts:
                prompts = [{"title": prompt, "message": prompt} for prompt in self.prompts]
                self.client.assistant_threads_setSuggestedPrompts(
                    channel_id=channel_id, thread_ts=thread_ts, prompts=prompts
                )
        except SlackApiError as error:
            logger.warning("could not greet in assistant thread %s: %s", thread_ts, error.response.get("error"))

    def title(self, item: InboxItem) -> None:
        """Title the thread after its first question."""
        try:
            if item.thread_ts and item.text and self.contexts.claim_title(item.channel_id, item.thread_ts):
                title = item.text if len(item.text) <= TITLE_LIMIT else item.text[: TITLE_LIMIT - 1].rstrip() + "…"
                self.client.assistant_threads_setTitle(
                    channel_id=item.channel_id, thread_ts=item.thread_ts, title=title
                )
        except SlackApiError as error:
            logger.info("could not title assistant thread %s: %s", item.thread_ts, error.response.get("error"))
        except Exception:
            logger.exception("could not title assistant thread %s", item.thread_ts)


class PanelAssistant(Assistant):
    """Bolt's `Assistant`, consulted only for the events it answers (assistant thread events, messages
    in assistant threads: Bolt's own test of a payload).

    - Edits and deletions in its threads go to pixelbot's message listener, which applies them to
      memory as everywhere; Bolt's `Assistant` would acknowledge them and drop them.
    - As a global middleware it would also run all of its listeners' matchers on every event, each
      building its listener's arguments: ~0.03 ms of Python (an eighth of Bolt's dispatch) for each
      message of a busy channel, which the panel never sees.
    """

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        if is_assistant_event(req.body):
            return super().process(req=req, resp=resp, next=next)
        return next()


def register_assistant(app: App, panel: AssistantPanel, store_message: Middleware, answerer: Answerer) -> None:
    """Attach the panel's listeners (Bolt's `Assistant` takes the DM thread messages it recognises)."""
    assistant = PanelAssistant(thread_context_store=panel.contexts)

    @assistant.thread_started
    def on_thread_started(payload: dict[str, Any]) -> None:
        thread = payload["assistant_thread"]
        context = thread.get("context") or {}
        if context.get("channel_id"):
            panel.contexts.save(channel_id=thread["channel_id"], thread_ts=thread["thread_ts"], context=context)
        panel.io.submit(panel.greet, thread["channel_id"], thread["thread_ts"])

    # the questions are stored before the ack, like other messages; `Assistant` takes (and extends) a
    # list of Middleware objects, though its annotation says one, and doesn't wrap plain functions
    storing = CustomMiddleware(app_name=app.name, func=store_message)

    @assistant.user_message(middleware=[storing])  # type: ignore[arg-type, untyped-decorator]
    def on_question(context: BoltContext) -> None:
        item = context.get(NEW_REQUEST)
        if item is not None:
            answerer.submit(item)
            panel.io.submit(panel.title, item)

    app.use(assistant)
