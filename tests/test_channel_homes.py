"""One channel, one memory: a channel's events through any workspace reach one agent, and channels an
earlier version kept under two workspaces are merged into one memory at start."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent import Agent
from bot.channels import ChannelKey, channels_with_agents
from tests.conftest import bot_settings, serve_in_process, wait_until
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.slack_requests import mention


def stored(agent: Agent, texts: list[str]) -> None:
    for index, text in enumerate(texts):
        agent.tables.memory.insert(
            [{"request_id": f"{agent.name}-{index}", "role": "user", "content": text,
              "timestamp": datetime.now(UTC), "user": "U0001", "thread_ts": "", "kind": "chat"}]
        )  # fmt: skip


def test_a_channel_kept_under_two_workspaces_is_merged_into_one_memory_at_start(
    model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, pixeltable_home: Path
) -> None:
    home, stray = ChannelKey("T0001", channel_id), ChannelKey("T0002", channel_id)
    stored(Agent(home.agent_name, "sys"), ["the deploy window is Tuesday"])
    stored(Agent(stray.agent_name, "sys"), ["the release owner is Dana", "the codename is Heron"])

    with serve_in_process(bot_settings(slack, model)) as running:
        assert [key for key in channels_with_agents() if key.channel_id == channel_id] == [home]
        running.send(mention("who owns the release?", channel=channel_id, team_id="T0002"))
        wait_until(lambda: bool(slack.calls("chat.postMessage")), timeout=30, what="the answer")

    prompt = str(model.requests[-1]["messages"])
    for fact in ("the deploy window is Tuesday", "the release owner is Dana", "the codename is Heron"):
        assert fact in prompt
    with serve_in_process(bot_settings(slack, model)):  # a second start finds nothing to merge
        assert [key for key in channels_with_agents() if key.channel_id == channel_id] == [home]
    contents = [row["content"] for row in Agent(home.agent_name, "sys").tables.memory.collect()]
    assert sorted(contents).count("the codename is Heron") == 1
