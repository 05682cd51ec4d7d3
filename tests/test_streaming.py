"""Streamed answers end to end: chat.startStream / appendStream / stopStream against the test Slack
server, the scripted model streaming server-sent events, and the thread's status while it works."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from agent.agent import CUT_OFF_NOTE
from bot.progress import STATUS_DELAY, THINKING, WORKING_REACTION
from bot.replies import ANSWER_EVENT
from bot.streaming import STREAM_LIMIT
from tests.bot_process import BotProcess
from tests.conftest import RunningBot, bot_environment, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.postgres import PostgresServer
from tests.slack_requests import USER_ID, SlackSender, mention, message, next_ts


def stored_answers(bot: RunningBot, channel: str) -> list[str]:
    return [content for role, content in bot.memory_rows(channel) if role == "assistant"]


def test_a_mention_is_streamed_and_the_stopped_text_is_the_stored_answer(
    streaming_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    # a second apart, so the first words are in Slack long before the model has finished
    model.respond_with(lambda body: Reply(chunks=["The answer is **forty-two**. ", "As always."], chunk_delay=1.0))
    ts = next_ts()
    request = mention("what is the answer?", channel=channel_id, ts=ts)
    streaming_bot.send(request)

    [stream] = slack.wait_for_stream_stopped()
    assert (stream.channel, stream.thread_ts) == (channel_id, ts)
    assert (stream.recipient_team_id, stream.recipient_user_id) == (TEAM_ID, USER_ID)
    assert stream.appends[0][1] == "The answer is **forty-two**. ", "the first words go out before the rest exists"
    assert stream.text == "The answer is **forty-two**. As always."
    assert stored_answers(streaming_bot, channel_id) == [stream.text]
    assert stream.metadata == {"event_type": ANSWER_EVENT, "event_payload": {"request_id": request.payload["event_id"]}}
    assert slack.calls("chat.postMessage") == [], "streamed, not posted"
    assert model.requests[0]["stream"] is True


def test_the_thread_shows_a_status_while_the_bot_thinks(
    streaming_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.respond_with(lambda body: Reply(text="after a while", delay=STATUS_DELAY + 1.0))
    ts = next_ts()
    streaming_bot.send(mention("hello", channel=channel_id, ts=ts))

    slack.wait_for_stream_stopped()
    [status] = slack.calls("assistant.threads.setStatus")
    assert status.params == {"channel_id": channel_id, "thread_ts": ts, "status": THINKING}
    assert status.received_at < slack.calls("chat.startStream")[0].received_at
    assert slack.calls("reactions.add") == [], "no hourglass where the status line works"


def test_a_quick_answer_needs_no_status(streaming_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    """Nothing in the first STATUS_DELAY seconds, and none once the answer shows: however fast this
    machine is, an answer that shows within STATUS_DELAY never gets a status."""
    sent_at = time.monotonic()
    streaming_bot.send(mention("quick", channel=channel_id))

    [stream] = slack.wait_for_stream_stopped()
    assert streaming_bot.bot.answerer.wait_idle(30)
    if stream.appends[0][0] - sent_at < STATUS_DELAY:
        assert slack.calls("assistant.threads.setStatus") == []
    assert all(call.received_at - sent_at >= STATUS_DELAY for call in slack.calls("assistant.threads.setStatus"))


def test_where_the_status_is_refused_the_hourglass_shows_instead(
    streaming_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    slack.fail_next("assistant.threads.setStatus", "channel_type_not_supported")
    model.respond_with(lambda body: Reply(text="slowly", delay=1.5))
    ts = next_ts()
    streaming_bot.send(mention("hello", channel=channel_id, ts=ts))

    [removed] = slack.wait_for_calls("reactions.remove")
    [added] = slack.calls("reactions.add")
    assert added.params == removed.params == {"channel": channel_id, "timestamp": ts, "name": WORKING_REACTION}


def test_where_streaming_is_refused_the_answer_is_posted_once(
    streaming_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    slack.fail_next("chat.startStream", "not_allowed_token_type")
    model.respond_with(lambda body: Reply(chunks=["first ", "second ", "third"], chunk_delay=0.05))
    ts = next_ts()
    streaming_bot.send(mention("hello", channel=channel_id, ts=ts))

    [post] = slack.wait_for_calls("chat.postMessage")
    assert post.params["text"] == "first second third"
    assert post.params["thread_ts"] == ts
    assert stored_answers(streaming_bot, channel_id) == ["first second third"]
    assert [call.method for call in slack.calls() if "Stream" in call.method] == ["chat.startStream"]


def test_a_model_that_fails_midway_ends_the_stream_with_a_note(
    streaming_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.respond_with(lambda body: Reply(chunks=["Half ", "an ", "answer"], chunk_delay=0.05, cut_after=2))
    streaming_bot.send(mention("hello", channel=channel_id))

    [stream] = slack.wait_for_stream_stopped()
    assert stream.text == f"Half an \n\n{CUT_OFF_NOTE}"
    assert stored_answers(streaming_bot, channel_id) == [stream.text], "the stored answer says what Slack shows"


def test_a_long_answer_streams_up_to_the_limit_and_posts_the_rest(
    streaming_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    words = [f"word{n} " for n in range(2500)]  # ~20,000 characters
    model.respond_with(lambda body: Reply(chunks=words))
    ts = next_ts()
    streaming_bot.send(mention("a long one please", channel=channel_id, ts=ts))

    [stream] = slack.wait_for_stream_stopped(timeout=30)
    assert streaming_bot.bot.answerer.wait_idle(30)
    posts = slack.calls("chat.postMessage")
    assert STREAM_LIMIT - 20 < len(stream.text) <= STREAM_LIMIT
    shown = stream.text + " " + " ".join(post.params["text"] for post in posts)  # split at spaces
    assert shown.split() == "".join(words).split(), "every word shown once, in order"
    assert posts and all(post.params["thread_ts"] == ts for post in posts)


def test_a_direct_message_is_streamed_into_its_thread(
    streaming_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI
) -> None:
    ts = next_ts()
    streaming_bot.send(message("hi there", channel="D0STREAM", channel_type="im", ts=ts))

    [stream] = slack.wait_for_stream_stopped()
    assert (stream.channel, stream.thread_ts, stream.text) == ("D0STREAM", ts, "echo: hi there")


def recorded_reply_ts(postgres: PostgresServer, namespace: str, request_ts: str) -> str:
    """The stream's ts as the bot recorded it in its inbox (in the shared database)."""
    with postgres.admin_connection(postgres.database) as connection:
        row = connection.execute(f'SELECT reply_ts FROM "{namespace}_inbox" WHERE ts = %s', (request_ts,)).fetchone()
    return str(row[0]) if row else ""


def test_a_bot_killed_mid_stream_completes_that_message_after_restart(
    postgres: PostgresServer, namespace: str, model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path
) -> None:
    env = bot_environment(
        slack,
        model,
        PIXELTABLE_DB_CONNECT_STR=postgres.url,  # so that the test can read the bot's inbox
        PIXELTABLE_HOME=str(tmp_path / "home"),
        PIXELBOT_STREAMING="true",
    )
    model.respond_with(lambda body: Reply(chunks=["Before the crash ", "and after it."], chunk_delay=30.0))
    ts = next_ts()
    with SlackSender() as sender:
        bot = BotProcess(env, tmp_path / "bot.log").start()
        assert sender.send(bot.events_url, mention("tell me", channel=channel_id, ts=ts)).status == 200
        wait_until(lambda: bool(recorded_reply_ts(postgres, namespace, ts)), timeout=60, what="the stream started")
        assert recorded_reply_ts(postgres, namespace, ts) == slack.streams(channel_id)[0].ts
        bot.stop(signal.SIGKILL)

        model.respond_with(lambda body: Reply(text="The complete answer."))
        restarted = BotProcess(env, tmp_path / "bot.log").start()
        sender.send(restarted.events_url, mention("sentinel", channel=channel_id))  # answered after the resumed one
        wait_until(lambda: len(slack.messages(channel_id)) >= 2, timeout=90, what="both answers")
        restarted.stop()

    in_thread = slack.messages(channel_id, ts)
    assert [m["text"] for m in in_thread] == ["The complete answer."], "one answer, in the interrupted message"
    assert in_thread[0]["ts"] == slack.streams(channel_id)[0].ts
    assert len(slack.calls("chat.startStream")) == 2, "the resumed request streams nothing new; the sentinel does"
