"""Bolt listeners: parse what Slack sends, acknowledge at once, and hand the work to the `Answerer`.

Slack wants an acknowledgement within 3 seconds and retries otherwise, so nothing slow happens here.
Repeated deliveries of one event (Slack retries, duplicates) are answered once.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.answering import Answerer, Mention, ToolRequest
from bot.channels import ChannelKey
from bot.dedupe import SeenEvents
from bot.exports import EXPORT_USAGE, NOT_ADMIN, Exporter, ExportRequest, is_admin, parse_format
from bot.replies import TOOL_USAGE
from bot.slack_text import readable_text

logger = logging.getLogger(__name__)


def register_listeners(
    app: App, answerer: Answerer, exporter: Exporter, admins: frozenset[str], seen: SeenEvents
) -> None:
    """Attach pixelbot's listeners to a Bolt app."""

    @app.event("app_mention")
    def on_mention(body: dict[str, Any], event: dict[str, Any], context: BoltContext) -> None:
        if event.get("bot_id") or not seen.first_time(_event_key(body, event)):
            return
        answerer.submit_mention(
            Mention(
                channel=ChannelKey(_team_id(body, context), event["channel"]),
                user=event.get("user", ""),
                text=readable_text(event.get("text", ""), context.bot_user_id),
                ts=event["ts"],
                thread_ts=event.get("thread_ts"),
            )
        )

    @app.command("/tool")
    def on_tool(ack: Ack, command: dict[str, Any]) -> None:
        text = readable_text(command.get("text", ""))
        if not text:
            ack(response_type="ephemeral", text=TOOL_USAGE)
            return
        ack(response_type="ephemeral", text=f":hourglass_flowing_sand: Working on `/tool {text}`…")
        answerer.submit_tool_request(
            ToolRequest(
                channel=ChannelKey(command["team_id"], command["channel_id"]),
                user=command["user_id"],
                text=text,
                response_url=command["response_url"],
            )
        )

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

    @app.event("message")
    def ignore_plain_messages() -> None:
        """Channel messages that don't mention the bot are not for it."""


def _event_key(body: dict[str, Any], event: dict[str, Any]) -> str:
    """The event's identity: Slack's `event_id`, or the message it is about."""
    return str(body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")


def _team_id(body: dict[str, Any], context: BoltContext) -> str:
    return str(body.get("team_id") or context.team_id)
