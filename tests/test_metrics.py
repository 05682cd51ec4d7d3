"""`GET /metrics`, end to end: signed requests in over HTTP, then the bot's metrics scraped from the same
server and parsed as Prometheus parses them. Nothing of pixelbot's own code is mocked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from bot.inbox import InboxItem, RequestKind
from bot.metrics import Metrics
from tests.conftest import RunningBot, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import mention, message, slash_command

GAUGES = (
    "pixelbot_inbox_open_requests",
    "pixelbot_inbox_oldest_open_seconds",
    "pixelbot_answers_in_flight",
    "pixelbot_agents_open",
    "pixelbot_gc_frozen_objects",
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(running_bot: RunningBot) -> Samples:
    response = running_bot.sender._client.get(f"{running_bot.root_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_for_value(running_bot: RunningBot, expected: float, name: str, **labels: str) -> Samples:
    """Scrape until the sample has the expected value (answers are counted once their inbox row closes,
    just after they are posted); the last scrape."""
    scraped: list[Samples] = []

    def reached() -> bool:
        scraped.append(scrape(running_bot))
        return value(scraped[-1], name, **labels) == expected

    try:
        wait_until(reached, timeout=30, what=f"{name}{labels} == {expected}")
    except AssertionError:
        raise AssertionError(f"{name}{labels} is {value(scraped[-1], name, **labels)}, not {expected}") from None
    return scraped[-1]


def test_metrics_count_answers_by_kind_and_outcome(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    before = scrape(running_bot)
    assert value(before, "pixelbot_requests_total", kind="mention", outcome="answered") == 0
    assert value(before, "pixelbot_answer_seconds_count", kind="mention") == 0

    running_bot.send(mention("first", channel=channel_id))
    running_bot.send(mention("second", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 2)
    running_bot.send(
        slash_command("/tool", "what is 6*7?", response_url=slack.response_url("calc"), channel_id=channel_id)
    )
    slack.wait_for_responses(1, name="calc")

    wait_for_value(running_bot, 2, "pixelbot_requests_total", kind="mention", outcome="answered")
    after = wait_for_value(running_bot, 1, "pixelbot_requests_total", kind="tool", outcome="answered")
    assert value(after, "pixelbot_requests_total", kind="mention", outcome="failed") == 0
    assert value(after, "pixelbot_answer_seconds_count", kind="mention") == 2
    assert value(after, "pixelbot_answer_seconds_count", kind="tool") == 1
    assert 0 < (value(after, "pixelbot_answer_seconds_sum", kind="mention") or 0) < 30
    assert value(after, "pixelbot_model_seconds_count") == 3  # one model call per answer
    assert all(
        value(after, "pixelbot_model_errors_total", failure=failure) == 0 for failure in ("unavailable", "timeout")
    )


def test_a_failing_model_counts_a_model_error_and_a_failed_request(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    assert value(scrape(running_bot), "pixelbot_model_errors_total", failure="unavailable") == 0
    model.respond_with(lambda body: Reply(status=500))  # every try of the call, retries included
    running_bot.send(mention("are you there?", channel=channel_id))
    [post] = slack.wait_for_calls("chat.postMessage", timeout=60)
    assert "can't reach the model" in post.params["text"]

    after = wait_for_value(running_bot, 1, "pixelbot_requests_total", kind="mention", outcome="failed")
    assert value(after, "pixelbot_model_errors_total", failure="unavailable") == 1
    assert value(after, "pixelbot_model_seconds_count") == 0, "a failed call has no duration to report"
    assert value(after, "pixelbot_answer_seconds_count", kind="mention") == 1, "the friendly error was delivered"


def test_messages_taken_in_are_counted_by_kind(running_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    running_bot.send(
        slash_command("/pixelbot", "listen on", channel_id=channel_id, response_url=slack.response_url("on"))
    )
    slack.wait_for_responses(1, name="on")
    running_bot.send(message("the deploy freeze starts friday", channel=channel_id))

    wait_for_value(running_bot, 1, "pixelbot_requests_total", kind="listened", outcome="answered")


def test_gauges_read_the_inbox_and_the_answering_machinery(running_bot: RunningBot, channel_id: str) -> None:
    assert all(value(scrape(running_bot), name) is not None for name in GAUGES)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    stuck = InboxItem("Ev-stuck", RequestKind.MENTION, TEAM_ID, channel_id, "U0001", "hi", received_at=long_ago)
    running_bot.bot.inbox.receive(stuck)  # received, never answered

    samples = scrape(running_bot)
    assert value(samples, "pixelbot_inbox_open_requests") == 1
    assert (value(samples, "pixelbot_inbox_oldest_open_seconds") or 0) >= 3600
    assert value(samples, "pixelbot_answers_in_flight") == running_bot.bot.answerer.pending()
    assert value(samples, "pixelbot_agents_open") == len(running_bot.bot.agents)


def test_a_gauge_that_cannot_be_read_is_left_out_of_the_scrape() -> None:
    def unreachable_inbox() -> tuple[int, float]:
        raise ConnectionError("database down")

    metrics = Metrics()
    metrics.watch(unreachable_inbox, lambda: 3, lambda: 2)
    samples = parse(metrics.render().decode())

    assert value(samples, "pixelbot_inbox_open_requests") is None
    assert value(samples, "pixelbot_inbox_oldest_open_seconds") is None
    assert value(samples, "pixelbot_answers_in_flight") == 3
    assert value(samples, "pixelbot_agents_open") == 2


def test_each_bot_has_a_registry_of_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.requests.labels("mention", "answered").inc()

    assert value(parse(second.render().decode()), "pixelbot_requests_total", kind="mention", outcome="answered") == 0
    assert not [name for name in prometheus_client.REGISTRY._names_to_collectors if name.startswith("pixelbot")]


def test_recording_a_metric_never_raises() -> None:
    naive = InboxItem("Ev1", RequestKind.MENTION, TEAM_ID, "C1", "U1", "hi", received_at=datetime.now())

    Metrics().delivered(naive)  # aware minus naive raises inside; the answer must not notice
