"""Load: 20 channels x 10 messages at once, with a model that takes its time.

Every message must be answered once, in its channel and thread, in order within its conversation.
The figures are printed (run with `-s` to see them); speed is judged by benchmarks, not asserted here.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import RunningBot
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackRequest, SlackSender, mention

CHANNELS, MESSAGES, MODEL_DELAY = 20, 10, 0.2


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@pytest.mark.slow
def test_20_channels_of_10_messages_are_all_answered_once_in_order(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.delay = MODEL_DELAY
    channels = [f"{channel_id}{index:02d}" for index in range(CHANNELS)]
    conversations = {
        channel: [mention(f"{channel} #{n}", channel=channel) for n in range(MESSAGES)] for channel in channels
    }
    sent_at: dict[str, float] = {}
    acks: list[float] = []

    def talk(requests: list[SlackRequest]) -> None:
        with SlackSender() as sender:
            for request in requests:
                sent_at[request.payload["event"]["ts"]] = time.monotonic()
                response = sender.send(running_bot.events_url, request)
                assert response.status == 200
                acks.append(response.elapsed)

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(CHANNELS) as pool:
            list(pool.map(talk, conversations.values()))
        posts = slack.wait_for_calls("chat.postMessage", CHANNELS * MESSAGES, timeout=300)
    finally:
        model.delay = 0.0
    elapsed = max(post.received_at for post in posts) - started

    assert len(posts) == CHANNELS * MESSAGES
    for channel, requests in conversations.items():
        answered = [post for post in posts if post.params["channel"] == channel]
        assert [post.params["thread_ts"] for post in answered] == [r.payload["event"]["ts"] for r in requests]
        assert [post.params["text"] for post in answered] == [f"echo: {channel} #{n}" for n in range(MESSAGES)]
    latencies = [post.received_at - sent_at[post.params["thread_ts"]] for post in posts]
    print(
        f"\nload: {CHANNELS} channels x {MESSAGES} messages, model delay {MODEL_DELAY * 1000:.0f} ms, "
        f"{running_bot.bot.settings.workers} workers: {len(posts) / elapsed:.1f} answers/s; "
        f"end-to-end p50 {ms(statistics.median(latencies))}, p99 {ms(percentile(latencies, 0.99))}; "
        f"ack p50 {ms(statistics.median(acks))}, p99 {ms(percentile(acks, 0.99))}"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
