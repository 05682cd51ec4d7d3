"""The bot in Socket Mode, as users run it: `pixelbot serve` with SLACK_APP_TOKEN set, connected to a
Socket Mode server (`tests.fake_socket_mode`) that `apps.connections.open` on the Slack fake points to."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.bot_process import BotProcess, serve_until_it_exits
from tests.conftest import bot_environment, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI, blocked_until, last_user_text
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode
from tests.slack_requests import mention, next_ts, slash_command

APP_TOKEN = "xapp-1-A0001-1-0123456789abcdef"


@pytest.fixture
def socket_mode(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(slack) as server:
        yield server
    assert server.spec_errors == []


def start_bot(
    socket_mode: FakeSocketMode,
    slack: FakeSlack,
    model: ScriptedOpenAI,
    home: Path,
    log: Path,
    **overrides: str,
) -> BotProcess:
    """A `pixelbot serve` process in Socket Mode, once it is connected (it has no HTTP port to poll)."""
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(home), SLACK_APP_TOKEN=APP_TOKEN, **overrides)
    return BotProcess(env, log, ready=socket_mode.connected).start()


def test_the_bot_connects_with_its_app_token(
    socket_mode: FakeSocketMode, slack: FakeSlack, model: ScriptedOpenAI, fresh_home: Path, tmp_path: Path
) -> None:
    bot = start_bot(socket_mode, slack, model, fresh_home, tmp_path / "bot.log")
    try:
        [connection] = socket_mode.connections()
        [opened] = slack.calls("apps.connections.open")
    finally:
        bot.stop()

    assert opened.token == APP_TOKEN
    assert isinstance(opened.response, dict) and opened.response["ok"] is True
    assert opened.response["url"].endswith(f"ticket={connection.ticket}&app_id=A0001")
    assert APP_TOKEN not in (tmp_path / "bot.log").read_text(errors="replace")


def test_a_mention_envelope_is_acked_and_answered_in_its_thread(
    socket_mode: FakeSocketMode,
    slack: FakeSlack,
    model: ScriptedOpenAI,
    channel_id: str,
    fresh_home: Path,
    tmp_path: Path,
) -> None:
    bot = start_bot(socket_mode, slack, model, fresh_home, tmp_path / "bot.log")
    try:
        ts = next_ts()
        envelope = socket_mode.push_event(mention("what is *pixeltable*?", channel=channel_id, ts=ts).payload)
        ack = socket_mode.wait_for_ack(envelope)
        [post] = slack.wait_for_calls("chat.postMessage", timeout=60)
    finally:
        bot.stop()

    assert ack.payload is None and ack.elapsed < 3.0, "Slack redelivers events not acked within 3 s"
    assert (post.params["channel"], post.params["thread_ts"]) == (channel_id, ts)
    assert post.params["text"] == "echo: what is _pixeltable_?"
    assert model.requests[0]["messages"][-1] == {"role": "user", "content": "what is *pixeltable*?"}


def test_a_slash_command_envelope_is_acked_with_the_ephemeral_answer(
    socket_mode: FakeSocketMode,
    slack: FakeSlack,
    model: ScriptedOpenAI,
    channel_id: str,
    fresh_home: Path,
    tmp_path: Path,
) -> None:
    model.then(Reply(tool_calls=[("calculate", {"expression": "6*7"})]), Reply(text="6 × 7 = **42**"))
    bot = start_bot(socket_mode, slack, model, fresh_home, tmp_path / "bot.log")
    try:
        command = slash_command("/tool", "what is 6*7?", response_url=slack.response_url("calc"), channel_id=channel_id)
        ack = socket_mode.wait_for_ack(socket_mode.push_slash_command(command.payload))
        [delivered] = slack.wait_for_responses(1, name="calc", timeout=60)
    finally:
        bot.stop()

    assert ack.payload == {
        "response_type": "ephemeral",
        "text": ":hourglass_flowing_sand: Working on `/tool what is 6*7?`…",
    }
    assert ack.elapsed < 3.0
    assert delivered.payload["response_type"] == "in_channel"
    assert delivered.payload["text"] == "6 × 7 = *42*"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_disconnects_finishes_the_answer_in_progress_and_exits_0(
    stop_signal: signal.Signals,
    socket_mode: FakeSocketMode,
    slack: FakeSlack,
    model: ScriptedOpenAI,
    channel_id: str,
    fresh_home: Path,
    tmp_path: Path,
) -> None:
    release, held = threading.Event(), list[str]()
    model.respond_with(blocked_until(release, held))
    # the model is held across the shutdown: no timeout (and retry) of the held call meanwhile
    bot = start_bot(socket_mode, slack, model, fresh_home, tmp_path / "bot.log", PIXELBOT_MODEL_TIMEOUT="60")
    assert bot.process is not None
    try:
        socket_mode.wait_for_ack(socket_mode.push_event(mention("slow question", channel=channel_id).payload))
        wait_until(lambda: held == ["slow question"], timeout=30, what="the model call in flight")
        bot.process.send_signal(stop_signal)
        socket_mode.wait_until_disconnected(timeout=20)
        running_after_disconnect = bot.process.poll() is None
        posted_before_release = slack.calls("chat.postMessage")
    finally:
        release.set()

    try:
        assert running_after_disconnect, f"the bot exited before finishing its answer:\n{bot.log()}"
        [post] = slack.wait_for_calls("chat.postMessage", timeout=30)
        status = bot.process.wait(timeout=60)
    finally:
        bot.stop(signal.SIGKILL)
    assert posted_before_release == []
    assert post.params["text"] == "echo: slow question"
    assert status == 0, bot.log()
    assert len(socket_mode.connections()) == 1, "the bot reconnected instead of stopping"


def test_apps_connections_open_takes_only_an_app_level_token() -> None:
    with FakeSlack() as fake:
        with pytest.raises(SlackApiError) as refused:
            WebClient(base_url=fake.base_url).apps_connections_open(app_token="xoxb-a-bot-token")

        assert refused.value.response["error"] == "not_allowed_token_type"
        assert len(fake.spec_errors) == 1


def test_an_envelope_with_a_payload_the_bot_cannot_use_is_acked_and_dropped(
    socket_mode: FakeSocketMode,
    slack: FakeSlack,
    model: ScriptedOpenAI,
    channel_id: str,
    fresh_home: Path,
    tmp_path: Path,
) -> None:
    bot = start_bot(socket_mode, slack, model, fresh_home, tmp_path / "bot.log")
    try:
        poison = mention("hi", channel=channel_id).payload
        poison["event"] = {**poison["event"], "channel": "../../x"}
        poison_ack = socket_mode.wait_for_ack(socket_mode.push_event(poison))
        bad_command = slash_command("/tool", "hi", response_url=slack.response_url("bad"), channel_id="C1;DROP")
        command_ack = socket_mode.wait_for_ack(socket_mode.push_slash_command(bad_command.payload))
        socket_mode.wait_for_ack(socket_mode.push_event(mention("still answering?", channel=channel_id).payload))
        [post] = slack.wait_for_calls("chat.postMessage", timeout=60)
    finally:
        bot.stop()

    assert poison_ack.payload is None, "acknowledged, so Slack does not send it again"
    assert command_ack.payload is not None and "couldn't read that command" in command_ack.payload["text"]
    assert post.params["text"] == "echo: still answering?"
    assert [last_user_text(body) for body in model.requests] == ["still answering?"]
    assert "Traceback" not in bot.log()


def test_an_app_token_slack_refuses_stops_serve_with_one_clear_line(
    socket_mode: FakeSocketMode, slack: FakeSlack, model: ScriptedOpenAI, fresh_home: Path
) -> None:
    slack.fail_next("apps.connections.open", "invalid_auth")
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home), SLACK_APP_TOKEN=APP_TOKEN)
    done = serve_until_it_exits({**os.environ, **env})

    assert done.returncode == 2, done.stderr
    assert "invalid_auth" in done.stderr and "Check SLACK_APP_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
