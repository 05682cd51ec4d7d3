"""Requests that storage could not take in time, poison rows, and answers that must not be sent twice."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from bot.channels import ChannelAgents, ChannelKey
from bot.inbox import Inbox, InboxItem, RequestKind, Status, Worker
from tests.conftest import RunningBot, bot_settings, serve_in_process, stalled_insert, wait_until
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.slack_requests import mention


def dead_worker() -> Worker:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return Worker(owner="crashed-worker", host=Worker.current().host, pid=int(finished.stdout))


def test_a_request_stored_after_its_ack_timed_out_is_still_answered(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    request = mention("stored late", channel=channel_id)
    inbox = running_bot.bot.inbox
    with stalled_insert(inbox, request.payload["event_id"], channel_id, "mention"):
        response = running_bot.send(request)

    assert response.status == 503, "the ack said storage failed"
    [post] = slack.wait_for_calls("chat.postMessage", 1, timeout=20)
    assert post.params["text"] == "echo: stored late", "yet the request, stored late, is answered"
    wait_until(lambda: inbox.status(request.payload["event_id"]) is Status.ANSWERED)


def crashed_inbox(bookkeeping: sa.Engine, namespace: str) -> Inbox:
    """The inbox of a bot process that has died, in the test's namespace (so the next bot takes over)."""
    return Inbox(bookkeeping, namespace, dead_worker())


def test_a_poison_row_left_by_a_crash_does_not_stop_the_next_start(
    model: ScriptedOpenAI, slack: FakeSlack, bookkeeping: sa.Engine, namespace: str, channel_id: str
) -> None:
    crashed = crashed_inbox(bookkeeping, namespace)
    for bad_channel in ("../../x", "c0abc", ""):
        crashed.receive(InboxItem(f"Ev-poison{bad_channel}", RequestKind.MENTION, "T0001", bad_channel, "U1", "hi"))

    with serve_in_process(bot_settings(slack, model)) as restarted:
        for bad_channel in ("../../x", "c0abc", ""):
            assert restarted.bot.inbox.status(f"Ev-poison{bad_channel}") is Status.FAILED
        restarted.send(mention("still here?", channel=channel_id))
        [post] = slack.wait_for_calls("chat.postMessage", 1)
    assert post.params["text"] == "echo: still here?"


@pytest.mark.parametrize("sent_before_the_crash", [True, False])
def test_a_resumed_tool_request_is_answered_exactly_once(
    model: ScriptedOpenAI,
    slack: FakeSlack,
    bookkeeping: sa.Engine,
    namespace: str,
    channel_id: str,
    sent_before_the_crash: bool,
) -> None:
    crashed = crashed_inbox(bookkeeping, namespace)
    item = InboxItem(
        "cmd:crashed", RequestKind.TOOL, "T0001", channel_id, "U0001", "what is 2+2?",
        response_url=slack.response_url("tool"),
    )  # fmt: skip
    crashed.receive(item)
    if sent_before_the_crash:
        crashed.start_delivery(item.request_id)

    with serve_in_process(bot_settings(slack, model)) as restarted:
        wait_until(lambda: restarted.bot.inbox.status(item.request_id) is not Status.ANSWERING, what="resumed")

    assert len(slack.responses("tool")) == (0 if sent_before_the_crash else 1)


def test_idle_channel_agents_are_evicted_beyond_the_bound() -> None:
    opened: list[str] = []

    def factory(name: str) -> object:
        opened.append(name)
        return object()

    agents = ChannelAgents(factory, capacity=2)  # type: ignore[arg-type]
    one, two, three = (ChannelKey("T0001", f"C000{n}") for n in (1, 2, 3))
    agents.get(one), agents.get(two), agents.get(one), agents.get(three)

    assert len(agents) == 2
    agents.get(one)  # still open: the most recently used
    agents.get(two)  # evicted, reopened
    assert opened == [one.agent_name, two.agent_name, three.agent_name, two.agent_name]
