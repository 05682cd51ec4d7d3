"""Never lose a message: the durable inbox, take-over after a crash, and answering exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from slack_bolt import BoltContext, BoltResponse

from bot.channels import ChannelKey
from bot.inbox import PRESUMED_DEAD_AFTER, Inbox, InboxItem, RequestKind, Status, Worker
from bot.listeners import _message_storer
from tests.bot_process import BotProcess
from tests.conftest import bot_environment, bot_settings, serve_in_process, wait_until
from tests.fake_openai import ScriptedOpenAI, blocked_until, last_user_text
from tests.fake_slack import FakeSlack
from tests.slack_requests import SlackSender, mention, slash_command


def dead_pid() -> int:
    """The PID of a process that has exited."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(finished.stdout)


def item(request_id: str, channel_id: str = "C0DURABLE") -> InboxItem:
    return InboxItem(request_id, RequestKind.MENTION, "T0001", channel_id, "U0001", "hello", ts="1.000100")


def test_a_request_is_received_once_across_workers(make_inbox: Callable[..., Inbox], channel_id: str) -> None:
    first, second = make_inbox(), make_inbox()

    assert first.receive(item(f"Ev-{channel_id}")) is True
    assert second.receive(item(f"Ev-{channel_id}")) is False
    assert first.status(f"Ev-{channel_id}") is Status.ANSWERING
    first.close(f"Ev-{channel_id}", Status.ANSWERED)


def test_a_burst_of_requests_and_their_retries_is_stored_once_each(
    make_inbox: Callable[..., Inbox], channel_id: str
) -> None:
    """Requests arriving together share one insert (group commit); each is still stored once, and of a
    request and its retry arriving together only one is told it is new."""
    inbox = make_inbox()
    ids = [f"Ev{n}-{channel_id}" for n in range(20)]
    results: dict[str, list[bool]] = {request_id: [] for request_id in ids}
    start = threading.Barrier(len(ids) * 2)

    def receive(request_id: str) -> None:
        start.wait(10)
        results[request_id].append(inbox.receive(item(request_id, channel_id)))

    threads = [threading.Thread(target=receive, args=(request_id,)) for request_id in ids * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(sorted(fates) == [False, True] for fates in results.values()), results
    assert all(inbox.status(request_id) is Status.ANSWERING for request_id in ids)


def test_orphans_of_a_dead_worker_go_to_exactly_one_live_worker(
    make_inbox: Callable[..., Inbox], channel_id: str
) -> None:
    crashed = make_inbox(Worker(owner=f"crashed-{channel_id}", host=Worker.current().host, pid=dead_pid()))
    crashed.receive(item(f"Ev1-{channel_id}", channel_id))
    crashed.receive(item(f"Ev2-{channel_id}", channel_id))
    host = Worker.current().host  # two live workers on this host: PIDs of processes that are running
    alive = make_inbox(Worker(owner=f"alive-{channel_id}", host=host, pid=os.getpid()))
    latecomer = make_inbox(Worker(owner=f"latecomer-{channel_id}", host=host, pid=1))

    taken = [request.request_id for request in alive.take_over_orphans() if request.channel_id == channel_id]

    assert taken == [f"Ev1-{channel_id}", f"Ev2-{channel_id}"]
    assert [request for request in latecomer.take_over_orphans() if request.channel_id == channel_id] == []
    for request_id in taken:
        alive.close(request_id, Status.ANSWERED)
    assert alive.status(f"Ev1-{channel_id}") is Status.ANSWERED


def test_requests_of_a_live_worker_elsewhere_are_left_alone(make_inbox: Callable[..., Inbox], channel_id: str) -> None:
    elsewhere = make_inbox(Worker(owner=f"elsewhere-{channel_id}", host="another-host", pid=1))
    elsewhere.receive(item(f"Ev-{channel_id}", channel_id))

    assert [request for request in make_inbox().take_over_orphans() if request.channel_id == channel_id] == []
    elsewhere.close(f"Ev-{channel_id}", Status.ANSWERED)


def test_event_that_cannot_be_stored_gets_503_so_slack_retries() -> None:
    class BrokenInbox:
        def receive(self, item: InboxItem) -> bool:
            raise ConnectionError("storage restarting")

    class OwnHomes:  # every channel at home in the workspace it came through
        def key(self, team_id: str, channel_id: str) -> ChannelKey:
            return ChannelKey(team_id, channel_id)

        def homed(self, item: InboxItem) -> InboxItem:
            return item

    store = _message_storer(BrokenInbox(), None, OwnHomes())  # type: ignore[arg-type]
    body = mention("hello").payload
    called: list[bool] = []

    context = BoltContext(bot_user_id="UBOT", team_id="T0001")
    response = store(body=body, context=context, next=lambda: called.append(True))

    assert isinstance(response, BoltResponse) and response.status == 503
    assert called == []


def test_redelivery_to_a_restarted_bot_is_not_answered_again(
    slack: FakeSlack, model: ScriptedOpenAI, channel_id: str, pixeltable_home: Path
) -> None:
    settings = bot_settings(slack, model)
    request = mention("answer me once", channel=channel_id)
    with serve_in_process(settings) as first:
        assert first.send(request).status == 200
        slack.wait_for_calls("chat.postMessage", 1)
    # the first bot is stopped (as on SIGTERM); what it knew in memory is gone, only storage remains

    with serve_in_process(settings) as restarted:
        assert restarted.send(request.retry(1)).status == 200
        restarted.send(mention("next", channel=channel_id))  # FIFO per channel: answered after the retry
        slack.wait_for_calls("chat.postMessage", 2)

    assert [call.params["text"] for call in slack.calls("chat.postMessage")] == ["echo: answer me once", "echo: next"]
    assert [last_user_text(body) for body in model.requests] == ["answer me once", "next"]


def test_killed_bot_answers_every_request_exactly_once_after_restart(
    model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path, fresh_home: Path
) -> None:
    model.delay = 1.0
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home / "home"), PIXELBOT_WORKERS="2")
    channels = [channel_id, channel_id + "B"]
    mentions = [mention(f"question {n} in {c}", channel=c) for c in channels for n in range(3)]
    tool = slash_command("/tool", "what is 2+2?", channel_id=channels[0], response_url=slack.response_url("tool"))
    try:
        with SlackSender() as sender:
            bot = BotProcess(env, tmp_path / "bot.log").start()
            assert all(sender.send(bot.events_url, request).status == 200 for request in [*mentions, tool])
            model.wait_for_requests(1)
            bot.stop(signal.SIGKILL)

            restarted = BotProcess(env, tmp_path / "bot.log").start()
            for channel in channels:  # FIFO per channel: when these are answered, so is everything before
                sender.send(restarted.events_url, mention("sentinel", channel=channel))
            slack.wait_for_calls("chat.postMessage", len(mentions) + len(channels), timeout=120)
            slack.wait_for_responses(1, name="tool", timeout=60)
            restarted.stop()
    finally:
        model.delay = 0.0

    answered_threads = [call.params["thread_ts"] for call in slack.calls("chat.postMessage")]
    for request in mentions:
        assert answered_threads.count(request.payload["event"]["ts"]) == 1, "each mention answered exactly once"
    assert len(slack.responses("tool")) == 1


def test_requests_of_a_worker_elsewhere_whose_heartbeat_stopped_are_taken_over(
    make_inbox: Callable[..., Inbox], channel_id: str
) -> None:
    remote = make_inbox(Worker(owner=f"remote-{channel_id}", host="another-host", pid=1))
    remote.receive(item(f"Ev-{channel_id}", channel_id))
    live = make_inbox()
    assert [r for r in live.take_over_orphans() if r.channel_id == channel_id] == [], "its heartbeat is recent"

    stale = datetime.now(UTC) - PRESUMED_DEAD_AFTER - timedelta(seconds=1)
    with remote.engine.begin() as connection:
        workers = remote.workers
        connection.execute(workers.update().where(workers.c.owner == remote.worker.owner).values(heartbeat_at=stale))

    assert [r.request_id for r in live.take_over_orphans() if r.channel_id == channel_id] == [f"Ev-{channel_id}"]
    live.close(f"Ev-{channel_id}", Status.ANSWERED)


def test_sigterm_over_http_finishes_the_answer_in_progress_then_exits_cleanly(
    model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path, fresh_home: Path
) -> None:
    release, held = threading.Event(), list[str]()
    model.respond_with(blocked_until(release, held))
    bot = BotProcess(bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home)), tmp_path / "bot.log").start()
    assert bot.process is not None
    try:
        with SlackSender() as sender:
            assert sender.send(bot.events_url, mention("finish me", channel=channel_id)).status == 200
        wait_until(lambda: held == ["finish me"], what="the model call in flight")
        bot.process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            bot.process.wait(0.5)  # still finishing: it does not exit with the answer unsent
    finally:
        release.set()
    exit_status = bot.process.wait(60)

    assert exit_status == 0, bot.log()
    assert [post.params["text"] for post in slack.calls("chat.postMessage")] == ["echo: finish me"]


def test_a_tool_answer_posted_just_before_a_sigkill_is_not_posted_again(
    model: ScriptedOpenAI, slack: FakeSlack, channel_id: str, tmp_path: Path, fresh_home: Path
) -> None:
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home / "home"))
    tool = slash_command("/tool", "what is 2+2?", channel_id=channel_id, response_url=slack.response_url("killed"))
    release = threading.Event()
    slack.hold_responses("killed", release)
    try:
        with SlackSender() as sender:
            bot = BotProcess(env, tmp_path / "bot.log").start()
            assert sender.send(bot.events_url, tool).status == 200
            slack.wait_for_responses(1, name="killed", timeout=60)  # posted; the bot waits for Slack's answer
            bot.stop(signal.SIGKILL)
            release.set()

            restarted = BotProcess(env, tmp_path / "bot.log").start()
            sender.send(restarted.events_url, mention("sentinel", channel=channel_id))  # after the resumed /tool
            slack.wait_for_calls("chat.postMessage", 1, timeout=60)
            restarted.stop()
    finally:
        release.set()

    assert len(slack.responses("killed")) == 1, "the answer posted before the crash is not posted again"
