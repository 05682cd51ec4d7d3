"""Answers shown as the model writes them, with Slack's chat streaming (start, append, stop).

The first words go out the moment they arrive (`chat.startStream`); later ones are gathered and
appended at most every `APPEND_EVERY` seconds (`chat.appendStream` is rate limited, and a call per
token would be hundreds of calls); the stream is stopped with the answer's last words, its blocks
(Sources, feedback) and the request's metadata (`chat.stopStream`), which marks the answer delivered
for a restarted bot. slack_sdk's `ChatStream` helper buffers by size, not by time, so the three methods
are called directly. Slack renders the streamed Markdown itself.

- Refused: where Slack won't start a stream (an older workspace, a missing scope, a conversation it
  does not stream into), nothing is shown until the answer is complete, and `finish` says so: the
  caller posts it as a normal message.
- Durable: the stream's ts goes to `on_started` before anything is appended, so that a bot restarted
  after a crash replaces that message (`bot.replies.replace_message`) instead of posting a second
  answer beside it.
- Broken midway: if an append or the stop fails, the rest is still gathered and the message is
  replaced at the end with the whole answer, as a normal message would show it.
- Long: one streamed message holds `STREAM_LIMIT` characters; `finish` returns what did not fit, for
  normal messages after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.progress import RunBlocking
from bot.replies import Blocks, answer_messages, answer_metadata, replace_message

logger = logging.getLogger(__name__)

APPEND_EVERY = 0.3  # seconds between appends to one stream
STREAM_LIMIT = 12_000  # characters of Markdown in one streamed message (Slack's limit for one markdown_text)


@dataclass(frozen=True)
class StreamTarget:
    """Where a stream goes: a thread of a conversation, for a user of a workspace (Slack asks who the
    recipient is when streaming into a channel)."""

    channel: str
    thread_ts: str
    team_id: str
    user_id: str


@dataclass(frozen=True)
class Finished:
    """How `AnswerStream.finish` ended: whether the answer is in Slack, and the text that did not fit."""

    delivered: bool
    overflow: str = ""


class AnswerStream:
    """One answer streamed into Slack: `feed` it the words on the event loop, then `finish` it."""

    def __init__(
        self,
        client: WebClient,
        run: RunBlocking,
        target: StreamTarget,
        on_started: Callable[[str], Awaitable[None]],
    ) -> None:
        self._client, self._run, self._target = client, run, target
        self._on_started = on_started
        self._text = ""  # everything fed
        self._sent = 0  # how much of it Slack has
        self._ts: str | None = None
        self._refused = self._broken = self._finishing = False
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    @property
    def ts(self) -> str | None:
        """The streamed message's ts, once Slack started it."""
        return self._ts

    def feed(self, piece: str) -> None:
        """More of the answer; sent at once if the stream is idle, else with the next append."""
        self._text += piece
        if self._refused or self._broken or self._finishing:
            return
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._send())

    async def finish(self, markdown: str, closing: Blocks, request_id: str) -> Finished:
        """End the stream with the complete answer `markdown` (what was fed, and perhaps a note after
        it) and the `closing` blocks under it. Not delivered if the stream never started: the caller
        posts the answer instead."""
        self._finishing = True
        self._wake.set()
        if self._pump is not None:
            await self._pump
        if self._ts is None:
            return Finished(False)
        shown = self._text[: self._sent]
        if self._broken or not markdown.startswith(shown):
            return await self._replace(markdown, closing, request_id)
        end = self._fitting(markdown)
        rest = markdown[self._sent : end]
        stop = partial(
            self._client.chat_stopStream,
            channel=self._target.channel,
            ts=self._ts,
            markdown_text=rest or None,
            blocks=closing or None,
            metadata=answer_metadata(request_id),
        )
        try:
            await self._run(stop)
        except SlackApiError as error:
            logger.warning("could not stop the stream in %s: %s", self._target.channel, _code(error))
            return await self._replace(markdown, closing, request_id)
        return Finished(True, markdown[end:].lstrip())

    async def _send(self) -> None:
        """Send what was fed and not sent, then wait `APPEND_EVERY` (or until `finish`) and repeat."""
        while not (self._refused or self._broken):
            piece = self._text[self._sent : self._fitting(self._text)]
            if not piece.strip():
                return  # nothing to show yet (Slack refuses blank text), or the message is full
            try:
                await (self._append(piece) if self._ts else self._start(piece))
            except SlackApiError as error:
                self._refused, self._broken = self._ts is None, self._ts is not None
                logger.info(
                    "streaming %s in %s: %s",
                    "refused" if self._refused else "broke",
                    self._target.channel,
                    _code(error),
                )
                return
            self._sent += len(piece)
            if self._finishing:
                return
            with contextlib.suppress(TimeoutError):  # pacing, unless `finish` wakes it
                await asyncio.wait_for(self._wake.wait(), APPEND_EVERY)

    def _fitting(self, text: str) -> int:
        """How much of `text` the streamed message holds: all of it up to `STREAM_LIMIT`, else up to
        the last space or line break before the limit (a word is not cut in two across messages)."""
        if len(text) <= STREAM_LIMIT:
            return len(text)
        cut = max(text.rfind(" ", 0, STREAM_LIMIT), text.rfind("\n", 0, STREAM_LIMIT)) + 1
        return max(cut if cut > STREAM_LIMIT // 2 else STREAM_LIMIT, self._sent)

    async def _start(self, piece: str) -> None:
        target = self._target
        start = partial(
            self._client.chat_startStream,
            channel=target.channel,
            thread_ts=target.thread_ts,
            markdown_text=piece,
            recipient_team_id=target.team_id,
            recipient_user_id=target.user_id,
        )
        response = await self._run(start)
        self._ts = str(response["ts"])
        try:
            await self._on_started(self._ts)
        except Exception:  # the answer still streams; only a crash before it ends could post it twice
            logger.exception("could not record the stream's ts in %s", target.channel)

    async def _append(self, piece: str) -> None:
        assert self._ts is not None
        append = partial(self._client.chat_appendStream, channel=self._target.channel, ts=self._ts, markdown_text=piece)
        await self._run(append)

    async def _replace(self, markdown: str, closing: Blocks, request_id: str) -> Finished:
        """Put the whole answer in the streamed message; not delivered if Slack won't have that either."""
        assert self._ts is not None
        target = self._target
        replace = partial(
            replace_message,
            self._client,
            target.channel,
            target.thread_ts,
            self._ts,
            answer_messages(markdown),
            request_id,
            closing,
        )
        try:
            await self._run(replace)
        except SlackApiError as error:
            logger.warning("could not complete the streamed answer in %s: %s", target.channel, _code(error))
            return Finished(False)
        return Finished(True)


def _code(error: SlackApiError) -> str:
    return str(error.response.get("error", error))
