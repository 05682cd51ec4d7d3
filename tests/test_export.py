"""Exporting channel memory: `/export-memory` in Slack (admins only, file to a DM) and the CLI."""

from __future__ import annotations

import csv
import io
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pixeltable as pxt
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from agent import Agent, TurnKind
from agent.export import EXPORT_COLUMNS, ExportFormat, export_bytes, memory_snapshot
from bot.channels import ChannelKey
from bot.cli import main
from bot.replies import EXPORT_FAILED, NOT_ADMIN, NOTHING_TO_EXPORT
from tests.conftest import ADMIN_ID, RunningBot, wait_until
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import SlackRequest, mention, slash_command

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


def stored_rows(memory: pxt.Table) -> list[dict[str, str]]:
    return read_rows(export_bytes(memory_snapshot(memory), ExportFormat.JSONL), ExportFormat.JSONL)


def chat_in(running_bot: RunningBot, slack: FakeSlack, channel_id: str, texts: list[str]) -> None:
    for index, text in enumerate(texts, start=1):
        running_bot.send(mention(text, channel=channel_id))
        slack.wait_for_calls("chat.postMessage", index)
    assert running_bot.bot.answerer.wait_idle(30), "answers are stored after they are posted"


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
    assert read_rows(upload.content, export_format) == stored_rows(running_bot.memory(channel_id))
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

    assert response.json()["response_type"] == "ephemeral", "acknowledged before the rights are checked"
    [refusal] = slack.wait_for_responses(1, name="e", timeout=10)
    assert refusal.payload == {
        "response_type": "ephemeral",
        "text": "Sorry, only pixelbot admins can export a channel's memory.",
    }
    assert slack.uploaded_files() == []
    assert slack.calls("conversations.open") == [] and slack.calls("files.getUploadURLExternal") == []


def test_an_admin_of_another_organisation_in_a_shared_channel_may_not_export_it(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    """Slack Connect: the other organisation's admin is an admin there, not of this channel's memory;
    an Enterprise Grid admin who is a member of the channel's workspace is one here."""
    slack.users["U0THEIRS"] = {"is_admin": True, "team_id": "T0THEIRS"}
    slack.users["U0GRID"] = {"is_admin": True, "team_id": "T0OTHER", "enterprise_user": {"teams": ["T0001"]}}
    chat_in(running_bot, slack, channel_id, ["our secret plans"])

    for user, name in (("U0THEIRS", "theirs"), ("U0GRID", "grid")):
        running_bot.send(
            slash_command(
                "/export-memory", "", user_id=user, channel_id=channel_id, response_url=slack.response_url(name)
            )
        )
    [refusal] = slack.wait_for_responses(1, name="theirs", timeout=30)
    slack.wait_for_responses(1, name="grid", timeout=30)

    assert refusal.payload["text"] == "Sorry, only pixelbot admins can export a channel's memory."
    assert [upload.channel_id for upload in slack.uploaded_files()] == ["DU0GRID"]


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
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """The CLI run from an empty directory, so that no `.env` of the developer's is read."""
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def ten_thousand(model: ScriptedOpenAI, channel_id: str) -> tuple[ChannelKey, list[str]]:
    key = ChannelKey(TEAM_ID, channel_id)
    return key, fill(Agent(key.agent_name, "x"), 10_000)


@pytest.mark.parametrize("export_format", list(ExportFormat))
def test_cli_export_of_10000_messages_reads_back_equal(
    cli: CliRunner, ten_thousand: tuple[ChannelKey, list[str]], export_format: ExportFormat, tmp_path: Path
) -> None:
    key, contents = ten_thousand
    output = tmp_path / f"out.{export_format.value}"

    result = cli.invoke(
        main, ["export", "--channel", key.channel_id, "--format", export_format.value, "--output", str(output)]
    )

    assert result.exit_code == 0, result.output
    rows = read_rows(output.read_bytes(), export_format)
    assert [row["content"] for row in rows] == contents
    assert {row["kind"] for row in rows} == {"chat"} and rows[1]["role"] == "assistant"


def stored_timestamps(key: ChannelKey) -> list[datetime]:
    """The channel's message times as stored, in UTC, oldest first."""
    frame = memory_snapshot(Agent(key.agent_name, "x").tables.memory)
    return [pd.Timestamp(value).tz_convert(UTC).to_pydatetime() for value in frame["timestamp"]]


def test_cli_export_since_and_channel_listing(cli: CliRunner, ten_thousand: tuple[ChannelKey, list[str]]) -> None:
    key, contents = ten_thousand
    timestamps = stored_timestamps(key)
    middle = timestamps[len(timestamps) // 2]
    cut = middle.replace(microsecond=0) + timedelta(seconds=1)  # `--since` takes whole seconds
    expected = [content for content, stamp in zip(contents, timestamps, strict=True) if stamp >= cut]

    exported = cli.invoke(
        main, ["export", "--channel", key.channel_id, "--since", f"{cut:%Y-%m-%d %H:%M:%S}", "--output", "-"]
    )
    listing = cli.invoke(main, ["channels"])

    assert exported.exit_code == 0, exported.output
    assert 0 < len(expected) < len(contents)
    assert [json.loads(line)["content"] for line in exported.stdout_bytes.splitlines()] == expected
    assert f"{key.team_id:<14}{key.channel_id:<14}{'10,000':>10}" in listing.output


def test_cli_export_of_an_unknown_channel_is_a_clear_error(cli: CliRunner, pixeltable_home: Path) -> None:
    result = cli.invoke(main, ["export", "--channel", "C0NOSUCH"])

    assert result.exit_code == 2
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


@dataclass
class Stream:
    """A writer thread that stores batches of 50 messages, one insert each, until stopped.

    `started` and `committed` count batches whose insert began, and returned: a batch is in a snapshot
    if it committed before the snapshot began, is not if it started after the snapshot ended, and may
    be either if it was written while the snapshot ran.
    """

    memory: pxt.Table
    started: int = 0
    committed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.started += 1
                batch = self.started
            self.memory.insert([streamed_row(batch, index) for index in range(50)])
            with self.lock:
                self.committed = batch

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.started, self.committed


@dataclass(frozen=True)
class Observed:
    """One snapshot, and the stream's counts just before it began and just after it ended."""

    frame: pd.DataFrame
    committed_before: int
    started_after: int

    @property
    def overlapped_a_write(self) -> bool:
        """Some batch started before the snapshot ended and committed after it began."""
        return self.started_after > self.committed_before


def observe(stream: Stream) -> Observed:
    _, committed_before = stream.counts()
    frame = memory_snapshot(stream.memory)
    started_after, _ = stream.counts()
    return Observed(frame, committed_before, started_after)


def test_export_during_a_stream_of_messages_is_a_consistent_snapshot(model: ScriptedOpenAI, channel_id: str) -> None:
    agent = Agent(ChannelKey(TEAM_ID, channel_id).agent_name, "x")
    fill(agent, 2_000)
    stream = Stream(agent.tables.memory)
    writer = threading.Thread(target=stream.run)
    observed: list[Observed] = []
    writer.start()
    try:
        wait_until(lambda: stream.counts()[1] >= 1, what="the first streamed batch")

        def three_snapshots_overlapped_writes() -> bool:
            observed.append(observe(stream))
            return sum(snapshot.overlapped_a_write for snapshot in observed) >= 3

        wait_until(three_snapshots_overlapped_writes, timeout=60, what="three snapshots taken while writing")
    finally:
        stream.stop.set()
        writer.join()

    for snapshot in observed:
        frame = snapshot.frame
        streamed = frame[frame["content"].str.startswith("batch ")]
        assert len(streamed) % 50 == 0, "a batch written during the export is wholly in or wholly out"
        batches = sorted(set(streamed["request_id"].str[1:].astype(int)))
        assert batches == list(range(1, len(batches) + 1)), "batches are seen in the order they were written"
        assert snapshot.committed_before <= len(batches) <= snapshot.started_after
        assert list(frame.columns) == list(EXPORT_COLUMNS)


def export_command(slack: FakeSlack, channel_id: str, user_id: str = ADMIN_ID) -> SlackRequest:
    return slash_command(
        "/export-memory", "", user_id=user_id, channel_id=channel_id, response_url=slack.response_url("x")
    )


def test_export_of_a_channel_without_memory_says_so_and_uploads_nothing(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    running_bot.send(export_command(slack, channel_id))

    [note] = slack.wait_for_responses(1, name="x", timeout=30)
    assert note.payload["text"] == NOTHING_TO_EXPORT
    assert slack.uploaded_files() == []


def test_export_when_users_info_fails_refuses_rather_than_guessing(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    chat_in(running_bot, slack, channel_id, ["hello"])
    slack.fail_next("users.info", "user_not_found")

    running_bot.send(export_command(slack, channel_id, user_id="U0OWNER"))

    [refusal] = slack.wait_for_responses(1, name="x", timeout=30)
    assert refusal.payload["text"] == NOT_ADMIN
    assert slack.uploaded_files() == []


def test_export_whose_upload_fails_tells_the_admin(running_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    chat_in(running_bot, slack, channel_id, ["hello"])
    slack.fail_next("files.getUploadURLExternal", "not_allowed_token_type")

    running_bot.send(export_command(slack, channel_id))

    [note] = slack.wait_for_responses(1, name="x", timeout=30)
    assert note.payload["text"] == EXPORT_FAILED
    assert "Traceback" not in note.payload["text"] and slack.uploaded_files() == []
