"""`/pixelbot forget thread <link>` and `/pixelbot forget channel` (admins): memory deleted on request.

Deleting can't be undone, so the command only asks: the admin gets an ephemeral message with a
*Forget* button (and *Cancel*). The click (a `block_actions` payload, screened at the edge) is checked
again (admins only), and the deletion runs in the channel's storage queue, after the channel's pending
stores, so that nothing stored a moment earlier survives it. Memory rows and their recall entries go;
the answer to the click replaces the question. Each deletion is in the audit (`pixelbot audit`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from agent import Agent
from bot.audit import FORGET, Audit
from bot.channel_homes import ChannelHomes
from bot.channels import ChannelAgents, ChannelKey
from bot.exports import is_admin
from bot.files import SlackFiles
from bot.queues import ChannelQueues

logger = logging.getLogger(__name__)

FORGET_ACTION = "pixelbot_forget"
CANCEL_ACTION = "pixelbot_forget_cancel"
FORGET_USAGE = (
    "Usage: `/pixelbot forget channel` (all of this channel's memory), `/pixelbot forget thread <link>` "
    "(copy the thread's link from its ⋮ menu) or `/pixelbot forget file <name>` (a file shared here). Admins only."
)
FORGET_NOT_ALLOWED = "Sorry, only pixelbot admins can make me forget."
FORGET_ASK = ":warning: Forget {what}? I'll delete it from my memory for good; this can't be undone."
FORGET_DONE = ":wastebasket: Done: I forgot {what} ({count} messages), at <@{user}>'s request."
FORGET_FILE_DONE = ":wastebasket: Done: I forgot {what} ({count} pieces), at <@{user}>'s request."
FORGET_NOTHING = "I had nothing stored for {what}."
FORGET_CANCELLED = "OK, I forgot nothing."
FORGET_FAILED = ":warning: That didn't work; nothing was forgotten. An admin can find the details in the logs."
_TS = re.compile(r"^\d{9,12}\.\d{1,9}$")
_PERMALINK_TS = re.compile(r"/p(\d{10})(\d{6})$")


def thread_of(reference: str) -> str | None:
    """The thread's ts from a message link (`…/archives/C…/p1700000000123456[?thread_ts=…]`) or a ts."""
    reference = reference.strip("<> ").split("|")[0]
    if _TS.match(reference):
        return reference
    parts = urlsplit(reference)
    thread = parse_qs(parts.query).get("thread_ts", [""])[0]
    if _TS.match(thread):
        return thread
    match = _PERMALINK_TS.search(parts.path)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _what(scope: str, target: str = "") -> str:
    if scope == "file":
        return f"the file {target}"
    return "this channel's whole memory" if scope == "channel" else "that thread"


class Forgetting:
    """The `forget` subcommand: the confirmation it asks for, and what the click does."""

    def __init__(
        self,
        client: WebClient,
        agents: ChannelAgents,
        storage_queues: ChannelQueues,
        storage: Executor,
        admins: frozenset[str],
        audit: Audit | None = None,
        files: SlackFiles | None = None,
    ) -> None:
        self._client, self._agents, self._storage_queues = client, agents, storage_queues
        self._storage, self._admins, self._audit, self._files = storage, admins, audit, files

    def ask(self, channel: ChannelKey, user: str, words: list[str]) -> str | dict[str, Any]:
        """The reply to `/pixelbot forget …` (its words as typed): the usage, a refusal, or the
        confirmation message."""
        scope = words[1].lower() if len(words) > 1 else ""
        target = thread_of(words[2]) if scope == "thread" and len(words) == 3 else None
        if scope == "file" and len(words) > 2 and self._files is not None:
            target = " ".join(words[2:]).strip("<>")
        if not (scope == "channel" and len(words) == 2) and target is None:
            return FORGET_USAGE
        if not is_admin(self._client, self._admins, user, channel):
            logger.warning("/pixelbot forget refused: %s is not an admin", user)
            return FORGET_NOT_ALLOWED
        value = "channel" if scope == "channel" else f"{scope} {target}"
        buttons = [
            {"type": "button", "style": "danger", "action_id": FORGET_ACTION, "value": value,
             "text": {"type": "plain_text", "text": "Forget"}},
            {"type": "button", "action_id": CANCEL_ACTION, "value": "cancel",
             "text": {"type": "plain_text", "text": "Cancel"}},
        ]  # fmt: skip
        text = FORGET_ASK.format(what=_what(scope, target or ""))
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                                          {"type": "actions", "elements": buttons}]}  # fmt: skip

    def confirmed(self, channel: ChannelKey, user: str, value: str, response_url: str) -> None:
        """The admin clicked *Forget*: check again, queue the deletion behind the channel's stores."""
        scope, _, thread = value.partition(" ")
        if not is_admin(self._client, self._admins, user, channel):
            _replace(response_url, FORGET_NOT_ALLOWED)
            return
        job = partial(self._forget, channel, scope, thread, user, response_url)
        self._storage_queues.submit(channel, job)

    async def _forget(self, channel: ChannelKey, scope: str, thread: str, user: str, response_url: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._audit is not None:  # recorded first: what can't be recorded isn't done
                details = (
                    {"scope": scope, ("file" if scope == "file" else "thread_ts"): thread}
                    if thread
                    else {"scope": scope}
                )
                await loop.run_in_executor(None, self._audit.record, user, FORGET, channel, details)
            agent = await loop.run_in_executor(self._storage, self._agents.get, channel)
            forget: Callable[[], int] = partial(self._forget_channel, agent)
            if scope == "file":
                forget = partial(self._forget_file, agent, thread)
            elif scope == "thread":
                forget = partial(self._forget_thread, agent, thread)
            count = await loop.run_in_executor(self._storage, forget)
        except Exception:
            logger.exception("forgetting %s in %s failed", scope, channel.channel_id)
            reply = FORGET_FAILED
        else:
            logger.info("forgot %d message(s) (%s) in %s at %s's request", count, scope, channel.channel_id, user)
            what = _what(scope, thread)
            done = FORGET_FILE_DONE if scope == "file" else FORGET_DONE
            reply = done.format(what=what, count=count, user=user) if count else FORGET_NOTHING.format(what=what)
        await loop.run_in_executor(None, _replace, response_url, reply)

    def _forget_channel(self, agent: Agent) -> int:
        """The channel's whole memory, and the files it was shared."""
        files = len(self._files.forget_where(agent, lambda _: True)) if self._files is not None else 0
        return agent.forget_everything() + files

    def _forget_thread(self, agent: Agent, thread_ts: str) -> int:
        files = self._files.forget_thread(agent, thread_ts) if self._files is not None else 0
        return agent.forget_thread(thread_ts) + files

    def _forget_file(self, agent: Agent, name: str) -> int:
        """Forget every file of the channel with this name (or Slack file ID); how many pieces went."""
        assert self._files is not None, "only asked when files are kept"
        found = self._files.forget_where(agent, lambda info: name in (info.file_id, info.name))
        return sum(max(info.chunks, 1) for info in found)

    @staticmethod
    def cancelled(response_url: str) -> None:
        _replace(response_url, FORGET_CANCELLED)


def _replace(response_url: str, text: str) -> None:
    """Answer the click in place of the question (the ephemeral message with the buttons)."""
    response = WebhookClient(response_url).send(replace_original=True, text=text)
    if response.status_code != 200:
        logger.warning("could not answer a forget click: HTTP %s", response.status_code)


def register_forgetting(app: App, forgetting: Forgetting, homes: ChannelHomes, io: Executor) -> None:
    """The two buttons' listeners: acknowledged at once, the rights check and the rest run on `io`."""

    @app.action(FORGET_ACTION)
    def on_forget(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        user = (body.get("user") or {}).get("id")
        if not (team and channel and user and body.get("response_url")):
            logger.warning("a forget click without its channel, user or response_url; ignored")
            return
        key = homes.key(team, channel)
        io.submit(forgetting.confirmed, key, user, str(action.get("value", "")), body["response_url"])

    @app.action(CANCEL_ACTION)
    def on_cancel(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        if body.get("response_url"):
            io.submit(Forgetting.cancelled, body["response_url"])
