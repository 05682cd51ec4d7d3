"""An hourglass on the user's message while the bot works, if it works for more than a moment.

Fast answers get no reaction at all: no flicker for the user and two Slack calls saved. The reaction is
removed when the block ends (after the answer is posted). Failing to react (e.g. the bot left the
channel) is harmless and only logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

logger = logging.getLogger(__name__)

WORKING_REACTION = "hourglass_flowing_sand"
PROGRESS_DELAY = 0.8  # seconds before the hourglass appears

RunBlocking = Callable[[Callable[[], object]], Awaitable[object]]


class ProgressReaction:
    """`async with ProgressReaction(...)`: reacts after `delay` seconds, un-reacts at the end."""

    def __init__(
        self, client: WebClient, run: RunBlocking, channel: str, timestamp: str, delay: float = PROGRESS_DELAY
    ) -> None:
        self._client, self._run = client, run
        self._where = {"channel": channel, "timestamp": timestamp, "name": WORKING_REACTION}
        self._delay = delay
        self._adding: asyncio.Task[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> ProgressReaction:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._delay, self._start_adding)
        return self

    def _start_adding(self) -> None:
        self._adding = asyncio.ensure_future(self._call(self._client.reactions_add))

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._adding is not None and await self._adding:
            await self._call(self._client.reactions_remove)

    async def _call(self, method: Callable[..., object]) -> bool:
        try:
            await self._run(lambda: method(**self._where))
        except SlackApiError as error:
            logger.info("progress reaction skipped: %s", error.response.get("error"))
            return False
        return True
