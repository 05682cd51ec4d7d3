"""Settings reach existing channels: after a restart with another model, system prompt or tool set,
a channel's next answer uses them, and what was stored before stays as it was."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import bot_settings, serve_in_process
from tests.fake_openai import ScriptedOpenAI, tool_names
from tests.fake_slack import FakeSlack
from tests.slack_requests import mention, slash_command


def test_a_restart_with_a_new_model_prompt_and_tools_reaches_an_old_channel(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    before = {"PIXELBOT_MODEL": "model-a", "PIXELBOT_SYSTEM_PROMPT": "You are A."}
    with serve_in_process(bot_settings(slack, model, **before)) as bot:
        bot.send(mention("first", channel=channel_id))
        bot.send(slash_command("/tool", "hello", channel_id=channel_id, response_url=slack.response_url("a")))
        slack.wait_for_responses(1, name="a")
        old_rows = [(row["request_id"], row["role"], row["calls"]) for row in bot.memory(channel_id).collect()]

    after = {
        "PIXELBOT_MODEL": "model-b",
        "PIXELBOT_SYSTEM_PROMPT": "You are B.",
        "PIXELBOT_TOOL_MODULES": "tests.sample_tools",
    }
    with serve_in_process(bot_settings(slack, model, **after)) as bot:
        bot.send(mention("second", channel=channel_id))
        bot.send(slash_command("/tool", "reverse it", channel_id=channel_id, response_url=slack.response_url("b")))
        slack.wait_for_responses(1, name="b")
        memory = bot.memory(channel_id)
        rows = {(row["request_id"], row["role"]): row["calls"] for row in memory.collect()}

    first_chat, first_tool, second_chat, second_tool = (
        model.requests[0],
        model.requests[1],
        model.requests[-2],
        model.requests[-1],
    )
    assert (first_chat["model"], second_chat["model"]) == ("model-a", "model-b")
    assert first_chat["messages"][0] == {"role": "system", "content": "You are A."}
    assert second_chat["messages"][0] == {"role": "system", "content": "You are B."}
    assert "reverse_text" not in tool_names(first_tool) and "reverse_text" in tool_names(second_tool)
    for request_id, role, calls in old_rows:  # stored before the restart: kept exactly as they were
        assert rows[(request_id, role)] == calls
    models = {call["model"] for calls in rows.values() if calls for call in calls}
    assert models == {"model-a", "model-b"}, "which model answered each request stays queryable"
