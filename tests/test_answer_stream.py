"""`AnswerStream` against the test Slack server, without a bot: pacing, breakage midway, refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.streaming import APPEND_EVERY, AnswerStream, StreamTarget
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import USER_ID, next_ts


def run_stream(slack: FakeSlack, feed: Callable[[AnswerStream], Any], final: str) -> tuple[bool, list[str]]:
    """Stream into a channel thread: `feed(stream)` (a coroutine) then `finish(final)`; (delivered, ts noted)."""
    client = WebClient(token="xoxb-test", base_url=slack.base_url)
    noted: list[str] = []
    with ThreadPoolExecutor(4) as pool:

        async def main() -> bool:
            loop = asyncio.get_running_loop()

            async def run(function: Callable[[], Any]) -> Any:
                return await loop.run_in_executor(pool, function)

            async def started(ts: str) -> None:
                noted.append(ts)

            target = StreamTarget("C0STREAM", next_ts(), TEAM_ID, USER_ID)
            stream = AnswerStream(client, run, target, started)
            await feed(stream)
            return (await stream.finish(final, [], "request-1")).delivered

        return asyncio.run(main()), noted


@pytest.fixture
def slack() -> Any:
    with FakeSlack() as server:
        yield server
        assert server.spec_errors == []


def test_pieces_fed_quickly_are_gathered_into_few_appends(slack: FakeSlack) -> None:
    async def feed(stream: AnswerStream) -> None:
        for n in range(50):
            stream.feed(f"w{n} ")
            await asyncio.sleep(0.01)  # a model writing a word every 10 ms, for 0.5 s

    answer = "".join(f"w{n} " for n in range(50))
    delivered, noted = run_stream(slack, feed, answer)

    [stream] = slack.streams()
    assert delivered and stream.state == "stopped" and stream.text == answer
    assert noted == [stream.ts], "the stream's ts is noted for a restart"
    assert len(stream.appends) <= 2 + 0.5 / APPEND_EVERY + 1, "paced, not a call per word"


def test_an_append_failing_midway_leaves_the_whole_answer_in_the_message(slack: FakeSlack) -> None:
    slack.fail_next("chat.appendStream", "ratelimited")

    async def feed(stream: AnswerStream) -> None:
        stream.feed("first ")
        await asyncio.sleep(APPEND_EVERY / 3)
        stream.feed("second ")
        await asyncio.sleep(APPEND_EVERY * 2)  # the append of "second" fails
        stream.feed("third")

    delivered, _ = run_stream(slack, feed, "first second third")

    [message] = slack.messages("C0STREAM")
    assert delivered
    assert message["text"] == "first second third"
    assert message["metadata"]["event_payload"] == {"request_id": "request-1"}


def test_a_refused_stream_is_not_delivered_so_the_caller_posts_it(slack: FakeSlack) -> None:
    slack.fail_next("chat.startStream", "not_allowed_token_type")

    async def feed(stream: AnswerStream) -> None:
        stream.feed("some words")

    delivered, noted = run_stream(slack, feed, "some words")

    assert not delivered and noted == []
    assert slack.messages("C0STREAM") == []
