"""The Slack app end to end: signed requests in over HTTP, Web API calls out to the test Slack server,
model calls to the scripted OpenAI server. Nothing of pixelbot's own code is mocked."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from agent import TurnKind
from bot.channels import ChannelKey
from bot.inbox import InboxItem, RequestKind
from bot.progress import PROGRESS_DELAY, WORKING_REACTION
from tests.conftest import RunningBot, wait_until
from tests.fake_openai import Reply, ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.slack_requests import BOT_USER_ID, mention, message, next_ts, slash_command


def posted_texts(slack: FakeSlack, channel: str) -> list[str]:
    return [call.params["text"] for call in slack.calls("chat.postMessage") if call.params["channel"] == channel]


def memory_of(running_bot: RunningBot, channel: str) -> list[tuple[str, str]]:
    return running_bot.memory_rows(channel)


def test_mention_is_answered_in_the_thread_of_the_mention(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    ts = next_ts()
    response = running_bot.send(mention(f"<@{BOT_USER_ID}> what is *pixeltable*?", channel=channel_id, ts=ts))

    assert response.status == 200
    [post] = slack.wait_for_calls("chat.postMessage")
    assert post.params["channel"] == channel_id
    assert post.params["thread_ts"] == ts
    assert post.params["text"] == "echo: what is _pixeltable_?"  # Markdown italics as mrkdwn
    assert model.requests[0]["messages"][-1] == {"role": "user", "content": "what is *pixeltable*?"}


def test_mention_inside_a_thread_is_answered_in_that_thread(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    thread = next_ts()
    running_bot.send(mention("in a thread", channel=channel_id, thread_ts=thread))

    [post] = slack.wait_for_calls("chat.postMessage")
    assert post.params["thread_ts"] == thread


def test_slow_answer_shows_a_progress_reaction_then_removes_it(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    """Where Slack refuses the thread's status line (`tests/test_streaming.py` has the status itself)."""
    slack.fail_next("assistant.threads.setStatus", "channel_type_not_supported")
    model.respond_with(lambda body: Reply(text="slow answer", delay=PROGRESS_DELAY + 0.5))
    ts = next_ts()
    running_bot.send(mention("hi", channel=channel_id, ts=ts))

    [removed] = slack.wait_for_calls("reactions.remove")
    [added] = slack.calls("reactions.add")
    [post] = slack.calls("chat.postMessage")
    assert added.params == removed.params == {"channel": channel_id, "timestamp": ts, "name": WORKING_REACTION}
    assert added.received_at < post.received_at < removed.received_at


def test_fast_answer_shows_no_progress_reaction(running_bot: RunningBot, slack: FakeSlack, channel_id: str) -> None:
    """No hourglass in the first PROGRESS_DELAY seconds, and none left once the answer is out.

    Together these mean an answer posted within PROGRESS_DELAY never shows one, however fast or slow
    this machine is: a loaded machine only makes the reaction later, never earlier, so the test holds
    whether or not the answer here happens to be fast.
    """
    ts = next_ts()
    sent_at = time.monotonic()
    running_bot.send(mention("quick", channel=channel_id, ts=ts))
    running_bot.send(mention("sentinel", channel=channel_id))  # answered after the first one is fully done

    [post, _] = slack.wait_for_calls("chat.postMessage", 2)
    added = [call for call in slack.calls("reactions.add") if call.params["timestamp"] == ts]
    removed = [call for call in slack.calls("reactions.remove") if call.params["timestamp"] == ts]
    assert all(call.received_at - sent_at >= PROGRESS_DELAY for call in added), "hourglass before the delay"
    assert len(removed) == len(added) <= 1, "every hourglass is removed"
    assert all(add.received_at < remove.received_at for add, remove in zip(added, removed, strict=True))
    assert all(post.received_at < remove.received_at for remove in removed), "removed after the answer"


def test_follow_up_uses_the_channel_memory(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    running_bot.send(mention("my name is Ada", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 1)
    running_bot.send(mention("what is my name?", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 2)

    contents = [m["content"] for m in model.requests[-1]["messages"][1:]]
    assert contents == ["my name is Ada", "echo: my name is Ada", "what is my name?"]


def test_follow_up_in_the_answer_thread_remembers_the_question(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    root = next_ts()
    running_bot.send(mention("plan the offsite", channel=channel_id, ts=root))
    slack.wait_for_calls("chat.postMessage", 1)
    running_bot.send(mention("and the budget?", channel=channel_id, thread_ts=root))
    slack.wait_for_calls("chat.postMessage", 2)

    contents = [m["content"] for m in model.requests[-1]["messages"][1:]]
    assert contents == ["plan the offsite", "echo: plan the offsite", "and the budget?"]


def test_two_channels_are_isolated(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    other = channel_id + "X"
    running_bot.send(mention("secret of channel one", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 1)
    running_bot.send(mention("hello from channel two", channel=other))
    slack.wait_for_calls("chat.postMessage", 2)

    assert "secret" not in json.dumps(model.requests[-1])
    assert posted_texts(slack, other) == ["echo: hello from channel two"]
    assert memory_of(running_bot, other) == [
        ("user", "hello from channel two"),
        ("assistant", "echo: hello from channel two"),
    ]


def test_messages_of_one_conversation_are_answered_in_order(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.on(lambda body: body["messages"][-1]["content"] == "first", Reply(text="echo: first", delay=0.3))
    for text in ["first", "second", "third"]:
        running_bot.send(mention(text, channel=channel_id))

    slack.wait_for_calls("chat.postMessage", 3)
    assert posted_texts(slack, channel_id) == ["echo: first", "echo: second", "echo: third"]


def test_slash_tool_is_acked_at_once_and_answered_through_response_url(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.then(Reply(tool_calls=[("calculate", {"expression": "6*7"})]), Reply(text="6 × 7 = **42**"))
    request = slash_command("/tool", "what is 6*7?", response_url=slack.response_url("calc"), channel_id=channel_id)

    response = running_bot.send(request)

    assert response.status == 200
    assert response.elapsed < 3.0, "Slack gives up after 3 seconds"
    assert response.json()["response_type"] == "ephemeral"
    [delivered] = slack.wait_for_responses(1, name="calc")
    assert delivered.payload["response_type"] == "in_channel"
    assert delivered.payload["text"] == "6 × 7 = *42*"
    assert "what is 6*7?" in json.dumps(delivered.payload["blocks"][0])
    assert [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"] == ["42"]


def test_slash_tool_without_text_gets_usage(running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI) -> None:
    response = running_bot.send(slash_command("/tool", "   ", response_url=slack.response_url("empty")))

    assert response.status == 200
    assert "Usage" in response.json()["text"]
    assert model.requests == []


def test_retried_and_duplicated_events_are_answered_once(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    request = mention("only once please", channel=channel_id)
    running_bot.send(request)
    running_bot.send(request.retry(1))
    running_bot.send(request.retry(2, reason="http_error"))
    running_bot.send(request.signed())  # same event_id delivered again
    running_bot.send(mention("done", channel=channel_id))

    slack.wait_for_calls("chat.postMessage", 2)
    assert posted_texts(slack, channel_id) == ["echo: only once please", "echo: done"]
    assert len(model.requests) == 2


def test_bad_or_stale_signature_is_refused_and_nothing_runs(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    forged = mention("forged", channel=channel_id).signed(signing_secret="wrong-secret")
    stale = mention("stale", channel=channel_id).signed(timestamp=int(next_ts().split(".")[0]) - 6 * 60)

    assert running_bot.send(forged).status == 401
    assert running_bot.send(stale).status == 401
    running_bot.send(mention("genuine", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 1)
    assert posted_texts(slack, channel_id) == ["echo: genuine"]


def test_bot_messages_are_ignored(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    running_bot.send(mention("from another bot", channel=channel_id, extra={"bot_id": "B0THER"}))
    running_bot.send(message("my own answer", channel=channel_id, user=BOT_USER_ID, extra={"bot_id": "BBOT"}))
    running_bot.send(message("plain chatter without a mention", channel=channel_id))
    running_bot.send(mention("a human", channel=channel_id))

    slack.wait_for_calls("chat.postMessage", 1)
    assert posted_texts(slack, channel_id) == ["echo: a human"]
    assert len(model.requests) == 1


def test_model_failure_gives_a_friendly_message_and_keeps_the_message(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    model.respond_with(lambda body: Reply(status=503))
    running_bot.send(mention("are you there?", channel=channel_id))

    [post] = slack.wait_for_calls("chat.postMessage", timeout=60)
    assert "can't reach the model" in post.params["text"]
    assert "Traceback" not in post.params["text"]
    assert memory_of(running_bot, channel_id) == [("user", "are you there?")]


def test_empty_mention_gets_usage_without_calling_the_model(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    running_bot.send(mention(f"<@{BOT_USER_ID}>   ", channel=channel_id))

    [post] = slack.wait_for_calls("chat.postMessage")
    assert "Mention me with a question" in post.params["text"]
    assert model.requests == []


def test_long_answer_is_split_without_breaking_code_blocks(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    code = "\n".join(f"line_{index} = {index}" for index in range(400))
    model.then(Reply(text=f"Here is the code:\n\n```python\n{code}\n```\n\nThat's all."))
    running_bot.send(mention("give me a long program", channel=channel_id))

    posts = slack.wait_for_calls("chat.postMessage", 2)
    texts = [post.params["text"] for post in posts]
    assert all(len(text) <= 3000 for text in texts)
    assert all(text.count("```") % 2 == 0 for text in texts)
    assert "line_0 = 0" in texts[0] and "That's all." in texts[-1]
    assert all(post.params["thread_ts"] == posts[0].params["thread_ts"] for post in posts)


def test_healthz_answers_when_ready(running_bot: RunningBot) -> None:
    response = running_bot.sender._client.get(f"{running_bot.root_url}/healthz")

    assert response.status_code == 200 and response.json()["ok"] is True
    assert {response.json()[part] for part in ("storage", "answering", "caretaker", "inbox")} == {"ok"}


def test_healthz_fails_when_the_caretaker_has_stopped(running_bot: RunningBot) -> None:
    running_bot.bot.caretaker.stop()
    wait_until(lambda: not running_bot.bot.caretaker.alive(), what="the caretaker stopped")

    response = running_bot.sender._client.get(f"{running_bot.root_url}/healthz")

    assert response.status_code == 503
    assert response.json()["ok"] is False and response.json()["caretaker"] == "failing"


def test_healthz_fails_when_a_request_has_been_open_too_long(running_bot: RunningBot, channel_id: str) -> None:
    inbox = running_bot.bot.inbox
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    inbox.receive(InboxItem("Ev-stuck", RequestKind.MENTION, TEAM_ID, channel_id, "U0001", "hi", received_at=long_ago))

    response = running_bot.sender._client.get(f"{running_bot.root_url}/healthz")

    assert response.status_code == 503
    assert response.json()["inbox"] == "stuck" and response.json()["oldest_open_seconds"] >= 3600


def test_memory_records_user_thread_and_kind(
    running_bot: RunningBot, slack: FakeSlack, model: ScriptedOpenAI, channel_id: str
) -> None:
    thread = next_ts()
    running_bot.send(mention("threaded", channel=channel_id, user="U0ADA", thread_ts=thread))
    slack.wait_for_calls("chat.postMessage")

    assert running_bot.bot.answerer.wait_idle(30)
    agent = running_bot.bot.answerer.agents.get(ChannelKey(TEAM_ID, channel_id))
    memory = agent.tables.memory
    rows = memory.order_by(memory.timestamp).select(memory.user, memory.thread_ts, memory.kind).collect()
    assert list(rows) == [{"user": "U0ADA", "thread_ts": thread, "kind": TurnKind.CHAT.value}] * 2
