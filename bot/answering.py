"""Turning a Slack request into an agent answer posted back in Slack.

This is the bot's core, independent of how requests arrive (HTTP or Socket Mode): each request is
queued behind the earlier ones of its channel, answered by the channel's agent, and delivered; any
failure becomes a friendly message for the user and a log line.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from slack_sdk import WebClient

from agent import PixelbotError, TurnKind
from bot.channels import ChannelAgents, ChannelKey
from bot.dispatch import OrderedDispatcher
from bot.replies import (
    MENTION_USAGE,
    ProgressReaction,
    answer_messages,
    friendly_error,
    post_in_thread,
    respond_in_channel,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mention:
    """An @mention of the bot; answered in the mention's thread."""

    channel: ChannelKey
    user: str
    text: str
    ts: str
    thread_ts: str | None = None

    @property
    def reply_thread(self) -> str:
        return self.thread_ts or self.ts

    @property
    def conversation(self) -> str:
        """The memory conversation: the thread if inside one, else the channel's top level."""
        return self.thread_ts or ""


@dataclass(frozen=True)
class ToolRequest:
    """A `/tool` slash command; answered through its `response_url`."""

    channel: ChannelKey
    user: str
    text: str
    response_url: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def echo(self) -> str:
        return f"<@{self.user}> asked `/tool {self.text}`"


class Answerer:
    """Answers mentions and tool requests with the channel's agent, in order per channel."""

    def __init__(self, agents: ChannelAgents, client: WebClient, dispatcher: OrderedDispatcher) -> None:
        self.agents = agents
        self.client = client
        self.dispatcher = dispatcher

    def submit_mention(self, mention: Mention) -> None:
        self.dispatcher.submit(mention.channel, lambda: self.answer_mention(mention))

    def submit_tool_request(self, request: ToolRequest) -> None:
        self.dispatcher.submit(request.channel, lambda: self.answer_tool_request(request))

    def answer_mention(self, mention: Mention) -> None:
        channel = mention.channel.channel_id
        if not mention.text:
            post_in_thread(self.client, channel, mention.reply_thread, [MENTION_USAGE])
            return
        with ProgressReaction(self.client, channel, mention.ts):
            try:
                answer = self.agents.get(mention.channel).respond(
                    mention.text,
                    TurnKind.CHAT,
                    user=mention.user,
                    thread_ts=mention.conversation,
                    request_id=mention.ts,
                )
                chunks = answer_messages(answer.text, answer.input_truncated)
            except Exception as error:
                _log_failure(error, mention.channel)
                chunks = [friendly_error(error)]
            post_in_thread(self.client, channel, mention.reply_thread, chunks)

    def answer_tool_request(self, request: ToolRequest) -> None:
        try:
            answer = self.agents.get(request.channel).respond(
                request.text, TurnKind.TOOL, user=request.user, request_id=request.request_id
            )
            chunks = answer_messages(answer.text, answer.input_truncated)
        except Exception as error:
            _log_failure(error, request.channel)
            chunks = [friendly_error(error)]
        respond_in_channel(request.response_url, chunks, request.echo)


def _log_failure(error: Exception, channel: ChannelKey) -> None:
    if isinstance(error, PixelbotError):
        logger.warning("answer failed in %s: %s", channel.agent_name, error)
    else:
        logger.exception("unexpected error answering in %s", channel.agent_name)
