"""`/pixelbot`: a channel's own settings: the settings modal (`/pixelbot settings`, see
`bot.settings_modal`), listening (`/pixelbot listen on|off|status`) and forgetting
(`/pixelbot forget thread <link>|channel`, see `bot.forgetting`).

The command is acknowledged at once (nothing visible); the work runs afterwards on a pool thread,
because the rights check may ask Slack (`users.info`) and switching on posts in the channel. The
user hears back through the command's `response_url`, visible to them only; the channel is told once
when listening starts or stops, so nobody is remembered without the channel being able to see it.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot.channels import ChannelKey
from bot.exports import is_admin
from bot.forgetting import Forgetting
from bot.listening import ListeningChannels
from bot.replies import LISTEN_FAILED, LISTEN_NOT_ALLOWED, LISTEN_STATUS, LISTEN_SWITCHED, PIXELBOT_USAGE
from bot.settings_modal import SettingsModal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelCommand:
    channel: ChannelKey
    user: str
    text: str
    response_url: str
    trigger_id: str = ""  # for a modal (`/pixelbot settings`), valid for 3 s


class ChannelCommands:
    """Runs `/pixelbot` commands after their acknowledgement."""

    def __init__(
        self,
        client: WebClient,
        listening: ListeningChannels,
        admins: frozenset[str],
        admins_only: bool,
        pool: Executor,
        forgetting: Forgetting | None = None,
        settings: SettingsModal | None = None,
    ) -> None:
        self.forgetting = forgetting
        self.settings = settings
        self.client = client
        self.listening = listening
        self.admins = admins
        self.admins_only = admins_only
        self._pool = pool

    def submit(self, command: ChannelCommand) -> None:
        self._pool.submit(self.run, command)

    def run(self, command: ChannelCommand) -> None:
        """Do what `command` asks and tell its user; never raises (a failure is logged and told)."""
        try:
            reply = self._reply(command)
        except Exception:
            logger.exception("/pixelbot %r failed in %s", command.text, command.channel.channel_id)
            reply = LISTEN_FAILED
        if reply is None:  # answered otherwise (a modal opened)
            return
        message = {"text": reply} if isinstance(reply, str) else reply
        WebhookClient(command.response_url).send(response_type="ephemeral", **message)

    def _reply(self, command: ChannelCommand) -> str | dict[str, Any] | None:
        words = command.text.split()
        if [word.lower() for word in words] == ["settings"] and self.settings is not None:
            return self.settings.open(command.channel, command.user, command.trigger_id)
        if words and words[0].lower() == "forget" and self.forgetting is not None:
            return self.forgetting.ask(command.channel, command.user, words)
        words = [word.lower() for word in words]
        if len(words) == 2 and words[0] == "listen" and words[1] in ("on", "off"):
            return self._switch(command, words[1] == "on")
        if len(words) in (1, 2) and words[0] == "listen" and words[-1] in ("listen", "status"):
            return self._status(command.channel)
        return PIXELBOT_USAGE

    def _status(self, channel: ChannelKey) -> str:
        state = self.listening.state(channel)
        if state is None or not state.on:
            return LISTEN_STATUS.format(state="off", detail="")
        return LISTEN_STATUS.format(
            state="on", detail=f" (since {state.changed_at:%Y-%m-%d}, by <@{state.changed_by}>)"
        )

    def _switch(self, command: ChannelCommand, on: bool) -> str:
        if self.admins_only and not is_admin(self.client, self.admins, command.user, command.channel):
            logger.warning("/pixelbot listen refused: %s is not an admin", command.user)
            return LISTEN_NOT_ALLOWED
        refusal = self.listening.switch_announced(self.client, command.channel, on, command.user)
        return refusal or LISTEN_SWITCHED.format(state="on" if on else "off")
