"""Governance: `pixelbot delete-user` erases a user everywhere they are stored, and the audit records it.

The data is made the way production makes it (a real bot answering signed Slack requests, votes
clicked, recall indexing), and what is left is read back through Pixeltable, the export, the inbox
table, and Pixeltable's own Postgres tables, which also hold the row versions a delete replaced.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pixeltable as pxt
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from slack_sdk import WebClient

from agent import Agent
from agent.export import ExportFormat, memory_snapshot
from agent.governance import DELETED, erase_user, scrub_pattern, scrub_value
from bot.audit import DELETE_USER, EXPORT, Audit
from bot.channels import ChannelKey
from bot.cli import main
from bot.exports import Exporter, ExportRequest
from bot.feedback import FEEDBACK_ACTION
from tests.conftest import ADMIN_ID, RunningBot, table, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import block_action, mention, next_ts

GONE, STAYS = "U0GONE", "U0STAYS"
SECRET = "my secret plan is to sell the farm to Priya"
SECRET_B = "the vault code is 4417, tell nobody"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, namespace: str) -> CliRunner:
    """The CLI from an empty directory (no developer's `.env`), on this test's namespace (its audit)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXELBOT_NAMESPACE", namespace)
    return CliRunner()


def new_channel() -> str:
    return "C" + uuid.uuid4().hex[:10].upper()


def store_rows(table: pxt.Table) -> list[str]:
    """Every row version Pixeltable stores for `table` (live or kept), as text."""
    store = table._tbl_version.get().store_tbl.sa_tbl
    from pixeltable.env import Env

    with Env.get().engine.connect() as connection:
        return [str(text) for text in connection.execute(sa.text(f'SELECT t::text FROM "{store.name}" t')).scalars()]


def rows_of(memory: pxt.Table, user: str) -> list[tuple[str, str]]:
    query = memory.where(memory.user == user).order_by(memory.timestamp).select(memory.role, memory.content)
    return [(row["role"], row["content"]) for row in query.collect()]


def vote(running_bot: RunningBot, slack: FakeSlack, channel: str, request_ts: str, post: Any, user: str) -> None:
    running_bot.send(
        block_action(
            FEEDBACK_ACTION,
            f"good {request_ts}",
            message_ts=post.response["ts"],
            thread_ts=request_ts,
            channel=channel,
            user=user,
            element_type="feedback_buttons",
            response_url=slack.response_url("feedback"),
        )
    )


@pytest.fixture
def two_channels(running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI) -> tuple[str, str, str]:
    """GONE says a secret in channel A, STAYS asks about it in the same thread (so GONE's words are in
    the model call stored with STAYS's answer), both vote on STAYS's answer, GONE says another secret
    in channel B. Returns the two channel IDs and the thread."""
    model.respond_with(lambda body: Reply(text="Noted."))  # answers that don't repeat anyone's words
    a, b = new_channel(), new_channel()
    thread, followup = next_ts(), next_ts()
    running_bot.send(mention(SECRET, channel=a, user=GONE, ts=thread))
    slack.wait_for_calls("chat.postMessage", 1)
    running_bot.send(mention("what do you think of that?", channel=a, user=STAYS, ts=followup, thread_ts=thread))
    [_, answer] = slack.wait_for_calls("chat.postMessage", 2)
    running_bot.send(mention(SECRET_B, channel=b, user=GONE))
    slack.wait_for_calls("chat.postMessage", 3)
    running_bot.memory(a)  # everything stored
    for voter in (GONE, STAYS):
        vote(running_bot, slack, a, followup, answer, voter)
    agent = running_bot.bot.agents.get(ChannelKey(TEAM_ID, a))
    wait_until(lambda: agent.feedback_counts() == (2, 0), what="both votes stored")
    assert running_bot.bot.recall is not None and running_bot.bot.recall.indexer.wait_idle(30)
    return a, b, thread


def test_delete_user_leaves_nothing_of_them_and_everything_of_the_others(
    cli: CliRunner, running_bot: RunningBot, two_channels: tuple[str, str, str], namespace: str
) -> None:
    a, b, _ = two_channels
    memories = {channel: running_bot.memory(channel) for channel in (a, b)}
    stays_before = rows_of(memories[a], STAYS)
    [stays_answer_calls] = [
        row["calls"] for row in memories[a].where(memories[a].user == STAYS).collect() if row["calls"]
    ]
    assert SECRET in json.dumps(stays_answer_calls), "the thread's history carried GONE's words to the model"
    assert any(SECRET in text for text in store_rows(memories[a])), "and Pixeltable keeps row versions"

    result = cli.invoke(main, ["delete-user", GONE.lower(), "--yes"])

    assert result.exit_code == 0, result.output
    assert f"{TEAM_ID:<14}{a:<14}{1:>10}" in result.output and f"{TEAM_ID:<14}{b:<14}{1:>10}" in result.output
    assert "Deleted in 2 channel(s): 2 message(s)" in result.output
    assert "1 vote(s); 3 other row(s) quoting them" in result.output, "two answers to them, one to STAYS"
    for channel, memory in memories.items():
        assert [role for role, _ in rows_of(memory, GONE)] == ["assistant"], "only the answer to them stays"
        exported = memory_snapshot(memory)
        assert not exported["content"].str.contains("secret|vault", case=False).any()
        assert not exported["feedback"].fillna("").str.contains(GONE).any()
        recall = table(f"{ChannelKey(TEAM_ID, channel).agent_name}.recall")
        recalled = recall.select(recall.text, recall.user, recall.role).collect()
        assert not [row for row in recalled if row["user"] == GONE and row["role"] == "user"]
        assert not [row for row in recalled if "secret" in row["text"] or "vault" in row["text"]]
        for stored in (memory, recall):
            assert not [text for text in store_rows(stored) if "sell the farm" in text or "4417" in text], channel
    assert rows_of(memories[a], STAYS) == stays_before, "the other user's messages are untouched"
    [answer] = memories[a].where((memories[a].user == STAYS) & (memories[a].role == "assistant")).collect()
    assert answer["feedback"] == {STAYS: "good"}
    calls = json.dumps(answer["calls"])
    assert SECRET not in calls and DELETED in calls and "what do you think of that?" in calls
    with running_bot.bot.inbox.engine.connect() as connection:
        inbox = connection.execute(sa.text(f'SELECT user_id, text FROM "{namespace}_inbox"')).all()
    assert {text for user, text in inbox if user == GONE} == {""}
    assert "what do you think of that?" in " ".join(text for user, text in inbox if user == STAYS)

    again = cli.invoke(main, ["delete-user", GONE, "--yes"])

    assert again.exit_code == 0, again.output
    assert f"Nothing left to delete of {GONE}" in again.output and "deleted on" in again.output

    unknown = cli.invoke(main, ["delete-user", "U0NOBODY", "--yes"])

    assert unknown.exit_code == 2
    [line] = unknown.output.splitlines()
    assert line == "pixelbot: No trace of user U0NOBODY in any channel's memory or inbox; check the ID."


def test_delete_user_asks_first_and_a_no_deletes_nothing(cli: CliRunner, model: ScriptedOpenAI) -> None:
    key = ChannelKey(TEAM_ID, new_channel())
    Agent(key.agent_name, "x").chat(SECRET, user=GONE)

    refused = cli.invoke(main, ["delete-user", GONE], input="n\n")

    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert "Delete all of this of U0GONE?" in refused.output
    memory = table(f"{key.agent_name}.memory")
    assert rows_of(memory, GONE)[0] == ("user", SECRET)

    confirmed = cli.invoke(main, ["delete-user", GONE, "--team", TEAM_ID.lower()], input="y\n")

    assert confirmed.exit_code == 0, confirmed.output
    assert [role for role, _ in rows_of(memory, GONE)] == ["assistant"]


def test_quoted_words_are_replaced_whole_in_every_stored_request(model: ScriptedOpenAI, bookkeeping: sa.Engine) -> None:
    """Word boundaries, collapsed whitespace (as recall quotes), and the `messages` of a pre-0.2 agent's
    `.chat` table (whose computed columns, which called the model, are not recomputed)."""
    model.respond_with(lambda body: Reply(text="Noted."))
    agent = Agent(ChannelKey(TEAM_ID, new_channel()).agent_name, "x")
    agent.chat("hi", user=GONE)
    agent.chat("line one\n\nline   two", user=GONE)
    agent.chat("this hint", user=STAYS)
    legacy = pxt.create_table(
        f"{agent.name}.chat", {"request_id": pxt.String, "timestamp": pxt.Timestamp, "messages": pxt.Json}
    )
    legacy.add_computed_column(first_role=legacy.messages[0].role)
    quoted = [{"role": "system", "content": "[1] user U0GONE: line one line two"}, {"role": "user", "content": "hi"}]
    legacy.insert([{"request_id": "old", "timestamp": datetime.now(UTC), "messages": quoted}])

    done = erase_user(GONE, [agent.name], bookkeeping)

    [erased] = done.agents
    assert (erased.messages, erased.answers_kept) == (2, 2)
    memory = agent.tables.memory
    [stays] = memory.where((memory.user == STAYS) & (memory.role == "assistant")).collect()
    sent = [message["content"] for message in stays["calls"][0]["request"]["messages"]]
    assert sent[1:] == [DELETED, "Noted.", DELETED, "Noted.", "this hint"], "'hi' is not a word of 'this hint'"
    [old] = legacy.collect()
    assert [message["content"] for message in old["messages"]] == [f"[1] user U0GONE: {DELETED}", DELETED]
    assert old["first_role"] == "system"
    assert not [text for text in store_rows(legacy) if "line one" in text], "nor in the version it replaced"
    assert erase_user(GONE, [agent.name], bookkeeping).changes == 0


def test_scrubbing_matches_whole_words_only() -> None:
    pattern = scrub_pattern(["hi", "a+b (c)", "  "])

    assert scrub_value({"x": ["hi there", "this", "hi-fi", "say a+b (c)!"]}, pattern) == {
        "x": [f"{DELETED} there", "this", f"{DELETED}-fi", f"say {DELETED}!"]
    }
    assert scrub_pattern(["", " \n"]) is None


def test_the_audit_lists_exports_and_deletions_newest_first(
    cli: CliRunner, model: ScriptedOpenAI, slack: FakeSlack, bookkeeping: sa.Engine, namespace: str
) -> None:
    key = ChannelKey(TEAM_ID, new_channel())
    Agent(key.agent_name, "x").chat(SECRET, user=GONE)
    exporter = Exporter(WebClient(token="xoxb-test", base_url=slack.base_url), Audit(bookkeeping, namespace))
    exporter.export(ExportRequest(key, ADMIN_ID, ExportFormat.CSV, slack.response_url("export")), frozenset({ADMIN_ID}))
    assert len(slack.uploaded_files()) == 1
    exported = cli.invoke(main, ["export", "--channel", key.channel_id, "--output", "-"])
    assert exported.exit_code == 0, exported.output
    assert cli.invoke(main, ["delete-user", GONE, "--yes"]).exit_code == 0

    listed = cli.invoke(main, ["audit", "--format", "jsonl"])
    shown = cli.invoke(main, ["audit", "--limit", "2"])

    assert listed.exit_code == 0, listed.output
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [entry["action"] for entry in entries] == [DELETE_USER, EXPORT, EXPORT]
    deletion, by_cli, by_slack = entries
    assert deletion["details"]["user"] == GONE and deletion["details"]["messages"] == 1
    assert deletion["details"]["channels"] == {
        f"{TEAM_ID}/{key.channel_id}": {
            "messages": 1, "recall_rows": 0, "votes": 0, "scrubbed_rows": 1, "kept_versions": 2,
        }
    }  # fmt: skip
    assert (by_cli["channel"], by_cli["details"]["messages"], by_cli["details"]["via"]) == (
        f"{TEAM_ID}/{key.channel_id}", 2, "cli",
    )  # fmt: skip
    assert (by_slack["actor"], by_slack["details"]["format"], by_slack["details"]["via"]) == (ADMIN_ID, "csv", "slack")
    assert deletion["actor"] == by_cli["actor"] != ADMIN_ID, "the CLI's actor is the OS user"
    assert shown.exit_code == 0, shown.output
    [header, first, second] = shown.stdout.splitlines()
    assert header.startswith("AT (UTC)") and DELETE_USER in first and EXPORT in second


def test_the_audit_is_append_only(bookkeeping: sa.Engine, namespace: str) -> None:
    audit = Audit(bookkeeping, namespace)
    audit.record("alice", "settings", "", {"PIXELBOT_HISTORY": [20, 40]})

    for statement in (f"UPDATE \"{namespace}_audit\" SET actor = 'mallory'", f'DELETE FROM "{namespace}_audit"'):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), bookkeeping.begin() as connection:
            connection.execute(sa.text(statement))

    [entry] = Audit(bookkeeping, namespace).entries(action="settings")
    assert (entry.actor, entry.details) == ("alice", {"PIXELBOT_HISTORY": [20, 40]})
