"""Turning a stored Slack request into an agent answer posted back in Slack.

This is the bot's core, independent of how requests arrive (HTTP or Socket Mode): each request is
queued behind the earlier ones of its channel, answered by the channel's agent, delivered, and closed
in the inbox; any failure becomes a friendly message for the user and a log line.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agent import PixelbotError, TurnKind
from bot.channels import ChannelAgents
from bot.dispatch import OrderedDispatcher
from bot.inbox import Inbox, InboxItem, RequestKind, Status
from bot.replies import (
    MENTION_USAGE,
    ProgressReaction,
    already_posted,
    answer_messages,
    friendly_error,
    post_message,
    respond_in_channel,
)

logger = logging.getLogger(__name__)


class Answerer:
    """Answers stored requests with the channel's agent, in order per channel."""

    def __init__(self, agents: ChannelAgents, client: WebClient, dispatcher: OrderedDispatcher, inbox: Inbox) -> None:
        self.agents = agents
        self.client = client
        self.dispatcher = dispatcher
        self.inbox = inbox

    def submit(self, item: InboxItem, resume: bool = False) -> None:
        """Queue `item` behind its channel's earlier requests; `resume` for one taken over after a crash."""
        self.dispatcher.submit(item.channel, lambda: self.answer(item, resume))

    def answer(self, item: InboxItem, resume: bool = False) -> None:
        status = Status.FAILED
        try:
            if item.kind is RequestKind.TOOL:
                status = self._answer_tool_request(item, resume)
            else:
                status = self._answer_message(item, resume)
        except SlackApiError as error:
            logger.error("could not deliver the answer in %s: %s", item.channel_id, error.response.get("error"))
            status = Status.UNDELIVERABLE
        finally:
            self.inbox.close(item.request_id, status)

    def _answer_message(self, item: InboxItem, resume: bool) -> Status:
        with ProgressReaction(self.client, item.channel_id, item.ts):
            chunks, status = self._ask(item, TurnKind.CHAT, resume) if item.text else ([MENTION_USAGE], Status.ANSWERED)
            if resume and already_posted(self.client, item.channel_id, item.reply_thread, item.ts, item.request_id):
                logger.info("request %s was answered before the restart; not posting again", item.request_id)
                return status
            post_message(self.client, item.channel_id, item.reply_thread, chunks, item.request_id)
        return status

    def _answer_tool_request(self, item: InboxItem, resume: bool) -> Status:
        chunks, status = self._ask(item, TurnKind.TOOL, resume)
        respond_in_channel(item.response_url, chunks, f"<@{item.user}> asked `/tool {item.text}`")
        return status

    def _ask(self, item: InboxItem, kind: TurnKind, resume: bool) -> tuple[list[str], Status]:
        """The answer as Slack chunks, or a friendly error message; never raises for the agent's failures."""
        try:
            answer = self.agents.get(item.channel).respond(
                item.text,
                kind,
                user=item.user,
                thread_ts=item.conversation,
                request_id=item.memory_request_id,
                resume=resume,
            )
        except Exception as error:
            _log_failure(error, item)
            return [friendly_error(error)], Status.FAILED
        return answer_messages(answer.text, answer.input_truncated), Status.ANSWERED


def _log_failure(error: Exception, item: InboxItem) -> None:
    if isinstance(error, PixelbotError):
        logger.warning("answer to %s in %s failed: %s", item.request_id, item.channel_id, error)
    else:
        logger.exception("unexpected error answering %s in %s", item.request_id, item.channel_id)
