"""Assembling pixelbot from its settings: Slack client, Bolt app, channel agents and the answerer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import pixeltable as pxt
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from agent import Agent, ContextLimits
from agent.runtime import configure_pixeltable, warm_up_thread
from bot.answering import Answerer
from bot.channels import ChannelAgents
from bot.dispatch import OrderedDispatcher
from bot.exports import Exporter
from bot.inbox import Caretaker, Inbox
from bot.listeners import register_listeners
from bot.settings import Settings
from tools import DEFAULT_TOOLS, load_tools

logger = logging.getLogger(__name__)


@dataclass
class PixelBot:
    """A configured bot: the Bolt app to serve and the machinery behind it."""

    settings: Settings
    app: App
    answerer: Answerer
    exporter: Exporter
    caretaker: Caretaker

    def resume_orphans(self) -> int:
        """Answer the requests that dead workers (this one's previous run, say) left unanswered."""
        orphans = self.answerer.inbox.take_over_orphans()
        for item in orphans:
            self.answerer.submit(item, resume=True)
        if orphans:
            logger.info("resuming %d unanswered request(s) of stopped workers", len(orphans))
        return len(orphans)

    def shutdown(self) -> None:
        self.caretaker.stop()
        self.answerer.dispatcher.shutdown(wait=True)
        self.answerer.inbox.shutdown()
        self.exporter.shutdown()


def slack_client(settings: Settings) -> WebClient:
    """A Web API client that retries rate limits, server errors and dropped connections a bounded number of times."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def open_channel_agent(settings: Settings, tools: pxt.func.Tools, name: str) -> Agent:
    return Agent(
        name,
        settings.system_prompt,
        model=settings.model,
        tools=tools,
        limits=ContextLimits(max_messages=settings.history),
    )


def create_bot(settings: Settings) -> PixelBot:
    """Build the bot; verifies the Slack token (`auth.test`) and loads the tools, so bad config fails here."""
    settings.export_to_environment()
    configure_pixeltable(model_retries=settings.model_retries, model_timeout=settings.model_timeout)
    tools = pxt.tools(*DEFAULT_TOOLS, *load_tools(settings.tool_modules))
    client = slack_client(settings)
    # process_before_response: listeners only store, check and queue, so they run in the request
    # thread before Bolt answers Slack, instead of Bolt polling every 10 ms for their ack
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret,
        process_before_response=True,
        logger=logging.getLogger("slack_bolt"),
    )
    agents = ChannelAgents(partial(open_channel_agent, settings, tools))
    answerer = Answerer(agents, client, OrderedDispatcher(settings.workers), Inbox())
    exporter = Exporter(client)
    register_listeners(app, answerer, exporter, settings.admins)
    caretaker = Caretaker(answerer.inbox, partial(answerer.submit, resume=True))
    bot = PixelBot(settings, app, answerer, exporter, caretaker)
    bot.resume_orphans()
    caretaker.start()
    answerer.dispatcher.run_on_every_thread(_warm_up_quietly)
    return bot


def _warm_up_quietly() -> None:
    try:
        warm_up_thread()
    except Exception:
        logger.warning("warm-up failed; the first answer will be slower", exc_info=True)
