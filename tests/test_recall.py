"""Recall end to end: what a channel said long ago or in another thread reaches the prompt, with its
source linked under the answer; edits, deletions, imports and an embedding outage behave as users
expect. Real Pixeltable (embedding index on pgvector), real `openai` client, the scripted server's
embeddings (texts sharing words are similar), signed Slack requests."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pixeltable as pxt
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from agent import Agent, ConfigError
from agent.agent import ChannelMessage
from agent.export import memory_snapshot
from agent.recall import Embedder, EmbeddingSettings, Recall, RecallLimits
from agent.recall.table import recall_table_name
from bot.channel_homes import ChannelHomes
from bot.channels import ChannelKey, channels_with_agents
from bot.cli import main
from tests.conftest import RunningBot, bot_settings, serve_in_process, wait_until
from tests.fake_openai import Base64, Reply, ScriptedOpenAI
from tests.fake_slack import TEAM_ID, TEAM_URL, FakeSlack
from tests.slack_requests import mention, next_ts

FACT = "Decision: the Falcon release ships on March 14, right after the QA signoff."
QUESTION = "when does the falcon release ship?"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def ts_at(index: int) -> str:
    return f"{int(START.timestamp()) + index * 600}.000100"


def filler(index: int) -> ChannelMessage:
    """Everyday chatter that shares no word with the fact, in forty threads."""
    topics = ("lunch order", "flaky test", "standup notes", "oncall handover", "design review")
    text = f"{topics[index % len(topics)]} {index}: moved ticket PX-{index} to done, see build {index * 7}"
    return ChannelMessage(
        ts_at(index), text, f"U{index % 9:08d}", START + timedelta(minutes=10 * index), ts_at(index % 40)
    )


def channel_agent(running_bot: RunningBot, channel_id: str) -> Agent:
    return running_bot.bot.agents.get(ChannelKey(TEAM_ID, channel_id))


def absorb(running_bot: RunningBot, channel_id: str, messages: list[ChannelMessage]) -> None:
    """Store `messages` as the bot stores listened ones, and wait until recall has indexed them."""
    agent = channel_agent(running_bot, channel_id)
    running_bot.bot.storage.submit(agent.absorb, messages).result()
    assert running_bot.bot.recall is not None
    assert running_bot.bot.recall.indexer.wait_idle(60)


def recalled_text(body: dict[str, Any]) -> str:
    """The recall block of a model request ("" if the prompt has none)."""
    systems = [m["content"] for m in body["messages"] if m["role"] == "system"]
    return "\n".join(text for text in systems[1:] if text.startswith("Recalled"))


def cite_the_fact(body: dict[str, Any]) -> Reply:
    """A model that cites the recalled line holding "March 14", if there is one."""
    match = re.search(r"^\[(\d+)\][^\n]*March 14", recalled_text(body), re.MULTILINE)
    return Reply(text=f"It ships on March 14 [{match.group(1)}]." if match else "I don't know.")


def blocks_of(params: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = params["blocks"]
    return list(json.loads(blocks) if isinstance(blocks, str) else blocks)


def answer_posts(slack: FakeSlack, channel_id: str) -> list[dict[str, Any]]:
    return [call.params for call in slack.calls("chat.postMessage") if call.params["channel"] == channel_id]


def test_a_fact_said_500_messages_earlier_in_another_thread_is_recalled_and_linked(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    fact_ts, fact_thread = ts_at(3), ts_at(1)
    fact = ChannelMessage(fact_ts, FACT, "U0PRIYA01", START + timedelta(minutes=30), fact_thread)
    absorb(running_bot, channel_id, [fact, *(filler(i) for i in range(4, 504))])
    model.respond_with(cite_the_fact)

    running_bot.send(mention(QUESTION, channel=channel_id, ts=next_ts()))

    [post] = slack.wait_for_calls("chat.postMessage")
    assert post.params["text"] == "It ships on March 14 [1]."
    [context] = [block for block in blocks_of(post.params) if block["type"] == "context"]
    link = f"{TEAM_URL}archives/{channel_id}/p{fact_ts.replace('.', '')}?thread_ts={fact_thread}&cid={channel_id}"
    assert context["elements"][0]["text"] == f"Sources: <{link}|<@U0PRIYA01>, Jan 5, 2026>"
    [request] = model.requests
    assert "u0priya01 (user U0PRIYA01) in a thread: " + FACT in recalled_text(request)
    assert not model.spec_errors  # every embedding request valid per CreateEmbeddingRequest
    assert len(model.embedding_requests[-1]["input"]) <= 64
    assert {request["encoding_format"] for request in model.embedding_requests} == {"base64"}  # the compact form


@pytest.mark.parametrize("server", ["ignore", "refuse"])
def test_a_server_that_ignores_or_refuses_base64_vectors_gets_asked_for_floats(
    server: Base64,
    model: ScriptedOpenAI,
    slack: FakeSlack,
    pixeltable_home: Path,
    channel_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Floats sent instead of base64 are read just the same; a 400 for base64 (older vLLM, some gateways)
    turns the bot to floats from then on, at the start-up probe, with one log line."""
    model.base64 = server
    with caplog.at_level(logging.WARNING), serve_in_process(bot_settings(slack, model)) as running:
        fact = ChannelMessage(ts_at(3), FACT, "U0PRIYA01", START + timedelta(minutes=30), ts_at(1))
        absorb(running, channel_id, [fact, *(filler(i) for i in range(4, 40))])
        model.respond_with(cite_the_fact)
        running.send(mention(QUESTION, channel=channel_id, ts=next_ts()))
        [post] = slack.wait_for_calls("chat.postMessage")
    assert post.params["text"] == "It ships on March 14 [1]."
    formats = [request["encoding_format"] for request in model.embedding_requests]
    refused = caplog.text.count("refused base64 vectors")
    if server == "ignore":
        assert set(formats) == {"base64"} and refused == 0
    else:
        assert formats[:2] == ["base64", "float"] and set(formats[2:]) == {"float"} and refused == 1


def test_the_rest_of_a_recalled_thought_comes_with_it(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    fact_at, thread = START + timedelta(minutes=30), ts_at(1)
    rest = "Only for EU customers though, Americas waits until April."  # no word of the question
    said = [
        ChannelMessage(ts_at(3), FACT, "U0PRIYA01", fact_at, thread),
        ChannelMessage(
            f"{int(fact_at.timestamp()) + 120}.000100", rest, "U0PRIYA01", fact_at + timedelta(minutes=2), thread
        ),
    ]
    absorb(running_bot, channel_id, [*said, *(filler(i) for i in range(4, 504))])

    running_bot.send(mention(QUESTION, channel=channel_id, ts=next_ts()))

    slack.wait_for_calls("chat.postMessage")
    lines = recalled_text(model.requests[0]).splitlines()
    [at] = [number for number, line in enumerate(lines) if line.endswith(FACT)]
    assert lines[at + 1].endswith(rest)  # the author's next message in the thread, right after it


def test_an_answer_that_cites_nothing_has_no_sources_line(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    absorb(running_bot, channel_id, [ChannelMessage(ts_at(1), FACT, "U0PRIYA01", START, ts_at(0))])

    running_bot.send(mention(QUESTION, channel=channel_id, ts=next_ts()))

    [post] = slack.wait_for_calls("chat.postMessage")
    assert FACT in recalled_text(model.requests[0])  # recalled, but the echo model cites nothing
    assert [block["type"] for block in blocks_of(post.params)] == ["section", "context_actions"], "no Sources line"


def test_the_recent_window_and_the_recalled_set_never_repeat_a_message(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    thread = ts_at(1)
    absorb(running_bot, channel_id, [ChannelMessage(ts_at(2), FACT, "U0PRIYA01", START, thread)])

    running_bot.send(mention(QUESTION, channel=channel_id, ts=next_ts(), thread_ts=thread))

    slack.wait_for_calls("chat.postMessage")
    [request] = model.requests
    assert {"role": "user", "content": FACT} in request["messages"]  # the thread's own message
    assert FACT not in recalled_text(request)


def test_an_edited_message_is_recalled_in_its_new_form_and_a_deleted_one_never(
    running_bot: RunningBot, model: ScriptedOpenAI, channel_id: str
) -> None:
    in_a_thread = ChannelMessage(ts_at(1), FACT, "U0PRIYA01", START, ts_at(0))
    absorb(running_bot, channel_id, [in_a_thread, filler(2), filler(3)])
    agent, bot = channel_agent(running_bot, channel_id), running_bot.bot
    assert bot.recall is not None

    edited = FACT.replace("March 14", "March 21")
    assert bot.storage.submit(agent.edit, ts_at(1), edited).result()
    assert bot.recall.indexer.wait_idle(30)
    agent.chat(QUESTION)
    assert edited in recalled_text(model.requests[-1])
    assert "March 14" not in recalled_text(model.requests[-1])

    assert bot.storage.submit(agent.erase, ts_at(1)).result()
    assert bot.recall.indexer.wait_idle(30)
    agent.chat(QUESTION)
    assert "Falcon" not in recalled_text(model.requests[-1])
    exported = memory_snapshot(agent.tables.memory, None)
    assert not any("Falcon" in str(value) for value in exported["content"])


def test_answers_keep_coming_while_the_embedding_server_fails_and_nothing_is_lost(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    absorb(running_bot, channel_id, [ChannelMessage(ts_at(1), FACT, "U0PRIYA01", START, ts_at(0))])
    model.embedding_failure = Reply(status=503)
    with caplog.at_level(logging.WARNING):
        running_bot.send(mention("first question", channel=channel_id, ts=next_ts()))
        [post] = slack.wait_for_calls("chat.postMessage")
    assert post.params["text"] == "echo: first question"
    assert "recall skipped" in caplog.text

    model.embedding_failure = None  # the server is back: the stored turn gets its embedding
    memory = running_bot.memory(channel_id)
    recall_table = channel_agent(running_bot, channel_id).recall
    assert recall_table is not None
    table = recall_table.table(channel_agent(running_bot, channel_id).name)
    assert table is not None
    wait_until(lambda: table.count() == memory.count() == 3, timeout=60, what="indexed after the outage")
    keys = [row["key"] for row in table.select(table.key).collect()]
    assert len(keys) == len(set(keys))


def test_a_wrong_embedding_setting_fails_at_start_with_a_clear_message(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path
) -> None:
    model.embedding_failure = Reply(status=404)
    settings = bot_settings(slack, model, PIXELBOT_EMBEDDING_MODEL="no-such-model")
    with (
        pytest.raises(ConfigError, match=r"refused a test embedding.*PIXELBOT_EMBEDDING_MODEL"),
        serve_in_process(settings),
    ):
        pass


def test_recall_can_be_switched_off(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_RECALL="false")) as running:
        running.send(mention("hello", channel=channel_id, ts=next_ts()))
        slack.wait_for_calls("chat.postMessage")
    assert model.embedding_requests == []


# -- the command line --------------------------------------------------------------------------------


def write_export(path: Path, channel_id: str) -> Path:
    """A Slack export (zip) of one channel: the fact, a thread reply, chatter, a join message."""
    day = [
        {"type": "message", "ts": ts_at(1), "user": "U0PRIYA01", "text": FACT},
        {"type": "message", "ts": ts_at(2), "thread_ts": ts_at(1), "user": "U0BOB0001", "text": "great, noted"},
        {"type": "message", "ts": ts_at(3), "user": "U0BOB0001", "text": "lunch order: pizza again"},
        {"type": "message", "ts": ts_at(4), "subtype": "channel_join", "user": "U0NEW0001", "text": "joined"},
    ]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("channels.json", json.dumps([{"id": channel_id, "name": "releases"}]))
        archive.writestr("users.json", json.dumps([{"id": "U0PRIYA01", "name": "priya"}]))
        archive.writestr("releases/2026-01-05.json", json.dumps(day))
        archive.writestr("releases/2026-01-06.json", "{not json")
    return path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: ScriptedOpenAI) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXELBOT_EMBEDDING_DIMENSIONS", "64")
    return CliRunner()


def test_import_twice_stores_each_message_once_and_recall_finds_it(
    cli: CliRunner, tmp_path: Path, channel_id: str
) -> None:
    export = write_export(tmp_path / "export.zip", channel_id)
    arguments = ["import", "--from", str(export), "--team", TEAM_ID]

    first = cli.invoke(main, arguments)
    second = cli.invoke(main, arguments)

    assert first.exit_code == 0, first.output
    assert "Imported 3 new message(s) of 3 read, into 1 channel(s)" in first.output
    assert "skipped releases/2026-01-06.json" in first.output
    assert "Imported 0 new message(s) of 3 read" in second.output
    found = cli.invoke(main, ["recall", "--channel", channel_id, "--query", QUESTION, "--k", "2"])
    assert found.exit_code == 0, found.output
    [line] = [json.loads(text) for text in found.stdout.splitlines() if text.startswith("{")]
    assert line["query"] == QUESTION
    assert line["results"][0]["text"] == FACT
    assert set(line["results"][0]) == {"ts", "thread_ts", "user", "role", "text", "score"}
    assert line["results"][0]["ts"] == ts_at(1)


def test_recall_answers_a_file_of_queries_in_order_and_indexes_an_older_agent(
    cli: CliRunner, tmp_path: Path, channel_id: str, model: ScriptedOpenAI
) -> None:
    key = ChannelKey(TEAM_ID, channel_id)
    Agent(key.agent_name, "x").chat(FACT)  # made without recall: its memory has no index yet
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": QUESTION}) + "\n" + json.dumps({"query": "pizza?"}) + "\n")

    first = cli.invoke(main, ["recall", "--channel", channel_id, "--queries", str(queries)])
    again = cli.invoke(main, ["recall", "--channel", channel_id, "--queries", str(queries), "--format", "table"])

    assert first.exit_code == 0, first.output
    assert [json.loads(line)["query"] for line in first.stdout.splitlines()] == [QUESTION, "pizza?"]
    assert "# " + QUESTION in again.stdout and FACT[:60] in again.stdout  # indexed on first open, then recalled
    assert recall_table_name(key.agent_name).endswith(".recall")


def test_import_of_something_that_is_not_an_export_names_the_problem(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    result = cli.invoke(main, ["import", "--from", str(tmp_path / "notes"), "--team", TEAM_ID])
    assert result.exit_code == 2
    assert "not a Slack export" in result.output


def test_recall_starts_once_a_channel_holds_more_than_its_recent_turns_carry(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_RECALL_AFTER="4")) as running:
        running.send(mention("first question", channel=channel_id, ts=next_ts()))
        slack.wait_for_calls("chat.postMessage")
        recall = running.bot.recall
        assert recall is not None and recall.indexer.wait_idle(30)
        name = channel_agent(running, channel_id).name
        assert pxt.get_table(recall_table_name(name), if_not_exists="ignore") is None  # 2 messages: none yet

        absorb(running, channel_id, [filler(index) for index in range(3)])  # 5 messages now
        table = pxt.get_table(recall_table_name(name))
        assert table is not None
        assert table.count() == running.memory(channel_id).count() == 5  # the earlier ones caught up


def test_the_rows_being_indexed_count_even_where_memory_looks_empty(pixeltable_home: Path, agent_name: str) -> None:
    """The writes thread may not see a memory table (or rows) another thread has just written; the
    batch in hand is stored all the same, so it alone can make the channel big enough for recall."""
    other = f"{agent_name}_other"
    for name in (agent_name, other):
        pxt.create_dir(name, parents=True, if_exists="ignore")
    loop = asyncio.new_event_loop()
    running = threading.Thread(target=loop.run_forever, daemon=True)
    running.start()
    recall = Recall(
        Embedder(EmbeddingSettings("test-model", 8)), ThreadPoolExecutor(1), loop, RecallLimits(start_after=4)
    )
    try:
        assert recall.table(agent_name, grow=4) is None  # 4 messages: the recent turns carry them
        assert recall.table(agent_name, grow=1) is not None  # the fifth
        assert recall.table(other, grow=5) is not None  # 5 at once, no memory table in sight
    finally:
        recall.close()
        loop.call_soon_threadsafe(loop.stop)
        running.join()
        if left := asyncio.all_tasks(loop):  # the cancelled (gather() of nothing looks for the current loop)
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()


def test_recall_on_the_command_line_refuses_unclear_questions(cli: CliRunner, tmp_path: Path, channel_id: str) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"query": "fine"}\n["not an object"]\n')

    both = cli.invoke(main, ["recall", "--channel", channel_id, "--query", "x", "--queries", str(queries)])
    broken = cli.invoke(main, ["recall", "--channel", channel_id, "--queries", str(queries)])

    assert both.exit_code == 2 and "Give exactly one of --query TEXT and --queries FILE." in both.output
    assert broken.exit_code == 2 and '--queries line 2 is not a JSON object with a "query".' in broken.output


def test_an_import_into_a_shared_channel_goes_to_the_memory_of_its_home_workspace(
    cli: CliRunner, tmp_path: Path, channel_id: str, bookkeeping: sa.Engine
) -> None:
    """The channel was first seen through another workspace (Slack Connect): its one memory is there."""
    ChannelHomes(bookkeeping).home("T0HOME", channel_id)
    export = write_export(tmp_path / "export.zip", channel_id)

    result = cli.invoke(main, ["import", "--from", str(export), "--team", TEAM_ID])

    assert result.exit_code == 0, result.output
    assert [key for key in channels_with_agents() if key.channel_id == channel_id] == [ChannelKey("T0HOME", channel_id)]
