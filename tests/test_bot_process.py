"""The bot as users run it: a separate process started by the README's command."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.bot_process import BotProcess, serve_until_it_exits
from tests.conftest import bot_environment
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackSender, mention
from tests.test_metrics import parse, value


def test_serve_without_tokens_stops_with_a_clear_message(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SLACK_", "OPENAI_"))}
    done = serve_until_it_exits(env, cwd=tmp_path)  # no .env here

    assert done.returncode == 2
    assert "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, OPENAI_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_restart_keeps_the_channel_memory(
    model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path, fresh_home: Path
) -> None:
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home / "home"))
    with SlackSender() as sender:
        first = BotProcess(env, tmp_path / "bot.log").start()
        sender.send(first.events_url, mention("remember the password is swordfish", channel=channel_id))
        slack.wait_for_calls("chat.postMessage", 1, timeout=60)
        first.stop()

        second = BotProcess(env, tmp_path / "bot.log").start()
        try:
            sender.send(second.events_url, mention("what is the password?", channel=channel_id))
            slack.wait_for_calls("chat.postMessage", 2, timeout=60)
        finally:
            second.stop()

    remembered = [m["content"] for m in model.requests[-1]["messages"][1:]]
    assert remembered == [
        "remember the password is swordfish",
        "echo: remember the password is swordfish",
        "what is the password?",
    ]


def test_a_serving_process_keeps_what_it_started_with_out_of_full_collections(
    model: ScriptedOpenAI, slack: FakeSlack, tmp_path: Path, fresh_home: Path
) -> None:
    """`serve` installs `bot.collector` (full collections walk only newer objects), as its metrics show."""
    bot = BotProcess(bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home / "home")), tmp_path / "bot.log")
    bot.start()
    try:
        scrape = httpx.get(f"http://127.0.0.1:{bot.port}/metrics", timeout=10).text
    finally:
        bot.stop()

    frozen = value(parse(scrape), "pixelbot_gc_frozen_objects")
    assert frozen is not None and frozen > 10_000  # the modules, Pixeltable's catalog, the app: start-up's objects


def test_serve_with_a_token_slack_refuses_stops_with_a_clear_message(
    model: ScriptedOpenAI, slack: FakeSlack, fresh_home: Path
) -> None:
    slack.fail_next("auth.test", "invalid_auth")
    done = serve_until_it_exits({**os.environ, **bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home))})

    assert done.returncode == 2
    assert "invalid_auth" in done.stderr and "Check SLACK_BOT_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
