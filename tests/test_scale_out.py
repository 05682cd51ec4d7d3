"""Scale-out: two bot processes on one real PostgreSQL server serve the same workspace."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from bot.acknowledgements import STORAGE_DOWN
from tests.bot_process import BotProcess
from tests.conftest import ADMIN_ID, bot_environment, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI, last_user_text
from tests.fake_slack import FakeSlack
from tests.postgres import PostgresServer
from tests.slack_requests import SlackSender, mention, message, slash_command, view_submission


def start_two(env: dict[str, str], tmp_path: Path) -> tuple[BotProcess, BotProcess]:
    first = BotProcess(env, tmp_path / "first.log").start()
    return first, BotProcess(env, tmp_path / "second.log").start()


def test_two_processes_answer_each_message_once_even_when_slack_retries_on_the_other(
    postgres: PostgresServer, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    env = bot_environment(slack, model, PIXELTABLE_DB_CONNECT_STR=postgres.url, PIXELTABLE_HOME=str(tmp_path / "home"))
    requests = [mention(f"m{n} in {c}", channel=c) for n in range(4) for c in (channel_id + "A", channel_id + "B")]
    first, second = start_two(env, tmp_path)
    try:
        with SlackSender() as sender:
            for index, request in enumerate(requests):
                here, there = (first, second) if index % 2 == 0 else (second, first)
                assert sender.send(here.events_url, request).status == 200
                assert sender.send(there.events_url, request.retry(1)).status == 200
            posts = slack.wait_for_calls("chat.postMessage", len(requests), timeout=120)
    finally:
        first.stop()
        second.stop()

    answered = sorted(post.params["thread_ts"] for post in posts)
    assert answered == sorted(request.payload["event"]["ts"] for request in requests)
    assert len(model.requests) == len(requests)


def test_when_one_process_dies_the_other_answers_its_requests(
    postgres: PostgresServer, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    env = bot_environment(
        slack,
        model,
        PIXELTABLE_DB_CONNECT_STR=postgres.url,
        PIXELTABLE_HOME=str(tmp_path / "home"),
        PIXELBOT_WORKERS="1",
    )
    first, second = start_two(env, tmp_path)
    requests = [mention(f"question {n}", channel=channel_id) for n in range(3)]
    model.delay = 1.0
    try:
        with SlackSender() as sender:
            for request in requests:
                assert sender.send(first.events_url, request).status == 200
            model.wait_for_requests(1)
            first.stop(signal.SIGKILL)
            posts = slack.wait_for_calls("chat.postMessage", len(requests), timeout=120)
    finally:
        model.delay = 0.0
        first.stop()
        second.stop()

    assert sorted(post.params["thread_ts"] for post in posts) == sorted(r.payload["event"]["ts"] for r in requests)


def test_the_bot_survives_a_database_restart(
    postgres: PostgresServer, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    """While the database is down an event gets 503 (so Slack delivers it again); once it is back the
    redelivery is answered, exactly once."""
    env = bot_environment(slack, model, PIXELTABLE_DB_CONNECT_STR=postgres.url, PIXELTABLE_HOME=str(tmp_path / "home"))
    bot = BotProcess(env, tmp_path / "bot.log").start()
    request = mention("sent while the database is down", channel=channel_id)
    tool = slash_command("/tool", "what time is it?", channel_id=channel_id, response_url=slack.response_url("down"))
    try:
        with SlackSender(timeout=60) as sender:
            sender.send(bot.events_url, mention("before the outage", channel=channel_id))
            slack.wait_for_calls("chat.postMessage", 1, timeout=60)
            postgres.stop()
            try:
                during_outage = sender.send(bot.events_url, request)
                tool_during_outage = sender.send(bot.events_url, tool)
            finally:
                postgres.start()
            redelivered = sender.send(bot.events_url, request.retry(1))
            sender.send(bot.events_url, mention("after the outage", channel=channel_id))  # FIFO: answered last
            posts = slack.wait_for_calls("chat.postMessage", 3, timeout=60)
    finally:
        bot.stop()

    assert during_outage.status == 503, bot.log()
    assert tool_during_outage.status == 200 and tool_during_outage.json()["text"] == STORAGE_DOWN, "told, not retried"
    assert slack.responses("down") == [], "and, as told, not answered later"
    assert redelivered.status == 200, bot.log()
    texts = [post.params["text"] for post in posts]
    assert texts == ["echo: before the outage", "echo: sent while the database is down", "echo: after the outage"]
    assert [last_user_text(body) for body in model.requests].count("sent while the database is down") == 1


def test_a_settings_change_made_through_one_process_reaches_the_other(
    postgres: PostgresServer, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    env = bot_environment(
        slack,
        model,
        PIXELTABLE_DB_CONNECT_STR=postgres.url,
        PIXELTABLE_HOME=str(tmp_path / "home"),
        PIXELBOT_MODELS="gpt-4o",
    )
    first, second = start_two(env, tmp_path)
    try:
        with SlackSender() as sender:
            assert sender.send(second.events_url, mention("before", channel=channel_id)).status == 200
            model.wait_for_requests(1, timeout=60)  # the second process has the channel's agent open
            command = slash_command("/pixelbot", "settings", channel_id=channel_id, user_id=ADMIN_ID,
                                    response_url=slack.response_url("s"))  # fmt: skip
            assert sender.send(first.events_url, command).status == 200
            wait_until(lambda: bool(slack.opened_modals()), timeout=30, what="views.open")
            view = slack.opened_modals()[-1].view
            assert (
                sender.send(first.events_url, view_submission(view, {"model": "gpt-4o"}, user=ADMIN_ID)).status == 200
            )
            wait_until(lambda: bool(slack.calls("chat.postEphemeral")), timeout=30, what="the confirmation")

            def second_uses_the_new_model() -> bool:  # each probe is a new question to the second process
                count = len(model.requests)
                sender.send(second.events_url, mention(f"probe {count}", channel=channel_id))
                return bool(model.wait_for_requests(count + 1, timeout=30)[-1]["model"] == "gpt-4o")

            wait_until(second_uses_the_new_model, timeout=60, what="the second process using the new model")
    finally:
        first.stop()
        second.stop()


def _in_order(requests: list[dict[str, Any]], texts: list[str]) -> None:
    """Each question reached the model after the previous one was answered and stored: its prompt
    holds that answer (the channel's top level is one conversation)."""
    asked = [last_user_text(body) for body in requests]
    assert asked[-len(texts) :] == texts
    for body, previous in zip(requests[-len(texts) + 1 :], texts, strict=False):
        assert any(f"echo: {previous}" in str(message.get("content")) for message in body["messages"]), previous


def test_two_processes_answer_interleaved_deliveries_of_each_channel_in_arrival_order(
    postgres: PostgresServer, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    """Three channels at once, each one's questions delivered alternately to the two processes: every
    channel is answered in order, each question once, and the channels do not wait for each other."""
    env = bot_environment(slack, model, PIXELTABLE_DB_CONNECT_STR=postgres.url, PIXELTABLE_HOME=str(tmp_path / "home"))
    channels = [channel_id + suffix for suffix in "ABC"]
    texts = {channel: [f"question {n} in {channel}" for n in range(4)] for channel in channels}
    first, second = start_two(env, tmp_path)
    # each channel's first answer takes long enough for the other process to start on its next question
    firsts = {questions[0] for questions in texts.values()}
    model.respond_with(
        lambda body: Reply(f"echo: {last_user_text(body)}", delay=1.5 if last_user_text(body) in firsts else 0)
    )
    try:
        with SlackSender() as sender:
            for index in range(4):
                for channel in channels:
                    receiver = first if index % 2 == 0 else second
                    sent = sender.send(receiver.events_url, mention(texts[channel][index], channel=channel))
                    assert sent.status == 200
            slack.wait_for_calls("chat.postMessage", 12, timeout=120)
    finally:
        first.stop()
        second.stop()

    for channel in channels:
        posted = [post.params["text"] for post in slack.calls("chat.postMessage") if post.params["channel"] == channel]
        assert posted == [f"echo: {text}" for text in texts[channel]]
        of_channel = [body for body in model.requests if last_user_text(body) in texts[channel]]
        _in_order(of_channel, texts[channel])
    started = [last_user_text(body) for body in model.requests[:3]]
    assert sorted(started) == sorted(firsts), "the three channels' first questions were thought about at once"


def test_when_the_process_holding_a_channel_dies_the_other_answers_the_channel_in_order(
    postgres: PostgresServer, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    env = bot_environment(slack, model, PIXELTABLE_DB_CONNECT_STR=postgres.url, PIXELTABLE_HOME=str(tmp_path / "home"))
    texts = [f"question {n}" for n in range(4)]
    requests = [mention(text, channel=channel_id) for text in texts]
    first, second = start_two(env, tmp_path)
    model.delay = 2.0
    try:
        with SlackSender() as sender:
            assert sender.send(first.events_url, requests[0]).status == 200
            model.wait_for_requests(1, timeout=60)  # the first process holds the channel, thinking
            for index, request in enumerate(requests[1:], start=1):
                receiver = second if index % 2 else first
                assert sender.send(receiver.events_url, request).status == 200
            first.stop(signal.SIGKILL)
            model.delay = 0.0
            posts = slack.wait_for_calls("chat.postMessage", len(texts), timeout=120)
    finally:
        model.delay = 0.0
        first.stop()
        second.stop()

    assert [post.params["thread_ts"] for post in posts] == [r.payload["event"]["ts"] for r in requests]
    assert len(slack.calls("chat.postMessage")) == len(texts)
    _in_order(model.requests, texts)


def test_two_processes_take_a_listening_channels_messages_in_once_each_and_in_order(
    postgres: PostgresServer, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    """Listened messages delivered alternately to two processes, and each retried on the other, are
    taken in by the channel's lease holder: the next answer's prompt holds each once, in order."""
    env = bot_environment(slack, model, PIXELTABLE_DB_CONNECT_STR=postgres.url, PIXELTABLE_HOME=str(tmp_path / "home"))
    notes = [f"note {n}: the build is green again" for n in range(12)]
    first = BotProcess(env, tmp_path / "first.log").start()
    second: BotProcess | None = None
    try:
        with SlackSender() as sender:
            switch = slash_command(
                "/pixelbot", "listen on", channel_id=channel_id, response_url=slack.response_url("on")
            )
            assert sender.send(first.events_url, switch).status == 200
            slack.wait_for_responses(1, name="on")
            second = BotProcess(env, tmp_path / "second.log").start()  # reads the switch as it starts
            for index, note in enumerate(notes):
                here, there = (first, second) if index % 2 == 0 else (second, first)
                delivery = message(note, channel=channel_id)
                assert sender.send(here.events_url, delivery).status == 200
                assert sender.send(there.events_url, delivery.retry(1)).status == 200
            assert sender.send(second.events_url, mention("what was noted?", channel=channel_id)).status == 200
            slack.wait_for_calls("chat.postMessage", 2, timeout=120)  # the announcement, then the answer
    finally:
        first.stop()
        if second is not None:
            second.stop()

    [request] = model.requests
    said = [body["content"] for body in request["messages"] if body["role"] == "user"]
    assert said == [*notes, "what was noted?"]
