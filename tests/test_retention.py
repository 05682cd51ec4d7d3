"""Retention: `PIXELBOT_RETENTION_DAYS` deletes exactly what is older, from memory, recall and the inbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pixeltable as pxt
import pytest

from agent import ConfigError
from agent.agent import ChannelMessage
from agent.recall.table import recall_table_name
from agent.versions import StoredVersions
from bot.audit import RETENTION, Audit
from bot.channels import ChannelKey
from tests.conftest import RunningBot, bot_settings, serve_in_process
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import mention

NOW = datetime.now(UTC)


@pytest.fixture
def keeping_30_days(model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path) -> Iterator[RunningBot]:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_RETENTION_DAYS="30")) as running:
        yield running


def test_retention_deletes_exactly_the_old_messages_everywhere(
    keeping_30_days: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    bot = keeping_30_days
    bot.send(mention("a question of today", channel=channel_id))
    slack.wait_for_calls("chat.postMessage")
    agent = bot.bot.agents.get(ChannelKey(TEAM_ID, channel_id))
    old = [
        ChannelMessage(f"1600000000.00000{n}", f"old message {n}", "U0OLD", NOW - timedelta(days=31 + n))
        for n in range(3)
    ]
    recent = ChannelMessage("1700000000.000001", "a message of last week", "U0NEW", NOW - timedelta(days=7))
    assert bot.bot.answerer.wait_idle(30)
    bot.bot.storage.submit(agent.absorb, [*old, recent]).result()
    assert bot.bot.recall is not None and bot.bot.recall.indexer.wait_idle(60)
    assert bot.bot.retention is not None

    deleted = bot.bot.retention.sweep()

    assert deleted[channel_id] == 3
    assert bot.bot.recall.indexer.wait_idle(60)
    contents = sorted(content for _, content in bot.memory_rows(channel_id))
    assert contents == sorted(["a question of today", "echo: a question of today", "a message of last week"])
    recall = pxt.get_table(recall_table_name(agent.name))
    assert recall is not None
    assert sorted(row["text"] for row in recall.select(recall.text).collect()) == contents
    for stored, column in ((agent.tables.memory, "content"), (recall, "text")):  # nor kept for revert()
        versions = StoredVersions.of(stored, agent.name, (column,))
        assert versions is not None
        assert list(versions.kept(versions.columns[column].like("old message%"), column)) == []
    assert channel_id not in bot.bot.retention.sweep(), "a second sweep finds nothing"
    [entry] = Audit(bot.bot.inbox.engine, bot.bot.settings.namespace).entries(10, action=RETENTION)
    assert entry.details["deleted"][channel_id] == 3


def test_old_finished_requests_leave_the_inbox_open_ones_stay(
    keeping_30_days: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    bot = keeping_30_days
    inbox = bot.bot.inbox
    bot.send(mention("recent", channel=channel_id))
    slack.wait_for_calls("chat.postMessage")
    assert bot.bot.answerer.wait_idle(30)
    with inbox.engine.begin() as connection:  # two requests of two months ago: one finished, one still open
        for request_id, status in (("Ev0OLDDONE", "answered"), ("Ev0OLDOPEN", "answering")):
            connection.execute(
                inbox.table.insert().values(
                    request_id=request_id, kind="mention", team_id=TEAM_ID, channel_id=channel_id, user_id="U0001",
                    text="old", ts="1.1", thread_ts="", response_url="", received_at=NOW - timedelta(days=60),
                    status=status, owner=inbox.worker.owner,  # ours: not an orphan the caretaker resumes
                )
            )  # fmt: skip

    assert bot.bot.retention is not None
    assert bot.bot.retention.sweep()["inbox"] == 1
    assert inbox.status("Ev0OLDDONE") is None and inbox.status("Ev0OLDOPEN") is not None


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_a_retention_that_is_not_a_positive_number_of_days_is_refused(
    model: ScriptedOpenAI, slack: FakeSlack, days: str
) -> None:
    with pytest.raises(ConfigError, match="PIXELBOT_RETENTION_DAYS"):
        bot_settings(slack, model, PIXELBOT_RETENTION_DAYS=days)
