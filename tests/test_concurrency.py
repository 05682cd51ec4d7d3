"""Many conversations at once: no channel waits behind another, and acknowledgements never wait for answers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bot.inbox import Status
from tests.conftest import RunningBot, stalled_insert, wait_until
from tests.fake_openai import ScriptedOpenAI, blocked_until, last_user_text
from tests.fake_slack import FakeSlack
from tests.slack_requests import mention, slash_command


def test_acks_return_while_every_model_call_is_blocked(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    release, held = threading.Event(), list[str]()
    model.respond_with(blocked_until(release, held))
    channels = [f"{channel_id}{index}" for index in range(12)]
    try:
        with ThreadPoolExecutor(len(channels)) as pool:
            statuses = list(pool.map(lambda c: running_bot.send(mention(f"hi from {c}", channel=c)).status, channels))
        wait_until(lambda: len(held) == len(channels), what="every model call in flight")
        late = running_bot.send(mention("one more", channel=channels[0]))
        tool = running_bot.send(
            slash_command("/tool", "what time is it?", channel_id=channel_id, response_url=slack.response_url("t"))
        )
        acked_while_blocked = not release.is_set()
    finally:
        release.set()

    assert statuses == [200] * len(channels) and late.status == 200 and tool.status == 200
    assert acked_while_blocked
    slack.wait_for_calls("chat.postMessage", len(channels) + 1, timeout=30)


def test_a_channel_is_answered_while_another_channels_model_call_is_blocked(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    release, held = threading.Event(), list[str]()
    model.on(lambda body: "slow" in last_user_text(body), blocked_until(release, held))
    try:
        running_bot.send(mention("slow question", channel=channel_id + "A"))
        wait_until(lambda: held == ["slow question"], what="the slow channel's model call in flight")
        running_bot.send(mention("quick question", channel=channel_id + "B"))
        [post] = slack.wait_for_calls("chat.postMessage", 1)
        answered_while_blocked = not release.is_set()
    finally:
        release.set()

    assert answered_while_blocked and post.params["channel"] == channel_id + "B"
    assert post.params["text"] == "echo: quick question"
    slack.wait_for_calls("chat.postMessage", 2)


def test_a_channels_second_message_waits_for_its_first_answer(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    release, held = threading.Event(), list[str]()
    model.on(lambda body: "first" in last_user_text(body), blocked_until(release, held))
    try:
        running_bot.send(mention("first", channel=channel_id))
        wait_until(lambda: held == ["first"], what="the first model call in flight")
        running_bot.send(mention("second", channel=channel_id))
        running_bot.send(mention("other channel", channel=channel_id + "Z"))
        slack.wait_for_calls("chat.postMessage", 1)  # the other channel's answer
        second_waited = len(model.requests) == 2  # first + other channel; second not asked yet
    finally:
        release.set()

    posts = slack.wait_for_calls("chat.postMessage", 3)
    assert second_waited
    assert [p.params["text"] for p in posts if p.params["channel"] == channel_id] == ["echo: first", "echo: second"]
    assert [m["content"] for m in model.requests[-1]["messages"][1:]] == ["first", "echo: first", "second"]


def test_a_turn_is_stored_only_once_another_answer_is_delivered_or_after_the_lulls_patience(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    """While another answer is being delivered (here a `/tool` answer whose post Slack does not answer
    yet), an answered turn's bookkeeping waits for a lull, at most `Lull.patience` after its own answer
    was delivered: its inbox row closes no sooner than that."""
    busy, quiet = f"{channel_id}B", f"{channel_id}Q"
    release = threading.Event()
    slack.hold_responses("held", release)
    try:
        tool = slash_command("/tool", "what is 2+2?", channel_id=busy, response_url=slack.response_url("held"))
        assert running_bot.send(tool).status == 200
        slack.wait_for_responses(1, name="held", timeout=30)  # posted: its delivery is in progress
        question = mention("hello there", channel=quiet)
        assert running_bot.send(question).status == 200
        [answer] = slack.wait_for_calls("chat.postMessage", 1, timeout=30)
        request_id = str(question.payload["event_id"])
        wait_until(lambda: running_bot.bot.inbox.status(request_id) is Status.ANSWERED, what="the turn stored")
        closed_after = time.monotonic() - answer.received_at
    finally:
        release.set()

    assert closed_after >= running_bot.bot.answerer.lull.patience


def test_a_slack_request_counts_as_arriving_until_it_is_acknowledged(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    """What bookkeeping makes way for (`bot.arrivals`, `bot.lull`): counted from the HTTP endpoint."""
    request, arrivals = mention("hold on", channel=channel_id), running_bot.bot.arrivals
    assert arrivals.quiet()
    with ThreadPoolExecutor(1) as pool:
        with stalled_insert(running_bot.bot.inbox, request.payload["event_id"], channel_id, "mention"):
            sent = pool.submit(running_bot.send, request)
            wait_until(lambda: not arrivals.quiet(), what="the request counted while it is being stored")
        assert sent.result(timeout=30).status == 200
    assert arrivals.quiet()
    slack.wait_for_calls("chat.postMessage", 1)
