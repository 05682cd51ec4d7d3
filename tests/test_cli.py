"""The admin command line's edges: each mistake is one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import Agent
from agent.channel_config import ChannelConfig, save_config
from bot.channels import ChannelKey
from bot.cli import main
from tests.bot_process import serve_until_it_exits
from tests.conftest import bot_environment
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """The CLI run from an empty directory, so that no `.env` of the developer's is read."""
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def stored_channel(model: ScriptedOpenAI, channel_id: str) -> ChannelKey:
    """A channel whose agent remembers one exchange."""
    key = ChannelKey(TEAM_ID, channel_id)
    Agent(key.agent_name, "x").chat("hello")
    return key


def test_export_into_a_missing_directory_names_it(cli: CliRunner, stored_channel: ChannelKey, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out.jsonl"

    result = cli.invoke(main, ["export", "--channel", stored_channel.channel_id, "--output", str(target)])

    assert result.exit_code == 2
    assert f"the directory {target.parent} does not exist" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_export_since_the_future_writes_no_records(cli: CliRunner, stored_channel: ChannelKey) -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)

    result = cli.invoke(
        main, ["export", "--channel", stored_channel.channel_id, "--since", f"{tomorrow:%Y-%m-%d}", "--output", "-"]
    )

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b""


def test_export_with_the_wrong_team_says_where_the_channel_is(cli: CliRunner, stored_channel: ChannelKey) -> None:
    result = cli.invoke(main, ["export", "--channel", stored_channel.channel_id, "--team", "T0OTHER", "--output", "-"])

    assert result.exit_code == 2
    assert f"no agent in workspace T0OTHER; it has one in {TEAM_ID}" in result.output


def test_serve_with_a_broken_tool_module_stops_with_one_clear_line(
    model: ScriptedOpenAI, slack: FakeSlack, fresh_home: Path
) -> None:
    settings = bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home), PIXELBOT_TOOL_MODULES="no_such.tools")
    done = serve_until_it_exits({**os.environ, **settings})

    assert done.returncode == 2
    assert "Cannot import tool module 'no_such.tools'" in done.stderr
    assert "Traceback" not in done.stderr


def test_channels_lists_each_channel_with_its_feedback_counts(cli: CliRunner, stored_channel: ChannelKey) -> None:
    agent = Agent(stored_channel.agent_name, "test")
    [request_id] = {turn.request_id for turn in agent.recent_turns("") if turn.role == "assistant"}
    assert agent.rate(request_id, "U1", "good") and agent.rate(request_id, "U2", "bad")
    assert agent.rate(request_id, "U1", "good"), "voting again replaces the vote"

    result = cli.invoke(main, ["channels"])

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if stored_channel.channel_id in line]
    assert line.split()[-2:] == ["1", "1"]


def test_channels_verbose_shows_each_channels_settings_and_who_changed_them(
    cli: CliRunner, stored_channel: ChannelKey
) -> None:
    save_config(stored_channel.agent_name, ChannelConfig("Answer in French.", "gpt-4o", frozenset({"calculate"}), 7),
                "U0ADMIN", {"model": {"from": "", "to": "gpt-4o"}})  # fmt: skip

    result = cli.invoke(main, ["channels", "--verbose"], env={"PIXELBOT_MODELS": "gpt-4o"})

    assert result.exit_code == 0, result.output
    details = result.output.split(stored_channel.channel_id, 1)[1]
    for expected in (
        "model: gpt-4o",
        "instructions: Answer in French.",
        "tools off: calculate",
        "retention: 7 days",
        "listening: off",
        "by U0ADMIN: model",
    ):
        assert expected in details
