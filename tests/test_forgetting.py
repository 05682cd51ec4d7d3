"""`/pixelbot forget thread <link>|channel`: admins only, confirmed with a button, then gone everywhere."""

from __future__ import annotations

from typing import Any

import pixeltable as pxt
import pytest

from agent.recall.table import recall_table_name
from bot.audit import FORGET, Audit
from bot.channels import ChannelKey
from bot.forgetting import CANCEL_ACTION, FORGET_ACTION, FORGET_CANCELLED, FORGET_NOT_ALLOWED, thread_of
from tests.conftest import ADMIN_ID, RunningBot
from tests.fake_slack import TEAM_ID, TEAM_URL, FakeSlack
from tests.slack_requests import USER_ID, block_action, mention, next_ts, slash_command


@pytest.mark.parametrize(
    ("reference", "thread"),
    [
        ("1700000000.123456", "1700000000.123456"),
        (f"{TEAM_URL}archives/C01/p1700000000123456", "1700000000.123456"),
        (f"<{TEAM_URL}archives/C01/p1700000099000001?thread_ts=1700000000.123456&cid=C01>", "1700000000.123456"),
        ("not a link", None),
    ],
)
def test_a_thread_is_named_by_its_link_or_its_ts(reference: str, thread: str | None) -> None:
    assert thread_of(reference) == thread


def ask_to_forget(
    bot: RunningBot, slack: FakeSlack, channel: str, text: str, user: str, name: str
) -> dict[str, object]:
    bot.send(slash_command("/pixelbot", text, channel_id=channel, user_id=user, response_url=slack.response_url(name)))
    [reply] = slack.wait_for_responses(1, name=name)
    return reply.payload


def click(bot: RunningBot, slack: FakeSlack, channel: str, action: str, value: str, user: str, name: str) -> None:
    request = block_action(
        action, value, message_ts=next_ts(), channel=channel, user=user, response_url=slack.response_url(name)
    )
    assert bot.send(request).status == 200


def test_an_admin_forgets_a_thread_after_confirming(running_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    kept, forgotten = next_ts(), next_ts()
    running_bot.send(mention("keep this", channel=channel_id, ts=kept))
    running_bot.send(mention("forget this", channel=channel_id, ts=forgotten))
    slack.wait_for_calls("chat.postMessage", 2)
    link = f"{TEAM_URL}archives/{channel_id}/p{forgotten.replace('.', '')}"

    question = ask_to_forget(running_bot, slack, channel_id, f"forget thread {link}", ADMIN_ID, "ask")
    blocks: list[dict[str, Any]] = question["blocks"]  # type: ignore[assignment]
    [button] = [e for block in blocks for e in block.get("elements", []) if e.get("action_id") == FORGET_ACTION]
    assert running_bot.memory_rows(channel_id) != [], "nothing is forgotten before the click"
    click(running_bot, slack, channel_id, FORGET_ACTION, button["value"], ADMIN_ID, "done")

    [done] = slack.wait_for_responses(1, name="done")
    assert done.payload["replace_original"] is True and "2 messages" in done.payload["text"]
    assert [content for _, content in running_bot.memory_rows(channel_id)] == ["keep this", "echo: keep this"]
    assert running_bot.bot.recall is not None and running_bot.bot.recall.indexer.wait_idle(30)
    recall = pxt.get_table(recall_table_name(ChannelKey(TEAM_ID, channel_id).agent_name))
    assert recall is not None
    assert sorted(row["text"] for row in recall.select(recall.text).collect()) == ["echo: keep this", "keep this"]
    [entry] = Audit(running_bot.bot.inbox.engine, running_bot.bot.settings.namespace).entries(10, action=FORGET)
    assert (entry.actor, entry.details) == (ADMIN_ID, {"scope": "thread", "thread_ts": forgotten})


def test_forgetting_is_for_admins_even_with_a_forged_click(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    running_bot.send(mention("keep me", channel=channel_id))
    slack.wait_for_calls("chat.postMessage")

    assert ask_to_forget(running_bot, slack, channel_id, "forget channel", USER_ID, "ask")["text"] == FORGET_NOT_ALLOWED
    click(running_bot, slack, channel_id, FORGET_ACTION, "channel", USER_ID, "forged")

    [refused] = slack.wait_for_responses(1, name="forged")
    assert refused.payload["text"] == FORGET_NOT_ALLOWED
    assert len(running_bot.memory_rows(channel_id)) == 2


def test_cancel_forgets_nothing(running_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    running_bot.send(mention("keep me too", channel=channel_id))
    slack.wait_for_calls("chat.postMessage")
    ask_to_forget(running_bot, slack, channel_id, "forget channel", ADMIN_ID, "ask")
    click(running_bot, slack, channel_id, CANCEL_ACTION, "cancel", ADMIN_ID, "cancel")

    [cancelled] = slack.wait_for_responses(1, name="cancel")
    assert cancelled.payload["text"] == FORGET_CANCELLED
    assert len(running_bot.memory_rows(channel_id)) == 2
