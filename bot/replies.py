"""Everything the bot says in Slack: answers, progress, and friendly errors.

Answers are the model's Markdown rendered as Slack mrkdwn and split to Slack's limits; errors become a
short message for the user while the details go to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from agent import AgentError, ModelFailure, NoToolsError
from bot.acknowledgements import ECHO_LIMIT
from bot.slack_text import message_blocks, quoted, split_message, to_mrkdwn

logger = logging.getLogger(__name__)

ANSWER_EVENT = "pixelbot_answer"  # message metadata type marking the bot's answers
RESPONSE_URL_POSTS = 5  # Slack accepts 5 posts to one response_url (within 30 minutes)
MAX_BLOCKS = 50  # blocks in one message; the echo takes one
SAVED = "Your message is saved in the channel's memory."
FRIENDLY_FAILURES = {
    ModelFailure.RATE_LIMITED: "The model is rate limiting me right now. Please try again in a minute.",
    ModelFailure.TIMEOUT: "The model took too long to answer. Please try again.",
    ModelFailure.UNAVAILABLE: "I can't reach the model right now. Please try again in a few minutes.",
    ModelFailure.REJECTED: "The model refused this request. Try rephrasing it, or tell an admin.",
    ModelFailure.BAD_RESPONSE: "The model sent an answer I couldn't read. Please try again.",
}
UNEXPECTED = "Something went wrong on my side while answering; an admin can find the details in the logs."
TRUNCATED_NOTE = "_Note: your message was very long, so I only read its beginning._"
MENTION_USAGE = "Mention me with a question, for example: `@pixelbot what did we decide about the release?`"
EXPORT_USAGE = "Usage: `/export-memory [jsonl|csv|parquet]` (default: jsonl). Admins only."
EXPORT_STARTED = ":outbox_tray: Checking your export rights; if you're an admin, the file comes to our direct messages."
NOT_ADMIN = "Sorry, only pixelbot admins can export a channel's memory."
NOTHING_TO_EXPORT = "This channel has no memory yet: nothing to export."
EXPORT_SENT = "Sent `{filename}` ({count} messages) to your direct messages with me."  # .format(...)
EXPORT_FAILED = ":warning: The export failed; an admin can find the details in the logs."


PIXELBOT_USAGE = (
    "Usage: `/pixelbot settings` (this channel's instructions, model, tools, listening and retention), "
    "`/pixelbot listen on` (remember every message of this channel, not only mentions), "
    "`/pixelbot listen off`, `/pixelbot listen status`; admins: `/pixelbot forget thread <link>`, "
    "`/pixelbot forget channel`, `/pixelbot forget file <name>`."
)
LISTEN_ANNOUNCE_ON = (
    ":ear: <@{user}> turned on listening: from now on I remember this channel's messages, not only the ones "
    "that mention me, so I can answer questions about what was said here. Edits and deletions apply to my "
    "memory too. `/pixelbot listen off` stops it."
)
LISTEN_ANNOUNCE_OFF = (
    ":zipper_mouth_face: <@{user}> turned off listening: I no longer remember this channel's messages unless "
    "they mention me."
)
LISTEN_SWITCHED = "Listening is now *{state}* in this channel."
LISTEN_ALREADY = "Listening is already *{state}* in this channel."
LISTEN_STATUS = "Listening is *{state}* in this channel{detail}."
LISTEN_NOT_ALLOWED = "Sorry, only pixelbot admins can switch listening in this workspace."
LISTEN_NOT_IN_CHANNEL = "I'm not in this channel: add me first (`/invite @pixelbot`), then try again."
LISTEN_FAILED = ":warning: That didn't work; an admin can find the details in the logs."

NO_TOOLS = ":warning: This channel's agent has no tools, so `/tool` can't do anything here. Mention me instead."


def friendly_error(error: Exception) -> str:
    """What to tell the user about `error`; never a stack trace."""
    if isinstance(error, NoToolsError):
        return NO_TOOLS
    if isinstance(error, AgentError):
        return f":warning: {FRIENDLY_FAILURES[error.failure]} {SAVED}"
    return f":warning: {UNEXPECTED} {SAVED}"


def answer_messages(markdown: str, truncated: bool = False) -> list[str]:
    """The answer as mrkdwn chunks that each fit one Slack message."""
    text = to_mrkdwn(markdown) if markdown.strip() else "_(empty answer)_"
    if truncated:
        text = f"{text}\n\n{TRUNCATED_NOTE}"
    return split_message(text)


Blocks = list[dict[str, Any]]


def answer_metadata(request_id: str) -> dict[str, Any]:
    """The message metadata of an answer's last message: after a crash, the bot looks for it to tell
    whether the answer was delivered already (`already_posted`)."""
    return {"event_type": ANSWER_EVENT, "event_payload": {"request_id": request_id}}


def post_message(
    client: WebClient,
    channel: str,
    thread_ts: str | None,
    chunks: list[str],
    request_id: str,
    closing: Blocks | None = None,
) -> None:
    """Post an answer, in a thread when `thread_ts` is given; `closing` blocks (the Sources line,
    the feedback buttons) go under its last chunk, which also carries `answer_metadata`."""
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        blocks = message_blocks(chunk) + (closing or []) if last else message_blocks(chunk)
        client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=chunk,
            blocks=blocks,
            metadata=answer_metadata(request_id) if last else None,
        )


def replace_message(
    client: WebClient,
    channel: str,
    thread_ts: str | None,
    ts: str,
    chunks: list[str],
    request_id: str,
    closing: Blocks | None = None,
) -> None:
    """Make the message `ts` (a stream that a crash or an error interrupted) the complete answer: its
    first chunk there, any others posted after it. The stream is stopped first, in case Slack still
    holds it open (an error then means it was stopped already)."""
    try:
        client.chat_stopStream(channel=channel, ts=ts)
    except SlackApiError as error:
        logger.info("stream %s in %s was not open (%s)", ts, channel, error.response.get("error"))
    first, rest = chunks[0], chunks[1:]
    blocks = message_blocks(first) + ([] if rest else closing or [])
    metadata = None if rest else answer_metadata(request_id)
    client.chat_update(channel=channel, ts=ts, text=first, blocks=blocks, metadata=metadata)
    if rest:
        post_message(client, channel, thread_ts, rest, request_id, closing)


def already_posted(client: WebClient, channel: str, thread_ts: str | None, after_ts: str, request_id: str) -> bool:
    """Whether the complete answer to `request_id` is already in Slack (checked only when resuming)."""
    try:
        if thread_ts:
            page = client.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True, limit=200)
        else:
            page = client.conversations_history(channel=channel, oldest=after_ts, include_all_metadata=True, limit=200)
    except SlackApiError as error:
        logger.warning("cannot check for an earlier answer in %s: %s", channel, error.response.get("error"))
        return False
    messages: list[dict[str, Any]] = page.get("messages", [])
    return any(_answered_request(message) == request_id for message in messages)


def _answered_request(message: dict[str, Any]) -> str | None:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != ANSWER_EVENT:
        return None
    return str((metadata.get("event_payload") or {}).get("request_id"))


def respond_in_channel(response_url: str, chunks: list[str], echo: str, closing: Blocks | None = None) -> None:
    """Deliver a slash-command answer through its `response_url`, visible to the channel.

    Slack takes at most `RESPONSE_URL_POSTS` posts per `response_url`, so a long answer's chunks are
    packed several to a post (each chunk its own section block) instead of one post each.
    """
    webhook = WebhookClient(response_url)
    groups = _packed(chunks, RESPONSE_URL_POSTS)
    for index, group in enumerate(groups):
        blocks = [block for chunk in group for block in message_blocks(chunk)]
        if index == 0:
            blocks = [_echo_block(echo), *blocks]
        if closing and index == len(groups) - 1 and len(blocks) + len(closing) <= MAX_BLOCKS:
            blocks.extend(closing)
        response = webhook.send(response_type="in_channel", replace_original=False, text=group[0], blocks=blocks)
        if response.status_code != 200:
            logger.error("response_url delivery failed: HTTP %s %s", response.status_code, response.body)


def _packed(chunks: list[str], posts: int) -> list[list[str]]:
    """`chunks` in at most `posts` consecutive groups, each within Slack's blocks per message."""
    per_post = max(1, -(-len(chunks) // posts))
    if per_post >= MAX_BLOCKS:
        logger.warning("an answer of %d chunks is cut to Slack's limits", len(chunks))
        chunks, per_post = chunks[: posts * (MAX_BLOCKS - 1)], MAX_BLOCKS - 1
    return [chunks[start : start + per_post] for start in range(0, len(chunks), per_post)]


def tool_echo(user: str, text: str) -> str:
    """The line above a `/tool` answer saying who asked what; the user's words can't mention or link."""
    return f"<@{user}> asked `/tool {quoted(text, ECHO_LIMIT)}`"


def _echo_block(echo: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": echo}]}
