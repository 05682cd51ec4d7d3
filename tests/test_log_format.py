"""JSON logs (`PIXELBOT_LOG_FORMAT=json`): one JSON object per line, naming the request a line was logged
for. The formatter and the request context as units, then a bot's log in process and as a process."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent import ConfigError
from bot.log_format import JSON, TEXT, log_handler, request_context
from bot.settings import Settings
from tests.bot_process import BotProcess
from tests.conftest import NO_DOTENV, RunningBot, bot_environment
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackSender, mention

REQUIRED = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "secret", "OPENAI_API_KEY": "sk-1"}


@contextlib.contextmanager
def json_log(logger: logging.Logger, level: int = logging.INFO) -> Iterator[io.StringIO]:
    """What `logger` logs at `level` while the block runs, as the JSON handler writes it."""
    stream = io.StringIO()
    handler = log_handler(JSON, stream)
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


def test_a_line_logged_for_a_request_names_it_and_others_do_not() -> None:
    logger = logging.getLogger("tests.log_format.unit")
    with json_log(logger) as stream:
        logger.info("before")
        with request_context("Ev0001", "C0001"):
            logger.warning("inside %s", "the request")
        logger.info("after")

    before, inside, after = records(stream)
    assert list(inside)[:4] == ["time", "level", "logger", "message"]
    assert inside["level"] == "WARNING" and inside["logger"] == "tests.log_format.unit"
    assert inside["message"] == "inside the request"
    assert inside["time"].endswith("+00:00")
    assert (inside["request_id"], inside["channel"]) == ("Ev0001", "C0001")
    assert "request_id" not in before and "channel" not in before
    assert "request_id" not in after and "channel" not in after


def test_the_request_follows_tasks_and_context_carrying_threads_but_not_past_its_end() -> None:
    logger = logging.getLogger("tests.log_format.threads")
    pool = ThreadPoolExecutor(max_workers=1)

    async def handle() -> contextvars.Context:
        with request_context("Ev0002", "C0002"):
            await asyncio.create_task(asyncio.to_thread(logger.info, "in a task's thread"))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(pool, contextvars.copy_context().run, logger.info, "in the pool, carried")
            await loop.run_in_executor(pool, logger.info, "in the pool, not carried")
            return contextvars.copy_context()  # a copy kept past the request (a queue's task, say)

    with json_log(logger) as stream:
        kept = asyncio.run(handle())
        kept.run(logger.info, "later, in the kept copy")
    pool.shutdown()

    tagged = {record["message"]: record.get("request_id") for record in records(stream)}
    assert tagged == {
        "in a task's thread": "Ev0002",
        "in the pool, carried": "Ev0002",
        "in the pool, not carried": None,
        "later, in the kept copy": None,
    }


def test_an_exception_is_one_line_with_its_traceback() -> None:
    logger = logging.getLogger("tests.log_format.exception")
    with json_log(logger) as stream:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed")

    [record] = records(stream)
    assert record["message"] == "it failed" and "ValueError: boom" in record["exc_info"]


def test_the_text_format_is_unchanged() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.log_format.text")
    handler = log_handler(TEXT, stream)
    logger.addHandler(handler)
    try:
        with request_context("Ev0003", "C0003"):
            logger.warning("plain")
    finally:
        logger.removeHandler(handler)

    assert stream.getvalue().endswith(" WARNING tests.log_format.text: plain\n")


@pytest.mark.parametrize(("raw", "expected"), [(None, "text"), ("", "text"), ("json", "json"), (" JSON ", "json")])
def test_the_log_format_setting(raw: str | None, expected: str) -> None:
    environ = REQUIRED if raw is None else {**REQUIRED, "PIXELBOT_LOG_FORMAT": raw}

    assert Settings.from_env(environ, dotenv_path=NO_DOTENV).log_format == expected


def test_an_unknown_log_format_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match=r"PIXELBOT_LOG_FORMAT must be text or json, got 'logfmt'"):
        Settings.from_env({**REQUIRED, "PIXELBOT_LOG_FORMAT": "logfmt"}, dotenv_path=NO_DOTENV)


def test_slack_calls_made_for_an_answer_name_its_request(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    """The Web API call that posts the answer runs on an I/O thread; its log line still names the request."""
    request = mention("hello", channel=channel_id)
    with json_log(logging.getLogger("slack_sdk"), logging.DEBUG) as stream:
        running_bot.send(request)
        slack.wait_for_calls("chat.postMessage")
        assert running_bot.bot.answerer.wait_idle(30)

    posts = [r for r in records(stream) if "chat.postMessage" in r["message"] and "Sending a request" in r["message"]]
    assert posts, "slack_sdk logged no request"
    assert {(record.get("request_id"), record.get("channel")) for record in posts} == {
        (request.payload["event_id"], channel_id)
    }


def test_a_bot_started_with_json_logs_writes_only_json_lines(
    model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path, fresh_home: Path
) -> None:
    model.respond_with(lambda body: Reply(status=500))  # the answer fails: the bot logs why, for the request
    home = fresh_home / "home"
    home.mkdir()  # as at any start but the first: Pixeltable `print`s a plain line when it creates its home
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(home), PIXELBOT_LOG_FORMAT="json")
    request = mention("are you there?", channel=channel_id)
    event_id = request.payload["event_id"]
    bot = BotProcess(env, tmp_path / "bot.log").start()
    try:
        with SlackSender() as sender:
            sender.send(bot.events_url, request)
            slack.wait_for_calls("chat.postMessage", timeout=60)
    finally:
        bot.stop()

    lines = (tmp_path / "bot.log").read_text().splitlines()
    assert lines, "the bot logged nothing"
    for line in lines:
        record = json.loads(line)  # every line, start-up and shutdown included
        assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= record.keys(), line
    logged = [json.loads(line) for line in lines]
    about_it = [record for record in logged if event_id in record["message"]]
    assert about_it, f"no line names {event_id}:\n" + "\n".join(lines)
    assert all((record.get("request_id"), record.get("channel")) == (event_id, channel_id) for record in about_it)
    for_it = [record for record in logged if record.get("request_id") == event_id]
    assert {record["logger"] for record in for_it} > {"bot.answering"}, "libraries' lines name the request too"
