"""Faults and bad input, end to end: each test checks what the user sees and that memory kept the message."""

from __future__ import annotations

import logging

import pytest

from bot.inbox import Status
from bot.replies import TRUNCATED_NOTE
from tests.conftest import MODEL_TIMEOUT, TEST_ENV, RunningBot, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI, has_tool_results
from tests.fake_slack import FakeSlack, rate_limited
from tests.slack_requests import SIGNING_SECRET, mention, message, slash_command


def memory_of(running_bot: RunningBot, channel: str) -> list[tuple[str, str]]:
    return running_bot.memory_rows(channel)


def answer_in(slack: FakeSlack, channel: str, count: int = 1) -> list[str]:
    calls = slack.wait_for_calls("chat.postMessage", count, timeout=60)
    return [call.params["text"] for call in calls if call.params["channel"] == channel]


# -- the model failing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        (Reply(status=500), "can't reach the model"),
        (Reply(status=429, headers={"Retry-After": "0"}), "rate limiting me"),
        (Reply(body="{ garbage"), "couldn't read"),
        (Reply(status=400), "refused this request"),
    ],
)
def test_model_failures_reach_the_user_as_friendly_messages(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, reply: Reply, shown: str
) -> None:
    model.respond_with(lambda body: reply)
    running_bot.send(mention("hello?", channel=channel_id))

    [text] = answer_in(slack, channel_id)
    assert shown in text and "Your message is saved" in text
    assert memory_of(running_bot, channel_id) == [("user", "hello?")]


def test_model_timeout_is_reported(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.respond_with(lambda body: Reply(text="too late", delay=MODEL_TIMEOUT + 1))
    running_bot.send(mention("slow question", channel=channel_id))

    [text] = answer_in(slack, channel_id)
    assert "took too long" in text
    assert memory_of(running_bot, channel_id) == [("user", "slow question")]


def test_transient_model_errors_are_retried(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.then(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=503))
    running_bot.send(mention("eventually", channel=channel_id))

    assert answer_in(slack, channel_id) == ["echo: eventually"]


def test_tool_call_with_unknown_tool_or_bad_arguments_still_answers(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.then(
        Reply(tool_calls=[("rm_rf", {"path": "/"})]),
        Reply(tool_calls=[("calculate", "{not json")]),
        Reply(text="I can't do that."),
    )
    running_bot.send(
        slash_command("/tool", "delete everything", channel_id=channel_id, response_url=slack.response_url("t"))
    )

    [delivered] = slack.wait_for_responses(1, name="t", timeout=60)
    assert delivered.payload["text"] == "I can't do that."
    tool_messages = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert "no tool named 'rm_rf'" in tool_messages[0] and tool_messages[1].startswith("Error:")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("expression", ["9**9**9", "10**10000000", "2**2**2**2**2**2"])
def test_calculator_abuse_is_refused_quickly(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, expression: str
) -> None:
    model.on(lambda body: not has_tool_results(body), Reply(tool_calls=[("calculate", {"expression": expression})]))
    model.on(has_tool_results, lambda body: Reply(text=f"Result: {body['messages'][-1]['content']}"))
    running_bot.send(
        slash_command("/tool", f"compute {expression}", channel_id=channel_id, response_url=slack.response_url("c"))
    )

    [delivered] = slack.wait_for_responses(1, name="c", timeout=30)
    assert "Error" in delivered.payload["text"] and "too large" in delivered.payload["text"]


# -- Slack failing -------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [rate_limited(0), 500, 503])
def test_slack_rate_limits_and_server_errors_are_retried(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, failure: object
) -> None:
    slack.fail_next("chat.postMessage", failure)  # type: ignore[arg-type]
    running_bot.send(mention("deliver me", channel=channel_id))

    calls = slack.wait_for_calls("chat.postMessage", 2)
    assert [call.status for call in calls] == [429 if failure != 500 and failure != 503 else failure, 200]
    assert calls[-1].params["text"] == "echo: deliver me"


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel"])
def test_channel_the_bot_cannot_post_in_is_logged_and_the_bot_carries_on(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail_next("reactions.add", error)
    slack.fail_next("chat.postMessage", error)
    request = mention("are you still here?", channel=channel_id)
    running_bot.send(request)
    slack.wait_for_calls("chat.postMessage", 1)
    running_bot.send(mention("next one", channel=channel_id + "Z"))

    assert answer_in(slack, channel_id + "Z", 2) == ["echo: next one"]
    assert memory_of(running_bot, channel_id)[0] == ("user", "are you still here?")
    inbox = running_bot.bot.answerer.inbox
    wait_until(lambda: inbox.status(request.payload["event_id"]) is Status.UNDELIVERABLE)
    assert any(error in record.getMessage() for record in caplog.records)


# -- bad input -----------------------------------------------------------------------------------
def test_a_40000_character_message_is_bounded_with_a_note(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    huge = ("All work and no play makes Jack a dull boy. " * 1000)[:40_000]
    running_bot.send(mention(huge, channel=channel_id))

    wait_until(lambda: any(TRUNCATED_NOTE in text for text in answer_in(slack, channel_id)))
    assert len(model.requests[0]["messages"][-1]["content"]) < 25_000
    assert memory_of(running_bot, channel_id)[0] == ("user", huge.strip())


UNICODE = "BMP: é ñ 中文 עברית; astral: 😀 🧑🏽‍💻 🏳️‍🌈 𝔘𝔫𝔦 𠀀 𓀀; plane 14: \U000e0041; private: \U000f0000"


def test_every_unicode_plane_and_emoji_round_trips(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    running_bot.send(mention(UNICODE + " and a NUL\x00 byte", channel=channel_id))

    [text] = answer_in(slack, channel_id)
    assert text == f"echo: {UNICODE} and a NUL byte"
    assert memory_of(running_bot, channel_id)[0] == ("user", f"{UNICODE} and a NUL byte")


def test_slack_markup_reaches_the_model_as_readable_text(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    running_bot.send(
        mention("ask <@U0BOB|bob> in <#C0GEN|general> about <https://x.io|the doc> &amp; more", channel=channel_id)
    )

    answer_in(slack, channel_id)
    assert model.requests[0]["messages"][-1]["content"] == "ask @bob in #general about the doc (https://x.io) & more"


def test_direct_messages_are_answered_in_the_dm(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI
) -> None:
    dm = "D0ALICE"
    running_bot.send(message("hi bot, in private", channel=dm, channel_type="im"))

    [post] = [call for call in slack.wait_for_calls("chat.postMessage") if call.params["channel"] == dm]
    assert post.params["text"] == "echo: hi bot, in private"
    assert "thread_ts" not in post.params


def test_shared_channel_mention_from_another_workspace_is_answered(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    request = mention(
        "hello from the partner org", channel=channel_id, user="U0PARTNER", extra={"user_team": "T0OTHER"}
    )
    running_bot.send(request)

    assert answer_in(slack, channel_id) == ["echo: hello from the partner org"]


def test_whitespace_only_mention_gets_usage(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    running_bot.send(mention(" \n\t  ", channel=channel_id))

    [text] = answer_in(slack, channel_id)
    assert "Mention me with a question" in text and model.requests == []


# -- security ------------------------------------------------------------------------------------
def test_secrets_never_reach_the_logs(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model.then(Reply(status=401))
    running_bot.send(mention("first", channel=channel_id))
    running_bot.send(mention("second", channel=channel_id))
    running_bot.send(mention("forged", channel=channel_id).signed(signing_secret="nope"))
    answer_in(slack, channel_id, 2)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in ["xoxb-test-token", SIGNING_SECRET, TEST_ENV["OPENAI_API_KEY"]]:
        assert secret not in logged
