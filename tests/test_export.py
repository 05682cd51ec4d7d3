"""Exporting channel memory: `/export-memory` in Slack (admins only, file to a DM) and the CLI."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from agent import Agent, TurnKind
from agent.export import EXPORT_COLUMNS, ExportFormat, export_bytes, memory_snapshot
from bot.channels import ChannelKey
from bot.cli import main
from tests.conftest import ADMIN_ID, RunningBot
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import mention, slash_command

TRICKY = [
    "plain",
    "Ünïcødé — 😀🎉 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 中文 עברית العربية 🏳️‍🌈",
    "commas, \"double quotes\", 'single', and ; semicolons",
    "line one\nline two\r\nline three\ttabbed",
    'back\\slash and {"json": [1, 2]} and <angle> & ampersand',
    "   leading and trailing spaces   ",
]


def read_rows(payload: bytes, export_format: ExportFormat) -> list[dict[str, str]]:
    """Parse an export with the standard readers and keep the text columns."""
    if export_format is ExportFormat.JSONL:
        rows = [json.loads(line) for line in payload.decode().splitlines()]
    elif export_format is ExportFormat.CSV:
        rows = list(csv.DictReader(io.StringIO(payload.decode(), newline="")))
    else:
        rows = pq.read_table(io.BytesIO(payload)).to_pylist()
    return [{name: row[name] for name in ("role", "content", "user", "thread_ts", "kind")} for row in rows]


def stored_rows(agent_name: str) -> list[dict[str, str]]:
    agent_memory = Agent(agent_name, "x").tables.memory
    return read_rows(export_bytes(memory_snapshot(agent_memory), ExportFormat.JSONL), ExportFormat.JSONL)


def chat_in(running_bot: RunningBot, slack: FakeSlack, channel_id: str, texts: list[str]) -> None:
    for index, text in enumerate(texts, start=1):
        running_bot.send(mention(text, channel=channel_id))
        slack.wait_for_calls("chat.postMessage", index)
    assert running_bot.bot.answerer.queues.wait_idle(30), "answers are stored after they are posted"


@pytest.mark.parametrize("export_format", list(ExportFormat))
def test_admin_gets_the_channel_memory_as_a_file_in_a_dm(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, export_format: ExportFormat
) -> None:
    chat_in(running_bot, slack, channel_id, TRICKY[1:4])
    command = slash_command(
        "/export-memory", export_format.value, user_id=ADMIN_ID, channel_id=channel_id,
        response_url=slack.response_url("export"),
    )  # fmt: skip

    response = running_bot.send(command)

    assert response.status == 200 and response.elapsed < 3.0
    [done] = slack.wait_for_responses(1, name="export", timeout=30)
    assert "Sent" in done.payload["text"]
    [upload] = slack.uploaded_files()
    assert upload.channel_id == f"D{ADMIN_ID}", "the file goes to the admin's DM, never the channel"
    assert upload.filename.endswith(f".{export_format.value}")
    assert read_rows(upload.content, export_format) == stored_rows(ChannelKey(TEAM_ID, channel_id).agent_name)
    assert [row["content"] for row in read_rows(upload.content, export_format)][::2] == TRICKY[1:4]


def test_workspace_admin_recognised_through_users_info(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    slack.users["U0OWNER"] = {"is_owner": True}
    chat_in(running_bot, slack, channel_id, ["hello"])

    running_bot.send(
        slash_command(
            "/export-memory", "", user_id="U0OWNER", channel_id=channel_id, response_url=slack.response_url("e")
        )
    )

    slack.wait_for_responses(1, name="e", timeout=30)
    [upload] = slack.uploaded_files()
    assert upload.channel_id == "DU0OWNER" and upload.filename.endswith(".jsonl")


def test_non_admin_is_refused_and_nothing_is_exported(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    chat_in(running_bot, slack, channel_id, ["secret plans"])

    response = running_bot.send(
        slash_command(
            "/export-memory", "csv", user_id="U0NOBODY", channel_id=channel_id, response_url=slack.response_url("e")
        )
    )

    assert response.json() == {
        "response_type": "ephemeral",
        "text": "Sorry, only pixelbot admins can export a channel's memory.",
    }
    assert slack.uploaded_files() == []
    assert slack.calls("conversations.open") == [] and slack.calls("files.getUploadURLExternal") == []


def test_unknown_format_gets_usage(running_bot: RunningBot, slack: FakeSlack) -> None:
    response = running_bot.send(
        slash_command("/export-memory", "xlsx", user_id=ADMIN_ID, response_url=slack.response_url("e"))
    )

    assert "Usage: `/export-memory [jsonl|csv|parquet]`" in response.json()["text"]
    assert slack.uploaded_files() == []


def fill(agent: Agent, count: int) -> list[str]:
    """Store `count` messages cycling through the tricky texts; returns their contents in order."""
    start = datetime.now(UTC) - timedelta(days=1)
    contents = [f"{index}: {TRICKY[index % len(TRICKY)]}" for index in range(count)]
    agent.tables.memory.insert(
        [
            {
                "request_id": f"r{index}", "role": "user" if index % 2 == 0 else "assistant", "content": content,
                "timestamp": start + timedelta(milliseconds=index), "user": "U0001", "thread_ts": "", "kind": "chat",
            }
            for index, content in enumerate(contents)
        ]
    )  # fmt: skip
    return contents


@pytest.fixture
def ten_thousand(model: ScriptedOpenAI, channel_id: str) -> tuple[ChannelKey, list[str]]:
    key = ChannelKey(TEAM_ID, channel_id)
    return key, fill(Agent(key.agent_name, "x"), 10_000)


@pytest.mark.parametrize("export_format", list(ExportFormat))
def test_cli_export_of_10000_messages_reads_back_equal(
    ten_thousand: tuple[ChannelKey, list[str]], export_format: ExportFormat, tmp_path: Path
) -> None:
    key, contents = ten_thousand
    output = tmp_path / f"out.{export_format.value}"

    result = CliRunner().invoke(
        main, ["export", "--channel", key.channel_id, "--format", export_format.value, "--output", str(output)]
    )

    assert result.exit_code == 0, result.output
    rows = read_rows(output.read_bytes(), export_format)
    assert [row["content"] for row in rows] == contents
    assert {row["kind"] for row in rows} == {"chat"} and rows[1]["role"] == "assistant"


def test_cli_export_since_and_channel_listing(ten_thousand: tuple[ChannelKey, list[str]], tmp_path: Path) -> None:
    key, contents = ten_thousand
    since = (datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=9)).strftime("%Y-%m-%d %H:%M:%S")

    exported = CliRunner().invoke(main, ["export", "--channel", key.channel_id, "--since", since, "--output", "-"])
    listing = CliRunner().invoke(main, ["channels"])

    assert exported.exit_code == 0
    assert 0 < len(exported.stdout_bytes.splitlines()) < len(contents)
    assert f"{key.team_id:<14}{key.channel_id:<14}{'10,000':>10}" in listing.output


def test_cli_export_of_an_unknown_channel_is_a_clear_error(pixeltable_home: Path) -> None:
    result = CliRunner().invoke(main, ["export", "--channel", "C0NOSUCH"])

    assert result.exit_code == 1
    assert "No agent for channel C0NOSUCH" in result.output


def streamed_row(batch: int, index: int) -> dict[str, object]:
    return {
        "request_id": f"b{batch}",
        "role": "user",
        "content": f"batch {batch} #{index}",
        "timestamp": datetime.now(UTC),
        "user": "U1",
        "thread_ts": "",
        "kind": TurnKind.CHAT.value,
    }


def test_export_during_a_stream_of_messages_is_a_consistent_snapshot(model: ScriptedOpenAI, channel_id: str) -> None:
    agent = Agent(ChannelKey(TEAM_ID, channel_id).agent_name, "x")
    fill(agent, 2_000)
    stop = threading.Event()

    def stream() -> None:
        batch = 0
        while not stop.is_set():
            batch += 1
            agent.tables.memory.insert([streamed_row(batch, index) for index in range(50)])

    writer = threading.Thread(target=stream)
    writer.start()
    try:
        snapshots = [memory_snapshot(agent.tables.memory) for _ in range(5)]
    finally:
        stop.set()
        writer.join()

    for frame in snapshots:
        streamed = frame[frame["content"].str.startswith("batch ")]
        assert len(streamed) % 50 == 0, "a batch written during the export is wholly in or wholly out"
        batches = streamed["request_id"].str[1:].astype(int)
        assert sorted(set(batches)) == list(range(1, batches.max() + 1 if len(batches) else 1))
        assert list(frame.columns) == list(EXPORT_COLUMNS)
