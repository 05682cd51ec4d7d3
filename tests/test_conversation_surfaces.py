"""Thread follow-ups, feedback buttons and the assistant panel, end to end over signed requests."""

from __future__ import annotations

import json

from agent.export import memory_snapshot
from bot.channels import ChannelKey
from bot.feedback import FEEDBACK_ACTION, THANKS
from bot.settings import DEFAULT_GREETING, DEFAULT_PROMPTS
from tests.conftest import RunningBot, bot_settings, serve_in_process, wait_until
from tests.fake_openai import ScriptedOpenAI, last_user_text
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import (
    BOT_USER_ID,
    USER_ID,
    assistant_thread_started,
    block_action,
    mention,
    message,
    next_ts,
)


def answered_questions(model: ScriptedOpenAI) -> list[str]:
    return [last_user_text(body) for body in model.requests]


# -- thread follow-ups --------------------------------------------------------------------------------
def asked_in_a_thread(bot: RunningBot, slack: FakeSlack, channel: str) -> str:
    """The ts of a thread the bot was asked in (and answered): "first question", at top level."""
    thread = next_ts()
    bot.send(mention("first question", channel=channel, ts=thread))
    slack.wait_for_calls("chat.postMessage")
    return thread


def test_a_reply_in_a_thread_the_bot_answered_in_is_answered_without_a_mention(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    thread = asked_in_a_thread(running_bot, slack, channel_id)

    running_bot.send(message("and a follow-up", channel=channel_id, thread_ts=thread))

    [_, followup] = slack.wait_for_calls("chat.postMessage", 2)
    assert followup.params["thread_ts"] == thread
    assert answered_questions(model) == ["first question", "and a follow-up"]
    assert model.requests[1]["messages"][-3]["content"] == "first question", "the thread's history came along"


def test_a_reply_that_mentions_the_bot_is_answered_once(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    thread = asked_in_a_thread(running_bot, slack, channel_id)
    ts = next_ts()
    text = f"<@{BOT_USER_ID}> once more"
    running_bot.send(message(text, channel=channel_id, ts=ts, thread_ts=thread))  # Slack sends both events
    running_bot.send(mention(text, channel=channel_id, ts=ts, thread_ts=thread))
    running_bot.send(mention("sentinel", channel=channel_id, thread_ts=thread))

    slack.wait_for_calls("chat.postMessage", 3)
    assert running_bot.bot.answerer.wait_idle(30)
    assert answered_questions(model) == ["first question", "once more", "sentinel"]


def test_a_reply_addressed_to_someone_else_is_remembered_not_answered(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    thread = asked_in_a_thread(running_bot, slack, channel_id)

    running_bot.send(message("<@U0BOB> can you check this?", channel=channel_id, thread_ts=thread))
    running_bot.send(message("what did I ask Bob?", channel=channel_id, thread_ts=thread))

    slack.wait_for_calls("chat.postMessage", 2)
    assert running_bot.bot.answerer.wait_idle(30)
    assert answered_questions(model) == ["first question", "what did I ask Bob?"]
    prompt = [m["content"] for m in model.requests[1]["messages"]]
    assert "@U0BOB can you check this?" in prompt, "the reply to Bob is in the thread's memory"


def test_replies_in_threads_the_bot_was_never_asked_in_are_ignored(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    running_bot.send(message("chatter in someone's thread", channel=channel_id, thread_ts=next_ts()))
    running_bot.send(mention("sentinel", channel=channel_id))

    slack.wait_for_calls("chat.postMessage")
    assert running_bot.bot.answerer.wait_idle(30)
    assert answered_questions(model) == ["sentinel"]


def test_follow_ups_can_be_turned_off(
    model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: object, channel_id: str
) -> None:
    with serve_in_process(bot_settings(slack, model, PIXELBOT_THREAD_FOLLOWUPS="false")) as bot:
        thread = next_ts()
        bot.send(mention("first question", channel=channel_id, ts=thread))
        slack.wait_for_calls("chat.postMessage")
        bot.send(message("a follow-up", channel=channel_id, thread_ts=thread))
        bot.send(mention("sentinel", channel=channel_id))
        slack.wait_for_calls("chat.postMessage", 2)
        assert bot.bot.answerer.wait_idle(30)
    assert answered_questions(model) == ["first question", "sentinel"]


# -- feedback -------------------------------------------------------------------------------------------
def test_every_answer_carries_feedback_buttons_and_a_click_is_stored_and_exported(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    ts = next_ts()
    running_bot.send(mention("rate me", channel=channel_id, ts=ts))
    [post] = slack.wait_for_calls("chat.postMessage")
    [buttons] = [block for block in post.json_param("blocks") if block["type"] == "context_actions"]
    [element] = buttons["elements"]
    assert (element["type"], element["action_id"]) == ("feedback_buttons", FEEDBACK_ACTION)
    value = element["positive_button"]["value"]

    click = block_action(
        FEEDBACK_ACTION,
        value,
        message_ts=post.response["ts"],  # type: ignore[index]
        thread_ts=ts,
        channel=channel_id,
        element_type="feedback_buttons",
        response_url=slack.response_url("feedback"),
    )
    assert running_bot.send(click).status == 200
    running_bot.send(click)  # delivered twice: counted once

    [thanks] = slack.wait_for_calls("chat.postEphemeral")
    assert (thanks.params["user"], thanks.params["text"]) == (USER_ID, THANKS["good"])
    agent = running_bot.bot.agents.get(ChannelKey(TEAM_ID, channel_id))
    wait_until(lambda: agent.feedback_counts() == (1, 0), what="the vote stored")
    memory = running_bot.memory(channel_id)
    [answer] = memory.where(memory.role == "assistant").select(memory.feedback).collect()
    assert answer["feedback"] == {USER_ID: "good"}
    exported = memory_snapshot(memory)
    assert exported.loc[exported["role"] == "assistant", "feedback"].tolist() == [json.dumps({USER_ID: "good"})]
    assert len(slack.calls("chat.postEphemeral")) == 1


def test_a_second_click_replaces_the_first(running_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    ts = next_ts()
    running_bot.send(mention("rate me twice", channel=channel_id, ts=ts))
    [post] = slack.wait_for_calls("chat.postMessage")
    for rating in ("good", "bad"):
        running_bot.send(
            block_action(
                FEEDBACK_ACTION,
                f"{rating} {ts}",
                message_ts=post.response["ts"],  # type: ignore[index]
                channel=channel_id,
                element_type="feedback_buttons",
                response_url=slack.response_url("feedback"),
            )
        )
    slack.wait_for_calls("chat.postEphemeral", 2)
    agent = running_bot.bot.agents.get(ChannelKey(TEAM_ID, channel_id))
    wait_until(lambda: agent.feedback_counts() == (0, 1), what="the second vote replacing the first")


# -- the assistant panel -----------------------------------------------------------------------------------
def test_a_new_assistant_thread_gets_a_greeting_and_suggested_prompts(
    running_bot: RunningBot, slack: FakeSlack
) -> None:
    thread = next_ts()
    response = running_bot.send(assistant_thread_started(channel="D0PANEL", thread_ts=thread))

    assert response.status == 200
    [prompts] = slack.wait_for_calls("assistant.threads.setSuggestedPrompts")
    [greeting] = slack.calls("chat.postMessage")
    assert (greeting.params["channel"], greeting.params["thread_ts"]) == ("D0PANEL", thread)
    assert greeting.params["text"] == DEFAULT_GREETING
    assert [p["message"] for p in prompts.json_param("prompts")] == list(DEFAULT_PROMPTS)


def test_a_question_in_the_panel_is_answered_in_its_thread_titled_and_with_the_viewed_channel(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    slack.memberships[USER_ID] = [channel_id]
    running_bot.send(mention("The launch password is tangerine.", channel=channel_id))
    slack.wait_for_calls("chat.postMessage")
    assert running_bot.bot.answerer.wait_idle(30)
    running_bot.bot.recall.indexer.wait_idle(30)  # type: ignore[union-attr]
    thread = next_ts()
    running_bot.send(assistant_thread_started(channel="D0PANEL", thread_ts=thread, context_channel=channel_id))
    slack.wait_for_calls("assistant.threads.setSuggestedPrompts")

    question = "What is the launch password in this channel?"
    running_bot.send(message(question, channel="D0PANEL", channel_type="im", thread_ts=thread))
    running_bot.send(message("thanks", channel="D0PANEL", channel_type="im", thread_ts=thread))

    posts = slack.wait_for_calls("chat.postMessage", 4)  # the mention's answer, the greeting, two answers
    assert [p.params["thread_ts"] for p in posts[2:]] == [thread, thread]
    [title] = slack.wait_for_calls("assistant.threads.setTitle")
    assert title.params["title"] == question, "titled after its first question only"
    recalled = json.dumps(model.requests[1]["messages"])
    assert "tangerine" in recalled, "the channel beside the panel was recalled"
    assert "tangerine" not in json.dumps(model.requests[2]["messages"][-1])


def test_the_panel_recalls_a_viewed_channel_only_for_its_members(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    """The panel's context names whatever channel is on screen (in a shared channel, another
    organisation's people see it too); its memory is recalled for the channel's members only."""
    running_bot.send(mention("The launch password is tangerine.", channel=channel_id, user="U0MEMBER"))
    slack.wait_for_calls("chat.postMessage")
    assert running_bot.bot.answerer.wait_idle(30)
    running_bot.bot.recall.indexer.wait_idle(30)  # type: ignore[union-attr]
    slack.memberships[USER_ID] = ["C0ELSEWHERE"]
    thread = next_ts()
    running_bot.send(assistant_thread_started(channel="D0PANEL", thread_ts=thread, context_channel=channel_id))
    slack.wait_for_calls("assistant.threads.setSuggestedPrompts")

    running_bot.send(message("What is the launch password?", channel="D0PANEL", channel_type="im", thread_ts=thread))

    slack.wait_for_calls("chat.postMessage", 3)  # the mention's answer, the greeting, the answer
    assert "tangerine" not in json.dumps(model.requests[1]["messages"])
    assert slack.calls("users.conversations"), "membership was asked"


def test_an_edit_or_a_deletion_in_a_panel_thread_applies_to_memory(running_bot: RunningBot, slack: FakeSlack) -> None:
    """Bolt's `Assistant` acknowledges edits and deletions in its threads and drops them; pixelbot's
    own listener applies them there as everywhere: what a user deleted in Slack is gone from the bot."""
    thread, kept, dropped = next_ts(), next_ts(), next_ts()
    panel = "D0EDITS"  # tests keep their agents apart by channel: a DM of its own
    running_bot.send(assistant_thread_started(channel=panel, thread_ts=thread))
    slack.wait_for_calls("assistant.threads.setSuggestedPrompts")
    for ts, text in ((kept, "my budget is 10k"), (dropped, "my pin is 4321")):
        running_bot.send(message(text, channel=panel, channel_type="im", thread_ts=thread, ts=ts))
    slack.wait_for_calls("chat.postMessage", 3)  # the greeting, two answers

    edited = {"type": "message", "user": USER_ID, "text": "my budget is 12k", "ts": kept, "thread_ts": thread}
    changed = {"subtype": "message_changed", "hidden": True, "message": edited, "previous_message": {"ts": kept}}
    before = {"ts": dropped, "user": USER_ID, "text": "my pin is 4321", "thread_ts": thread}
    deleted = {"subtype": "message_deleted", "hidden": True, "deleted_ts": dropped, "previous_message": before}
    for change in (changed, deleted):
        assert running_bot.send(message("", channel=panel, channel_type="im", extra=change)).status == 200

    def questions() -> list[str]:
        return [content for role, content in running_bot.memory_rows(panel) if role == "user"]

    wait_until(lambda: questions() == ["my budget is 12k"], what="the edit and the deletion in memory")

    root = {"type": "message", "subtype": "assistant_app_thread", "user": USER_ID, "text": "New chat", "ts": thread}
    retitled = message("", channel=panel, channel_type="im", extra={"subtype": "message_changed", "message": root})
    assert running_bot.send(retitled).status == 200
    assert running_bot.bot.inbox.status(retitled.payload["event_id"]) is None, "the thread's root is not memory"
