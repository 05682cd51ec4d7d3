"""`pixelbot chat`: a terminal conversation with a channel's agent, stored in the channel's memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pixeltable as pxt
import pytest
from click.testing import CliRunner

from agent import Agent, ModelFailure
from agent.channel_config import ChannelConfig, save_config
from bot.channels import ChannelKey
from bot.cli import chat_user, main
from bot.replies import FRIENDLY_FAILURES
from tests.conftest import table
from tests.fake_openai import Reply, ScriptedOpenAI, has_tool_results, last_user_text, tool_names
from tests.fake_slack import TEAM_ID


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: ScriptedOpenAI) -> CliRunner:
    """The CLI run from an empty directory (no developer's `.env`), recall on from the first message."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXELBOT_EMBEDDING_DIMENSIONS", "64")
    monkeypatch.setenv("PIXELBOT_RECALL_AFTER", "0")
    return CliRunner()


@pytest.fixture
def stored_channel(model: ScriptedOpenAI, channel_id: str) -> ChannelKey:
    """A channel whose agent remembers one exchange, as if asked in Slack."""
    key = ChannelKey(TEAM_ID, channel_id)
    Agent(key.agent_name, "x").chat("remember the codeword: heron", user="U0SLACK")
    return key


def memory_rows(key: ChannelKey) -> list[dict[str, Any]]:
    memory = table(f"{key.agent_name}.memory")
    columns = (memory.role, memory.content, memory.user, memory.kind, memory.thread_ts, memory.calls)
    return list(memory.order_by(memory.timestamp).select(*columns).collect())


def test_a_chat_is_answered_by_the_model_and_stored_in_the_channel_memory(
    cli: CliRunner, stored_channel: ChannelKey, model: ScriptedOpenAI
) -> None:
    result = cli.invoke(
        main,
        ["chat", "--channel", stored_channel.channel_id.lower()],
        input="what was the codeword?\n\n/quit\nnever sent\n",
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "echo: what was the codeword?", "answers on stdout, the banner on stderr"
    assert "/tool <request>" in result.stderr
    [request] = [body for body in model.requests if last_user_text(body) == "what was the codeword?"]
    contents = [message["content"] for message in request["messages"]]
    assert "remember the codeword: heron" in contents, "the chat continues the channel's conversation"
    assert not any(last_user_text(body) == "never sent" for body in model.requests)
    rows = memory_rows(stored_channel)
    assert [(row["role"], row["content"]) for row in rows[2:]] == [
        ("user", "what was the codeword?"),
        ("assistant", "echo: what was the codeword?"),
    ]
    assert {(row["user"], row["kind"], row["thread_ts"]) for row in rows[2:]} == {(chat_user(), "chat", "")}
    assert rows[-1]["calls"][0]["request"]["messages"] == request["messages"]
    recall = table(f"{stored_channel.agent_name}.recall")
    indexed = {row["text"] for row in recall.select(recall.text).collect()}
    assert {"what was the codeword?", "echo: what was the codeword?"} <= indexed, "the chat indexed before it ended"


def test_a_tool_line_offers_the_tools_and_runs_them(
    cli: CliRunner, stored_channel: ChannelKey, model: ScriptedOpenAI
) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        if tool_names(body) and not has_tool_results(body):
            return Reply(tool_calls=[("calculate", {"expression": "6 * 7"})])
        return Reply(text="The answer is 42.")

    model.respond_with(respond)

    result = cli.invoke(main, ["chat", "--channel", stored_channel.channel_id], input="/tool what is 6 * 7?\n")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "The answer is 42."
    first, second = model.requests[-2:]
    assert {"calculate", "current_time", "say_hello"} <= set(tool_names(first))
    assert last_user_text(first) == "what is 6 * 7?", "the /tool prefix is not part of the request"
    assert has_tool_results(second)
    question, answer = memory_rows(stored_channel)[2:]
    assert (question["kind"], question["content"], answer["content"]) == ("tool", "what is 6 * 7?", "The answer is 42.")
    assert "42" in answer["calls"][0]["tool_results"][0]


def test_without_an_api_key_chat_says_so_in_one_line(
    cli: CliRunner, stored_channel: ChannelKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    assert "SLACK_BOT_TOKEN" not in os.environ, "the chat needs no Slack token either way"

    result = cli.invoke(main, ["chat", "--channel", stored_channel.channel_id], input="hello\n")

    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("pixelbot: Missing required configuration: OPENAI_API_KEY.")
    assert result.stdout == ""


def test_a_channel_without_an_agent_is_created_only_when_asked(
    cli: CliRunner, model: ScriptedOpenAI, channel_id: str
) -> None:
    refused = cli.invoke(main, ["chat", "--channel", channel_id, "--team", TEAM_ID], input="hello\n")

    assert refused.exit_code == 2
    assert f"Channel {channel_id} has no agent in workspace {TEAM_ID} yet. Pass --create" in refused.stderr
    key = ChannelKey(TEAM_ID, channel_id)
    assert pxt.get_table(f"{key.agent_name}.memory", if_not_exists="ignore") is None, "nothing was made"
    assert not any(last_user_text(body) == "hello" for body in model.requests)

    created = cli.invoke(main, ["chat", "--channel", channel_id, "--team", TEAM_ID, "--create"], input="hello\n")

    assert created.exit_code == 0, created.output
    assert "a new agent" in created.stderr
    stored = [(row["role"], row["content"]) for row in memory_rows(key)]
    assert stored == [("user", "hello"), ("assistant", "echo: hello")]


def test_a_model_error_is_the_friendly_message_and_the_question_is_kept(
    cli: CliRunner, stored_channel: ChannelKey, model: ScriptedOpenAI
) -> None:
    model.then(Reply(status=400))

    result = cli.invoke(main, ["chat", "--channel", stored_channel.channel_id], input="are you there?\nand now?\n")

    assert result.exit_code == 0, result.output
    assert FRIENDLY_FAILURES[ModelFailure.REJECTED] in result.stdout
    assert "echo: and now?" in result.stdout, "the chat goes on after a failed turn"
    assert "Traceback" not in result.output and ":warning:" not in result.output
    assert [(row["role"], row["content"]) for row in memory_rows(stored_channel)[2:]] == [
        ("user", "are you there?"),
        ("user", "and now?"),
        ("assistant", "echo: and now?"),
    ]


def test_a_chat_uses_the_channels_own_settings(
    cli: CliRunner, stored_channel: ChannelKey, model: ScriptedOpenAI
) -> None:
    config = ChannelConfig("Answer like a pirate.", "gpt-4o", frozenset({"calculate"}))
    save_config(stored_channel.agent_name, config, "U0ADMIN", {"instructions": {"from": "", "to": "pirate"}})

    result = cli.invoke(
        main,
        ["chat", "--channel", stored_channel.channel_id],
        input="ahoy\n/tool what is 2+2\n",
        env={"PIXELBOT_MODELS": "gpt-4o"},
    )

    assert result.exit_code == 0, result.output
    chat, tool = [body for body in model.requests if last_user_text(body) in ("ahoy", "what is 2+2")][:2]
    assert chat["model"] == "gpt-4o" and "Answer like a pirate." in chat["messages"][0]["content"]
    assert "calculate" not in tool_names(tool) and "current_time" in tool_names(tool)
