"""Listening, end to end over signed requests: a channel that opted in has its messages remembered
without being answered; edits and deletions in Slack apply to memory and recall; the switch is
announced in the channel, refused where it must be, and survives duplicate deliveries."""

from __future__ import annotations

import pytest

from bot.channels import ChannelKey
from bot.inbox import RequestKind, Status
from bot.replies import LISTEN_NOT_ALLOWED, LISTEN_NOT_IN_CHANNEL
from tests.conftest import RunningBot, bot_settings, serve_in_process, wait_until
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack
from tests.slack_requests import USER_ID, event_callback, mention, message, next_ts, slash_command


def switch(running_bot: RunningBot, slack: FakeSlack, channel_id: str, text: str, name: str) -> str:
    """`/pixelbot <text>` in the channel; the ephemeral answer it gets."""
    response = running_bot.send(
        slash_command("/pixelbot", text, channel_id=channel_id, response_url=slack.response_url(name))
    )
    assert response.status == 200
    [answer] = slack.wait_for_responses(1, name=name)
    assert answer.payload["response_type"] == "ephemeral"
    return str(answer.payload["text"])


def channel_posts(slack: FakeSlack, channel_id: str) -> list[str]:
    return [c.params["text"] for c in slack.calls("chat.postMessage") if c.params["channel"] == channel_id]


def stored(running_bot: RunningBot, channel_id: str) -> list[tuple[str, str, str]]:
    """(kind, role, content) of the channel's memory once the bot is idle, oldest first."""
    memory = running_bot.memory(channel_id)
    rows = memory.order_by(memory.timestamp).select(memory.kind, memory.role, memory.content).collect()
    return [(row["kind"], row["role"], row["content"]) for row in rows]


def idle(running_bot: RunningBot) -> None:
    assert running_bot.bot.answerer.wait_idle(30)
    assert running_bot.bot.recall is not None and running_bot.bot.recall.indexer.wait_idle(30)


def test_a_listening_channel_remembers_messages_without_answering_them(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    assert "*on*" in switch(running_bot, slack, channel_id, "listen on", "on")
    [announcement] = channel_posts(slack, channel_id)
    assert "I remember this channel's messages" in announcement and "/pixelbot listen off" in announcement

    delivery = message("the deploy freeze starts friday", channel=channel_id)
    running_bot.send(delivery)
    running_bot.send(delivery)  # Slack's retry of the same event: stored once
    running_bot.send(message("thread reply about lunch", channel=channel_id, thread_ts=next_ts(), channel_type="group"))
    idle(running_bot)

    assert stored(running_bot, channel_id) == [
        ("listened", "user", "the deploy freeze starts friday"),
        ("listened", "user", "thread reply about lunch"),
    ]
    assert model.requests == []  # nothing answered
    assert len(channel_posts(slack, channel_id)) == 1
    assert "already *on*" in switch(running_bot, slack, channel_id, "listen on", "again")
    assert len(channel_posts(slack, channel_id)) == 1  # announced once
    assert "*on* in this channel (since" in switch(running_bot, slack, channel_id, "listen status", "status")


def test_listened_messages_taken_over_after_a_crash_are_not_stored_twice(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    """A process that stored a batch of listened messages and died before closing their rows leaves
    them open: whoever takes them over must not store them again."""
    switch(running_bot, slack, channel_id, "listen on", "on")
    running_bot.send(message("the deploy freeze starts friday", channel=channel_id))
    running_bot.send(message("the release is on monday", channel=channel_id))
    idle(running_bot)
    running_bot.bot.caretaker.stop()  # no take-over round of its own meanwhile: the one below takes them
    wait_until(lambda: not running_bot.bot.caretaker.alive(), what="the caretaker's thread ended")
    inbox = running_bot.bot.inbox
    with inbox.engine.begin() as connection:  # their rows open again, claimed by a worker that is gone
        connection.execute(
            inbox.table.update()
            .where((inbox.table.c.channel_id == channel_id) & (inbox.table.c.kind == RequestKind.LISTENED.value))
            .values(status=Status.ANSWERING.value, owner=f"crashed-{channel_id}")
        )

    assert running_bot.bot.resume_orphans() == 2
    running_bot.send(message("lunch is at noon", channel=channel_id))  # a new one, perhaps in the same batch
    idle(running_bot)
    assert stored(running_bot, channel_id) == [
        ("listened", "user", "the deploy freeze starts friday"),
        ("listened", "user", "the release is on monday"),
        ("listened", "user", "lunch is at noon"),
    ]
    assert inbox.open_requests()[0] == 0


def test_a_channel_that_does_not_listen_stores_no_chatter(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    switch(running_bot, slack, channel_id, "listen on", "on")
    switch(running_bot, slack, channel_id, "listen off", "off")
    running_bot.send(message("not for the bot", channel=channel_id))
    running_bot.send(mention("hello", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 3)  # on, off, the answer

    assert [content for _, _, content in stored(running_bot, channel_id)] == ["hello", "echo: hello"]


def test_what_was_said_in_a_thread_is_in_the_next_answer_there_and_a_mention_is_stored_once(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    switch(running_bot, slack, channel_id, "listen on", "on")
    thread = next_ts()
    running_bot.send(message("the password vault moved to 1Password", channel=channel_id, thread_ts=thread))
    ts = next_ts()
    running_bot.send(mention("where is the vault now?", channel=channel_id, ts=ts, thread_ts=thread))
    running_bot.send(message(f"<@{BOT_USER_ID}> where is the vault now?", channel=channel_id, ts=ts, thread_ts=thread))

    wait_until(lambda: len(channel_posts(slack, channel_id)) == 2, what="the answer")
    [request] = model.requests
    assert {"role": "user", "content": "the password vault moved to 1Password"} in request["messages"]
    assert [c for k, r, c in stored(running_bot, channel_id) if r == "user"] == [
        "the password vault moved to 1Password",
        "where is the vault now?",
    ]


def test_edits_and_deletions_in_slack_apply_to_memory_and_recall(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    switch(running_bot, slack, channel_id, "listen on", "on")
    ts = next_ts()
    running_bot.send(message("budget is 10k", channel=channel_id, ts=ts, thread_ts=ts))
    idle(running_bot)

    edited = {"type": "message", "user": USER_ID, "text": "budget is 12k", "ts": ts, "thread_ts": ts}
    changed = {"subtype": "message_changed", "hidden": True, "message": edited, "previous_message": {"ts": ts}}
    running_bot.send(message("", channel=channel_id, extra=changed))
    idle(running_bot)
    assert [c for _, _, c in stored(running_bot, channel_id)] == ["budget is 12k"]
    recall = running_bot.bot.recall
    assert recall is not None
    table = recall.table(ChannelKey(TEAM_ID, channel_id).agent_name)
    assert table is not None
    assert [row["text"] for row in table.select(table.text).collect()] == ["budget is 12k"]
    embedded = len(model.embedding_requests)
    running_bot.send(message("", channel=channel_id, extra=changed))  # the same text (a new reply count)
    idle(running_bot)
    assert len(model.embedding_requests) == embedded, "nothing to embed again"

    deleted = {"type": "message", "subtype": "message_deleted", "hidden": True, "channel": channel_id,
               "deleted_ts": ts, "ts": next_ts(), "channel_type": "channel"}  # fmt: skip
    running_bot.send(event_callback(deleted))
    idle(running_bot)
    assert stored(running_bot, channel_id) == []
    assert table.count() == 0


def test_listening_is_refused_where_the_bot_is_not_in_the_channel(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    slack.fail_next("chat.postMessage", "not_in_channel")

    assert switch(running_bot, slack, channel_id, "listen on", "on") == LISTEN_NOT_IN_CHANNEL
    running_bot.send(message("said while not listening", channel=channel_id))
    running_bot.send(mention("hi", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 2)
    assert "said while not listening" not in [c for _, _, c in stored(running_bot, channel_id)]


def test_only_admins_may_switch_listening_when_so_configured(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: object, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_LISTEN_ADMINS_ONLY="true")) as running:
        assert switch(running, slack, channel_id, "listen on", "on") == LISTEN_NOT_ALLOWED
        assert channel_posts(slack, channel_id) == []


@pytest.mark.parametrize("text", ["", "help", "listen maybe", "dance"])
def test_other_pixelbot_commands_get_the_usage(running_bot: RunningBot, slack: FakeSlack, text: str) -> None:
    usage = switch(running_bot, slack, "C0USAGE01", text, "usage")
    assert usage.startswith("Usage: `/pixelbot settings`") and "`/pixelbot listen on`" in usage
