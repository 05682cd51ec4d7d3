"""👍/👎 under every answer: Slack's feedback buttons, and what a click does.

Each answer ends with a `context_actions` block holding a `feedback_buttons` element (Slack's feedback
control for AI apps). A click arrives as a `block_actions` payload; the listener stores it in the
durable inbox like any other request (so a click is counted once, even if Slack delivers it twice or
the bot restarts) and acknowledges it. `FeedbackIntake` then records it on the answer's row in the
channel's memory (`Agent.rate`, on the storage thread, in order with the channel's other writes; a
second click by the same person replaces the first) and thanks the clicker with an ephemeral message
that only they see. Exports carry the votes; `pixelbot channels` counts them.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from functools import partial
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.channels import ChannelAgents
from bot.inbox import Inbox, InboxItem, RequestKind, Status
from bot.log_format import in_thread
from bot.queues import ChannelQueues

logger = logging.getLogger(__name__)

T = TypeVar("T")

FEEDBACK_ACTION = "pixelbot_feedback"
RATINGS = ("good", "bad")
THANKS = {
    "good": "Thanks for the :thumbsup:! I'll keep answering like that.",
    "bad": "Thanks for telling me :thumbsdown:. Your rating is saved with the answer, so an admin can review it.",
}
NOT_FOUND = "I couldn't find that answer in this channel's memory any more, so the rating wasn't saved."


def feedback_block(request_id: str) -> dict[str, Any]:
    """The buttons under the answer to `request_id` (its ID in memory travels in the buttons' values)."""

    def button(label: str, rating: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": label}, "value": f"{rating} {request_id}"}

    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION,
                "positive_button": button("Good answer", "good"),
                "negative_button": button("Bad answer", "bad"),
            }
        ],
    }


def parse_vote(value: str) -> tuple[str, str] | None:
    """(rating, request ID) from a button's value, or None if it isn't one of ours."""
    rating, _, request_id = value.partition(" ")
    return (rating, request_id) if rating in RATINGS and request_id else None


def feedback_item(body: dict[str, Any], action: dict[str, Any]) -> InboxItem | None:
    """The inbox item of a click (None if the payload is not a vote on an answer in a conversation):
    `text` holds the rating, `ts` the answer's request ID in memory, `thread_ts` where to thank."""
    vote = parse_vote(str(action.get("value", "")))
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    user = (body.get("user") or {}).get("id")
    team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    if vote is None or not (channel and user and team):
        return None
    message = body.get("message") or {}
    thread = message.get("thread_ts") or (body.get("container") or {}).get("thread_ts") or ""
    rating, request_id = vote
    click = f"{action.get('action_ts') or message.get('ts')}:{user}"
    return InboxItem(f"vote:{click}", RequestKind.FEEDBACK, team, channel, user, rating, request_id, thread)


class FeedbackIntake:
    """Records clicks on the feedback buttons and thanks the clicker (`take_in`, a channel-queue job)."""

    def __init__(
        self,
        agents: ChannelAgents,
        client: WebClient,
        inbox: Inbox,
        storage_queues: ChannelQueues,
        storage: Executor,
        io: Executor,
    ) -> None:
        self._agents, self._client, self._inbox = agents, client, inbox
        self._storage_queues, self._storage, self._io = storage_queues, storage, io

    async def take_in(self, item: InboxItem) -> None:
        """Queue the vote behind the channel's pending stores: the answer voted on may not be stored yet."""
        self._storage_queues.submit(item.channel, partial(self._record, item))

    async def _record(self, item: InboxItem) -> None:
        try:
            agent = await in_thread(self._storage, partial(self._agents.get, item.channel))
            saved = await in_thread(self._storage, partial(agent.rate, item.ts, item.user, item.text))
        except Exception:
            logger.exception("could not save the feedback %s in %s", item.request_id, item.channel_id)
            saved = False
        status = Status.ANSWERED if saved else Status.FAILED
        await in_thread(self._io, partial(self._thank, item, THANKS[item.text] if saved else NOT_FOUND))
        await in_thread(self._io, partial(self._inbox.close, item.request_id, status))

    def _thank(self, item: InboxItem, text: str) -> None:
        try:
            self._client.chat_postEphemeral(
                channel=item.channel_id, user=item.user, text=text, thread_ts=item.thread_ts or None
            )
        except SlackApiError as error:
            logger.info("could not thank %s for feedback: %s", item.user, error.response.get("error"))
