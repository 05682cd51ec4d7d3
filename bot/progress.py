"""Showing that the bot is at work: a status line on the thread, or an hourglass where Slack won't.

`ThreadStatus` sets the thread's status ("is thinking…", then "is using calculate…" while tools run)
with `assistant.threads.setStatus` once the bot has worked half a second without showing anything.
Slack shows it under the thread and clears it by itself when the answer arrives; it works in
assistant threads and, with `chat:write`, in channel threads. Where Slack refuses it,
`ProgressReaction` is the fallback: an hourglass on the user's message if the bot works for more than
a moment (fast answers get no reaction at all: no flicker, two Slack calls saved), removed when the
answer is posted. Failing to show progress is harmless and only logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

logger = logging.getLogger(__name__)

WORKING_REACTION = "hourglass_flowing_sand"
PROGRESS_DELAY = 0.8  # seconds before the hourglass appears
STATUS_DELAY = 0.5  # seconds of work before the thread's status is set
THINKING = "is thinking…"
USING_TOOLS = "is using {tools}…"  # .format(tools=...)

RunBlocking = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking call off the event loop (on the I/O pool) and awaits its result."""


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


class ThreadStatus:
    """`async with ThreadStatus(...)`: the thread's status while the bot works, else the hourglass.

    The status is set once the bot has worked `delay` seconds without showing anything (a stream that
    started calls `shown`), so quick answers cost no Slack call and no flicker; setting it never holds
    up the answer. `using(tools)` updates it (called on the event loop when the model asks for tools)."""

    def __init__(
        self,
        client: WebClient,
        run: RunBlocking,
        channel: str,
        thread_ts: str,
        message_ts: str,
        delay: float = STATUS_DELAY,
    ) -> None:
        self._client, self._run = client, run
        self._channel, self._thread_ts, self._message_ts = channel, thread_ts, message_ts
        self._delay, self._status = delay, THINKING
        self._timer: asyncio.TimerHandle | None = None
        self._setting: asyncio.Task[bool] | None = None
        self._fallback: ProgressReaction | None = None

    async def __aenter__(self) -> ThreadStatus:
        self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)
        return self

    def _start(self) -> None:
        self._setting = asyncio.ensure_future(self._set(self._status))

    def shown(self) -> None:
        """The answer is showing: a status not set by now is not needed."""
        if self._timer is not None:
            self._timer.cancel()

    def using(self, tools: list[str]) -> None:
        """The model is about to run `tools`: say so, if the status line works here."""
        names = ", ".join(sorted({tool for tool in tools if tool}))
        if not names or self._fallback is not None:
            return
        self._status = USING_TOOLS.format(tools=names)
        previous = self._setting
        if previous is None:
            return  # not set yet: it will say this when it is

        async def update() -> bool:
            return await previous and await self._set(self._status)

        self._setting = asyncio.ensure_future(update())

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.shown()
        if self._setting is not None:
            await self._setting
        if self._fallback is not None:
            await self._fallback.__aexit__(kind, error, trace)

    async def _set(self, status: str) -> bool:
        """Set the status; on the first refusal, switch to the hourglass for the rest of the turn."""
        call = partial(
            self._client.assistant_threads_setStatus, channel_id=self._channel, thread_ts=self._thread_ts, status=status
        )
        try:
            await self._run(call)
        except SlackApiError as error:
            logger.info("thread status refused (%s); showing an hourglass instead", error.response.get("error"))
            if self._fallback is None:
                reaction_delay = max(0.0, PROGRESS_DELAY - self._delay)  # the hourglass's usual moment
                self._fallback = ProgressReaction(
                    self._client, self._run, self._channel, self._message_ts, reaction_delay
                )
                await self._fallback.__aenter__()
            return False
        return True
