"""Bolt listeners: store what Slack sends durably, acknowledge, and hand it to the `Answerer`.

Over HTTP, requests reach these listeners only through `bot.edge`, so their fields are checked and
normalised already. Slack wants an acknowledgement within 3 seconds and retries otherwise, so nothing
slow happens here (the export's admin check runs after the ack). Bolt acknowledges events before their
listener runs, so messages are stored by listener middleware, which runs first: a message is in the
inbox before Slack hears back. If it can't be stored, Slack gets a 503 and delivers it again later. A
repeated delivery (retry or duplicate) is dropped by the inbox's primary key, so it is answered once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse
from slack_sdk.webhook import WebhookClient

from agent.errors import StorageTimeoutError
from bot.acknowledgements import ACKNOWLEDGED, STORAGE_DOWN, STORAGE_SLOW, tool_acknowledgement, tool_text
from bot.answering import Answerer
from bot.channel_commands import ChannelCommand, ChannelCommands
from bot.channel_homes import ChannelHomes
from bot.channels import ChannelKey
from bot.exports import Exporter, ExportRequest, parse_format
from bot.feedback import FEEDBACK_ACTION, feedback_item
from bot.files import FILES_CHANNEL
from bot.followups import Followups
from bot.inbox import Inbox, InboxItem, RequestKind
from bot.listening import ListeningChannels
from bot.replies import EXPORT_STARTED, EXPORT_USAGE
from bot.slack_text import readable_text

logger = logging.getLogger(__name__)

NEW_REQUEST = "pixelbot_new_request"  # context key: the stored request a listener should answer
_LEADING_MENTION = re.compile(r"^\s*<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
HUMAN_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message"})  # what people say
CHANGES = frozenset({"message_changed", "message_deleted"})
LISTENABLE = frozenset({"channel", "group", "mpim"})


def register_listeners(
    app: App,
    inbox: Inbox,
    answerer: Answerer,
    exporter: Exporter,
    admins: frozenset[str],
    listening: ListeningChannels,
    commands: ChannelCommands,
    homes: ChannelHomes,
    followups: Followups | None = None,
) -> Middleware:
    """Attach pixelbot's listeners to a Bolt app; returns the middleware that stores messages, for
    the assistant panel's listeners. Every channel is named by its agent's key (`homes`)."""
    store_message = _message_storer(inbox, listening, homes, followups)

    @app.event("app_mention", middleware=[store_message])
    def on_mention(context: BoltContext) -> None:
        if item := context.get(NEW_REQUEST):
            answerer.submit(item)

    @app.event("message", middleware=[store_message])
    def on_message(context: BoltContext) -> None:
        """Direct messages are for the bot; in a listening channel every human message is remembered
        (and edits and deletions anywhere apply to memory); other channel chatter is not stored."""
        if item := context.get(NEW_REQUEST):
            answerer.submit(item)

    @app.event("file_deleted")
    def on_file_deleted(body: dict[str, Any], event: dict[str, Any], context: BoltContext) -> None:
        """A file deleted in Slack leaves the agents that kept it: stored before the ack (a failure
        answers 500, and Slack delivers the event again), removed in the channel's queue."""
        for item in file_deleted_items(body, event, context.team_id):
            item = homes.homed(item) if item.channel_id != FILES_CHANNEL else item
            if inbox.receive(item):
                answerer.submit(item)

    @app.action(FEEDBACK_ACTION)
    def on_feedback(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A 👍/👎: stored before the ack like a request, then recorded in the channel's queue."""
        item = feedback_item(body, action)
        try:
            item = homes.homed(item) if item is not None else None
            if item is not None and inbox.receive(item):
                answerer.submit(item)
        except Exception:
            logger.exception("could not store feedback %s", item.request_id if item else "")
        ack()

    @app.command("/pixelbot")
    def on_pixelbot(ack: Ack, command: dict[str, Any]) -> None:
        ack()  # the answer comes through the response_url: the rights check may ask Slack
        key = _channel_or_tell(homes, command)
        if key is None:
            return
        text, trigger = command.get("text", ""), command.get("trigger_id", "")
        commands.submit(ChannelCommand(key, command["user_id"], text, command["response_url"], trigger))

    @app.command("/tool")
    def on_tool(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        text = tool_text(command)
        if not text:
            ack(response_type="ephemeral", text=tool_acknowledgement(text))
            return
        item = _tool_item(command, text)
        try:
            item = homes.homed(item)
            new = inbox.receive(item)
        except Exception as error:
            if context.get(ACKNOWLEDGED):  # the user was told it is being worked on: fail, to be tried again
                raise
            if isinstance(error, StorageTimeoutError):  # it may still land: `Answerer.late_arrival` then answers
                logger.warning("/tool request %s not stored in time; answering it if it lands", item.request_id)
                ack(response_type="ephemeral", text=STORAGE_SLOW)
                return
            logger.exception("could not store /tool request %s", item.request_id)
            ack(response_type="ephemeral", text=STORAGE_DOWN)
            return
        ack(response_type="ephemeral", text=tool_acknowledgement(text))
        if new:  # a command delivered twice (same trigger ID) is answered once
            answerer.submit(item)

    @app.command("/export-memory")
    def on_export(ack: Ack, command: dict[str, Any]) -> None:
        """Acknowledged at once: the admin check (`users.info`) may be slow, so it runs with the export."""
        export_format = parse_format(command.get("text", ""))
        if export_format is None:
            ack(response_type="ephemeral", text=EXPORT_USAGE)
            return
        ack(response_type="ephemeral", text=EXPORT_STARTED)
        key = _channel_or_tell(homes, command)
        if key is None:
            return
        request = ExportRequest(
            channel=key,
            user=command["user_id"],
            export_format=export_format,
            response_url=command["response_url"],
        )
        exporter.submit(request, admins)

    return store_message


Middleware = Callable[..., Any]


def _channel_or_tell(homes: ChannelHomes, command: dict[str, Any]) -> ChannelKey | None:
    """The command's channel, under its home; None, with the user told, if storage can't say (after
    the ack, so through the response_url)."""
    try:
        return homes.key(command["team_id"], command["channel_id"])
    except Exception:
        logger.exception("could not look up the home of %s", command["channel_id"])
        WebhookClient(command["response_url"]).send(response_type="ephemeral", text=STORAGE_DOWN)
        return None


def _message_storer(
    inbox: Inbox, listening: ListeningChannels, homes: ChannelHomes, followups: Followups | None = None
) -> Middleware:
    """Listener middleware that stores a message for the bot before Bolt acknowledges it."""

    def store_message(body: dict[str, Any], context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
        event_id = body.get("event_id", "")
        try:
            item = _message_item(body, context, listening, homes, followups)
            if item is not None and inbox.receive(item):
                context[NEW_REQUEST] = item
                if followups is not None and item.kind is RequestKind.MENTION:
                    followups.note(item.channel.team_id, item.channel_id, item.stream_thread)
        except Exception:
            logger.exception("could not store event %s; Slack will deliver it again", event_id)
            return BoltResponse(status=503, body="storage unavailable")
        next()
        return None

    return store_message


def _message_item(
    body: dict[str, Any],
    context: BoltContext,
    listening: ListeningChannels,
    homes: ChannelHomes,
    followups: Followups | None,
) -> InboxItem | None:
    """The inbox item of an event: a request (`app_mention`, a DM, a follow-up in a thread the bot
    answers in), a listened message, an edit or a deletion; None for what the bot ignores (bots,
    itself, system messages, chatter of channels that don't listen)."""
    event = body.get("event", {})
    team_id = str(context.team_id or body.get("team_id"))  # the installation that saw it (`authorizations`)
    request_id = str(body.get("event_id") or f"{event['channel']}:{event['ts']}")
    subtype = event.get("subtype")
    if subtype in CHANGES:
        change = _change_item(event, request_id, team_id, context.bot_user_id)
        return homes.homed(change) if change is not None else None
    if event.get("bot_id") or not event.get("user") or subtype not in HUMAN_SUBTYPES:
        return None  # bots (including this one), joins and other system messages
    home = homes.key(team_id, event["channel"])
    raw_text = event.get("text", "")
    if event["type"] == "app_mention":
        kind = RequestKind.MENTION
    elif event.get("channel_type") == "im":
        if subtype not in (None, "file_share"):
            return None
        kind = RequestKind.DIRECT
    elif f"<@{context.bot_user_id}>" in raw_text:
        return None  # a mention arrives as `app_mention` too, and is answered from that
    elif _follows_up(followups, home, event):
        kind = RequestKind.LISTENED if _addressed_to_other(raw_text, context.bot_user_id) else RequestKind.FOLLOWUP
    elif _listens(listening, home, event):
        kind = RequestKind.LISTENED
    else:
        return None
    return homes.homed(
        InboxItem(
            request_id=request_id,
            kind=kind,
            team_id=team_id,
            channel_id=event["channel"],
            user=event["user"],
            text=readable_text(event.get("text", ""), context.bot_user_id),
            ts=event["ts"],
            thread_ts=event.get("thread_ts", ""),
            files=tuple(event.get("files") or ()),
        )
    )


def _follows_up(followups: Followups | None, key: ChannelKey, event: dict[str, Any]) -> bool:
    """Whether `event` is a reply in a channel thread where the bot answers."""
    thread = event.get("thread_ts")
    if followups is None or not thread or thread == event["ts"] or event.get("channel_type") not in LISTENABLE:
        return False
    return followups.answered_in(key.team_id, key.channel_id, thread)


def _addressed_to_other(text: str, bot_user_id: str | None) -> bool:
    """Whether a reply starts by mentioning someone other than the bot: it is for them, not for the bot."""
    match = _LEADING_MENTION.match(text)
    return match is not None and match.group(1) != bot_user_id


def _listens(listening: ListeningChannels, key: ChannelKey, event: dict[str, Any]) -> bool:
    return event.get("channel_type") in LISTENABLE and listening.is_on(key)


def _change_item(event: dict[str, Any], request_id: str, team_id: str, bot_user_id: str | None) -> InboxItem | None:
    """An edit (`message_changed`) or a deletion (`message_deleted`) of a human message."""
    if event["subtype"] == "message_deleted":
        return InboxItem(request_id, RequestKind.DELETED, team_id, event["channel"], "", "", ts=event["deleted_ts"])
    message = event["message"]
    if message.get("bot_id") or message.get("user") in (None, "", bot_user_id):
        return None  # a bot's message, the bot's own included
    if message.get("subtype") == "assistant_app_thread":
        return None  # the root of an assistant thread, retitled or replied to: not a message of memory
    text = readable_text(message.get("text", ""), bot_user_id)
    thread = message.get("thread_ts", "")
    return InboxItem(
        request_id, RequestKind.EDITED, team_id, event["channel"], message["user"], text, message["ts"], thread
    )


def file_deleted_items(body: dict[str, Any], event: dict[str, Any], team_id: str | None = None) -> list[InboxItem]:
    """One inbox item per channel the deleted file was in, or one for any channel when Slack does
    not say (`FILES_CHANNEL`): `text` is the file's ID; `team_id` the installation that saw it."""
    team_id, event_id = team_id or str(body.get("team_id", "")), str(body.get("event_id", ""))
    channels = event.get("channel_ids") or [FILES_CHANNEL]
    return [
        InboxItem(f"{event_id}:{channel}", RequestKind.FILE_DELETED, team_id, channel, "", event["file_id"])
        for channel in channels
    ]


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
