"""Bolt listeners: parse what Slack sends, store it durably, acknowledge, and hand it to the `Answerer`.

Slack wants an acknowledgement within 3 seconds and retries otherwise, so nothing slow happens here.
Bolt acknowledges events before their listener runs, so messages are stored by listener middleware,
which runs first: a message is in the inbox before Slack hears back. If it can't be stored, Slack
gets a 503 and delivers it again later. A repeated delivery (retry or duplicate) is dropped by the
inbox's primary key, so it is answered once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse
from slack_sdk import WebClient

from bot.answering import Answerer
from bot.channels import ChannelKey
from bot.exports import EXPORT_USAGE, NOT_ADMIN, Exporter, ExportRequest, is_admin, parse_format
from bot.inbox import Inbox, InboxItem, RequestKind
from bot.replies import STORAGE_DOWN, TOOL_USAGE
from bot.slack_text import readable_text

logger = logging.getLogger(__name__)

NEW_REQUEST = "pixelbot_new_request"  # context key: the stored request a listener should answer


def register_listeners(app: App, answerer: Answerer, exporter: Exporter, admins: frozenset[str]) -> None:
    """Attach pixelbot's listeners to a Bolt app."""
    inbox = answerer.inbox
    store_message = _message_storer(inbox)

    @app.event("app_mention", middleware=[store_message])
    def on_mention(context: BoltContext) -> None:
        if item := context.get(NEW_REQUEST):
            answerer.submit(item)

    @app.event("message", middleware=[store_message])
    def on_message(context: BoltContext) -> None:
        """Direct messages are for the bot; channel chatter without a mention is not (and is not stored)."""
        if item := context.get(NEW_REQUEST):
            answerer.submit(item)

    @app.command("/tool")
    def on_tool(ack: Ack, command: dict[str, Any]) -> None:
        text = readable_text(command.get("text", ""))
        if not text:
            ack(response_type="ephemeral", text=TOOL_USAGE)
            return
        item = _tool_item(command, text)
        try:
            inbox.receive(item)
        except Exception:
            logger.exception("could not store /tool request %s", item.request_id)
            ack(response_type="ephemeral", text=STORAGE_DOWN)
            return
        ack(response_type="ephemeral", text=f":hourglass_flowing_sand: Working on `/tool {text}`…")
        answerer.submit(item)

    @app.command("/export-memory")
    def on_export(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        export_format = parse_format(command.get("text", ""))
        if export_format is None:
            ack(response_type="ephemeral", text=EXPORT_USAGE)
            return
        if not is_admin(client, admins, command["user_id"]):
            logger.warning("export refused: %s is not an admin", command["user_id"])
            ack(response_type="ephemeral", text=NOT_ADMIN)
            return
        ack(response_type="ephemeral", text=":outbox_tray: Exporting; I'll send the file to our direct messages.")
        exporter.submit(
            ExportRequest(
                channel=ChannelKey(command["team_id"], command["channel_id"]),
                user=command["user_id"],
                export_format=export_format,
                response_url=command["response_url"],
            )
        )


Middleware = Callable[..., Any]


def _message_storer(inbox: Inbox) -> Middleware:
    """Listener middleware that stores a message for the bot before Bolt acknowledges it."""

    def store_message(body: dict[str, Any], context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
        item = _message_item(body, context)
        if item is not None:
            try:
                if inbox.receive(item):
                    context[NEW_REQUEST] = item
            except Exception:
                logger.exception("could not store event %s; Slack will deliver it again", item.request_id)
                return BoltResponse(status=503, body="storage unavailable")
        next()
        return None

    return store_message


def _message_item(body: dict[str, Any], context: BoltContext) -> InboxItem | None:
    """The request in an `app_mention` or direct `message` event, or None if it is not for the bot."""
    event = body.get("event", {})
    if event.get("bot_id") or event.get("subtype") or not event.get("user"):
        return None  # bots (including this one), edits, joins and other system messages
    if event["type"] == "message" and event.get("channel_type") != "im":
        return None
    return InboxItem(
        request_id=str(body.get("event_id") or f"{event['channel']}:{event['ts']}"),
        kind=RequestKind.MENTION if event["type"] == "app_mention" else RequestKind.DIRECT,
        team_id=str(body.get("team_id") or context.team_id),
        channel_id=event["channel"],
        user=event["user"],
        text=readable_text(event.get("text", ""), context.bot_user_id),
        ts=event["ts"],
        thread_ts=event.get("thread_ts", ""),
    )


def _tool_item(command: dict[str, Any], text: str) -> InboxItem:
    return InboxItem(
        request_id=f"cmd:{command.get('trigger_id') or command['channel_id'] + ':' + command['user_id']}",
        kind=RequestKind.TOOL,
        team_id=command["team_id"],
        channel_id=command["channel_id"],
        user=command["user_id"],
        text=text,
        response_url=command.get("response_url", ""),
    )
