"""`/pixelbot settings`: the modal opens with `views.open`, its submission (signed as Slack sends it)
changes what the channel's agent uses, is stored with who changed what, and bad input changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.agent import ChannelMessage
from agent.channel_config import config_history
from bot.audit import SETTINGS, Audit
from bot.channels import ChannelKey
from bot.settings_modal import SETTINGS_NOT_ALLOWED
from tests.conftest import ADMIN_ID, RunningBot, bot_settings, serve_in_process, wait_until
from tests.fake_openai import ScriptedOpenAI, tool_names
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import USER_ID, mention, slash_command, view_submission

MODELS = {"PIXELBOT_MODELS": "gpt-4o-mini,gpt-4o", "PIXELBOT_TOOL_MODULES": "tests.sample_tools"}


@pytest.fixture
def bot(model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path) -> Iterator[RunningBot]:
    with serve_in_process(bot_settings(slack, model, **MODELS)) as running:
        yield running


def open_modal(bot: RunningBot, slack: FakeSlack, channel_id: str, user: str = ADMIN_ID) -> dict[str, Any]:
    """`/pixelbot settings` by `user`; the modal as `views.open` answered it."""
    opened = len(slack.opened_modals())
    url = slack.response_url("s")
    response = bot.send(slash_command("/pixelbot", "settings", channel_id=channel_id, user_id=user, response_url=url))
    assert response.status == 200
    wait_until(lambda: len(slack.opened_modals()) > opened, what="views.open")
    return slack.opened_modals()[-1].view


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {block["block_id"]: block["element"] for block in view["blocks"] if block["type"] == "input"}


def ephemeral_texts(slack: FakeSlack) -> list[str]:
    return [str(call.params.get("text")) for call in slack.calls("chat.postEphemeral")]


def test_the_modal_round_trips_and_the_channel_agent_uses_what_was_saved(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    view = open_modal(bot, slack, channel_id)
    fields = inputs(view)
    assert set(fields) == {"instructions", "model", "tools", "listening", "retention"}
    assert fields["model"]["initial_option"]["value"] == "default"
    assert {o["value"] for o in fields["tools"]["initial_options"]} >= {"reverse_text", "current_time"}

    answers = {
        "instructions": "Answer in French.",
        "model": "gpt-4o",
        "tools": [o["value"] for o in fields["tools"]["options"] if o["value"] != "reverse_text"],
        "listening": "on",
        "retention": "30",
    }
    response = bot.send(view_submission(view, answers, user=ADMIN_ID))
    assert response.status == 200 and response.body in (b"", b"{}"), "a good submission just closes the modal"
    wait_until(lambda: any("Settings saved" in text for text in ephemeral_texts(slack)), what="the confirmation")

    bot.send(mention("bonjour", channel=channel_id))
    bot.send(slash_command("/tool", "reverse it", channel_id=channel_id, response_url=slack.response_url("t")))
    chat, tool = model.wait_for_requests(2)[-2:]
    assert chat["model"] == tool["model"] == "gpt-4o"
    assert "Answer in French." in chat["messages"][0]["content"]
    assert "reverse_text" not in tool_names(tool) and "current_time" in tool_names(tool)
    assert any("turned on listening" in str(c.params.get("text")) for c in slack.calls("chat.postMessage"))

    key = ChannelKey(TEAM_ID, channel_id)
    [change] = config_history(key.agent_name)
    assert change.changed_by == ADMIN_ID
    assert change.config.model == "gpt-4o" and change.config.retention_days == 30
    assert change.config.disabled_tools == {"reverse_text"}
    assert set(change.changes) == {"instructions", "model", "disabled_tools", "retention_days", "listening"}
    [entry] = Audit(bot.bot.inbox.engine, bot.bot.settings.namespace).entries(10, action=SETTINGS)
    assert entry.actor == ADMIN_ID and entry.channel == f"{TEAM_ID}/{channel_id}"

    reopened = inputs(open_modal(bot, slack, channel_id))  # shows what is now in force
    assert reopened["instructions"]["initial_value"] == "Answer in French."
    assert reopened["model"]["initial_option"]["value"] == "gpt-4o"
    assert reopened["retention"]["initial_value"] == "30"
    assert reopened["listening"]["initial_option"]["value"] == "on"
    assert "reverse_text" not in {o["value"] for o in reopened["tools"]["initial_options"]}


def test_a_channels_settings_survive_a_restart(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, **MODELS)) as bot:
        view = open_modal(bot, slack, channel_id)
        bot.send(view_submission(view, {"model": "gpt-4o", "instructions": "Be brief."}, user=ADMIN_ID))
        wait_until(lambda: any("Settings saved" in text for text in ephemeral_texts(slack)), what="the confirmation")
    with serve_in_process(bot_settings(slack, model, **MODELS)) as bot:
        bot.send(mention("hello again", channel=channel_id))
        [chat] = model.wait_for_requests(1)
    assert chat["model"] == "gpt-4o" and "Be brief." in chat["messages"][0]["content"]

    narrower = MODELS | {"PIXELBOT_MODELS": "gpt-4o-mini"}  # the channel's model is no longer allowed
    with serve_in_process(bot_settings(slack, model, **narrower)) as bot:
        bot.send(mention("and now?", channel=channel_id))
        chat = model.wait_for_requests(2)[-1]
    assert chat["model"] == "gpt-4o-mini" and "Be brief." in chat["messages"][0]["content"]


def test_a_channels_own_retention_deletes_its_old_messages_and_no_others(
    bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    other = f"{channel_id[:-1]}Z"
    view = open_modal(bot, slack, channel_id)
    bot.send(view_submission(view, {"retention": "10"}, user=ADMIN_ID))
    wait_until(lambda: any("Settings saved" in text for text in ephemeral_texts(slack)), what="the confirmation")
    now = datetime.now(UTC)
    for channel in (channel_id, other):
        agent = bot.bot.agents.get(ChannelKey(TEAM_ID, channel))
        messages = [
            ChannelMessage("1600000000.000001", "eleven days old", "U0OLD", now - timedelta(days=11)),
            ChannelMessage("1600000000.000002", "five days old", "U0OLD", now - timedelta(days=5)),
        ]
        bot.bot.storage.submit(agent.absorb, messages).result()
    assert bot.bot.retention is not None

    deleted = bot.bot.retention.sweep()

    assert deleted[channel_id] == 1 and other not in deleted
    assert [content for _, content in bot.memory_rows(channel_id)] == ["five days old"]
    assert sorted(content for _, content in bot.memory_rows(other)) == ["eleven days old", "five days old"]


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"retention": "0"}, "retention"),
        ({"retention": "-5"}, "retention"),
        ({"model": "gpt-5-unlisted"}, "model"),  # not offered, but a forged submission may name it
        ({"instructions": "x" * 2001}, "instructions"),
    ],
)
def test_bad_input_is_shown_in_the_modal_and_nothing_is_applied(
    bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, answers: dict[str, str], field: str
) -> None:
    view = open_modal(bot, slack, channel_id)
    good = {"instructions": "Answer in French.", "model": "gpt-4o"}
    response = bot.send(view_submission(view, good | answers, user=ADMIN_ID))
    assert response.status == 200
    body = response.json()
    assert body["response_action"] == "errors" and set(body["errors"]) == {field}

    bot.send(mention("still the default?", channel=channel_id))
    [chat] = model.wait_for_requests(1)
    assert chat["model"] == "gpt-4o-mini" and "French" not in chat["messages"][0]["content"]
    assert config_history(ChannelKey(TEAM_ID, channel_id).agent_name) == []
    assert Audit(bot.bot.inbox.engine, bot.bot.settings.namespace).entries(10, action=SETTINGS) == []


def test_only_admins_and_the_channels_creator_may_open_it(bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    bot.send(slash_command("/pixelbot", "settings", channel_id=channel_id, response_url=slack.response_url("no")))
    [refusal] = slack.wait_for_responses(1, name="no")
    assert refusal.payload["text"] == SETTINGS_NOT_ALLOWED
    assert slack.opened_modals() == []

    slack.channels[channel_id] = {"creator": USER_ID}
    view = open_modal(bot, slack, channel_id, user=USER_ID)
    assert view["callback_id"] == "pixelbot_settings"


def test_a_submission_by_someone_without_the_right_changes_nothing(
    bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    view = open_modal(bot, slack, channel_id)  # opened by an admin, submitted (forged) by someone else
    bot.send(view_submission(view, {"model": "gpt-4o"}, user=USER_ID))
    wait_until(lambda: SETTINGS_NOT_ALLOWED in ephemeral_texts(slack), what="the refusal")
    assert config_history(ChannelKey(TEAM_ID, channel_id).agent_name) == []


def test_an_unreadable_submission_is_refused_in_the_modal(bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    view = open_modal(bot, slack, channel_id)
    broken = dict(view, private_metadata="x" * 3001)  # over Slack's limit: not a modal Slack would send back
    response = bot.send(view_submission(broken, {"model": "gpt-4o"}, user=ADMIN_ID))
    assert response.status == 200
    body = response.json()
    assert body["response_action"] == "update" and "nothing was saved" in str(body["view"])
    assert config_history(ChannelKey(TEAM_ID, channel_id).agent_name) == []
