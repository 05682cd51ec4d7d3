"""The app's Home tab: what pixelbot is, how to use it, the user's channels with an agent, and for
admins the admin commands.

Slack sends `app_home_opened` each time a user opens the tab; the listener acknowledges at once and
the view is built and published (`views.publish`) on the I/O pool, since it takes a catalog lookup
and a few Slack calls that Slack's 3-second ack must not wait for. The channels with an agent come
from Pixeltable's catalog, which only the catalog thread reads (its catalog is warm), and are cached
for a minute: opening the tab again and again costs no catalog work. A user sees only channels they
are a member of (`users.conversations`), so the tab reveals no private channel to outsiders.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.channels import ChannelKey
from bot.membership import channels_of

logger = logging.getLogger(__name__)

CHANNELS_TTL = 60.0  # seconds the list of channels with an agent is reused
CATALOG_TIMEOUT = 30.0  # seconds to wait for the catalog thread's answer
SHOWN_CHANNELS = 30  # channel mentions listed before "and N more"
MAX_BLOCKS = 100  # blocks in a Home view (Slack's limit)
MAX_SECTION_TEXT = 3000  # characters of a section's text (Slack's limit)
# The texts are mrkdwn, where a literal <, > or & must be written as an HTML entity (else `<x>` is a link).

ABOUT = (
    "Hi, I'm *pixelbot*. Every channel I'm in has its own agent with its own memory: it remembers what was "
    "asked and answered there, and only there, so each channel gets answers in its own context."
)
HOW_TO = "\n".join(
    [
        "*How to use me*",
        "• *Mention me* in a channel: `@pixelbot what did we decide about the release?` Then just reply in"
        " that thread: no need to mention me again.",
        "• `/tool &lt;request&gt;` in a channel runs a request with my tools, e.g. `/tool what time is it in Tokyo?`",
        "• *Direct message* me (the Messages tab) to ask something privately.",
        "• *The assistant panel*: open pixelbot from the top bar to talk beside any channel.",
        "• *Attach a file* (PDF, Word, text, CSV, an image) to a mention or a DM and ask about it.",
    ]
)
NO_CHANNELS = (
    "None yet. Invite me to a channel (`/invite @pixelbot`) and mention me there: that channel gets its own agent."
)
ADMIN_COMMANDS = "\n".join(
    [
        "*Admin commands* (you are a pixelbot admin)",
        "• `/export-memory [jsonl|csv|parquet]`: the channel's memory as a file, sent to your DMs.",
        "• `/pixelbot settings`: a channel's instructions, model, tools, listening and retention.",
        "• `/pixelbot listen on|off|status`: remember every message of a channel, not only mentions.",
        "• `/pixelbot forget thread &lt;link&gt;|channel`: delete a thread's or the channel's memory.",
        "• On the server: `pixelbot channels` lists the channels with an agent, `pixelbot export --channel C…` "
        "writes one's memory to a file, `pixelbot import --from &lt;export&gt;` loads a Slack export.",
    ]
)


class HomeTab:
    """Publishes a user's Home tab; `publish` returns at once, the work runs on the `io` pool."""

    def __init__(
        self,
        client: WebClient,
        admins: frozenset[str],
        list_channels: Callable[[], list[ChannelKey]],
        catalog: Executor,
        io: Executor,
    ) -> None:
        self.client = client
        self.admins = admins
        self._list_channels = list_channels
        self._catalog = catalog
        self._io = io
        self._refreshing = threading.Lock()  # one catalog read at a time, however many users open the tab
        self._cached: tuple[float, frozenset[ChannelKey]] | None = None

    def publish(self, team_id: str, user_id: str) -> Future[None]:
        """Build and publish `user_id`'s Home tab in the background; failures are logged, never raised."""
        try:
            return self._io.submit(self._publish, team_id, user_id)
        except RuntimeError:  # the pool is shut down: the bot is stopping
            logger.warning("not publishing the Home tab of %s: the bot is stopping", user_id)
            done: Future[None] = Future()
            done.set_result(None)
            return done

    def _publish(self, team_id: str, user_id: str) -> None:
        try:
            channels = self.user_channels(user_id)
            self.client.views_publish(user_id=user_id, view=home_view(channels, admin=user_id in self.admins))
        except SlackApiError as error:  # the next opening of the tab tries again
            logger.warning("could not publish the Home tab of %s: %s", user_id, error.response.get("error"))
        except OSError as error:  # Slack unreachable, or the catalog thread too slow (TimeoutError)
            logger.warning("could not publish the Home tab of %s: %s", user_id, type(error).__name__)
        except Exception:  # a bug, or the catalog failing: worth its traceback
            logger.exception("could not publish the Home tab of %s", user_id)

    def user_channels(self, user_id: str) -> list[str]:
        """The IDs of the channels that have an agent and `user_id` is a member of, sorted; a channel
        shared with another workspace (its memory homed there) too."""
        with_agents = {key.channel_id for key in self.channels_with_agents()}
        return sorted(with_agents.intersection(channels_of(self.client, user_id)))

    def channels_with_agents(self) -> frozenset[ChannelKey]:
        """Every channel with an agent, from the catalog thread, at most `CHANNELS_TTL` seconds old."""
        with self._refreshing:
            if self._cached is not None and time.monotonic() - self._cached[0] < CHANNELS_TTL:
                return self._cached[1]
            channels = frozenset(self._catalog.submit(self._list_channels).result(timeout=CATALOG_TIMEOUT))
            self._cached = (time.monotonic(), channels)
            return channels


def home_view(channel_ids: list[str], *, admin: bool) -> dict[str, Any]:
    """The Home view: about, how to, the user's channels, and the admin commands for an admin."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "pixelbot"}},
        _section(ABOUT),
        _section(HOW_TO),
        {"type": "divider"},
        _section(f"*Your channels with pixelbot*\n{_channel_list(channel_ids)}"),
    ]
    if admin:
        blocks += [{"type": "divider"}, _section(ADMIN_COMMANDS)]
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}


def _channel_list(channel_ids: list[str]) -> str:
    """The first `SHOWN_CHANNELS` as mentions (Slack shows each by name, to those who may see it)."""
    if not channel_ids:
        return NO_CHANNELS
    shown = ", ".join(f"<#{channel_id}>" for channel_id in channel_ids[:SHOWN_CHANNELS])
    rest = len(channel_ids) - SHOWN_CHANNELS
    return f"{shown} and {rest} more" if rest > 0 else shown


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION_TEXT]}}


def register_home(app: App, home: HomeTab) -> None:
    """Publish the Home tab whenever a user opens it; the Messages tab (the DM) needs nothing."""

    @app.event("app_home_opened")
    def on_home_opened(ack: Ack, event: dict[str, Any], context: BoltContext) -> None:
        ack()
        if event.get("tab") == "home" and context.team_id:
            home.publish(context.team_id, event["user"])
