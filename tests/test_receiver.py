"""Acks from a process of their own (`PIXELBOT_ACK_PROCESS=true`): the receiving process stores message
events in the arrival log and acknowledges them; the bot's process takes them in, in order, once each."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from agent import StorageError
from bot import receiver as receiver_module
from bot.acknowledgements import STORAGE_DOWN, STORAGE_SLOW, TOOL_USAGE, tool_acknowledgement
from bot.arrival_log import Arrival, ArrivalLog
from bot.arrival_reader import ArrivalReader
from bot.database import single_statement_engine
from bot.edge import MAX_BODY, Admitted, Edge
from bot.inbox import Inbox, InboxItem
from bot.receiver import LogWriter, Receiver, ReceiverConfig, ReceivingProcess
from bot.server import take_in
from tests.bot_process import BotProcess, free_port
from tests.conftest import RunningBot, bot_environment, wait_until
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack
from tests.postgres import PostgresServer
from tests.slack_requests import SIGNING_SECRET, SlackSender, mention, slash_command


@pytest.fixture
def behind_receiver(
    slack: FakeSlack, model: ScriptedOpenAI, fresh_home: Path, tmp_path: Path
) -> Iterator[Callable[[], BotProcess]]:
    """`pixelbot serve` with its receiving process; each call starts another on the same storage."""
    env = bot_environment(slack, model, PIXELTABLE_HOME=str(fresh_home / "home"))
    started: list[BotProcess] = []

    def start() -> BotProcess:
        started.append(BotProcess(env, tmp_path / "bot.log").start())
        return started[-1]

    yield start
    for bot in started:
        bot.stop(signal.SIGKILL)


def test_behind_a_receiving_process_the_bot_answers_mentions_and_commands_and_refuses_forgeries(
    behind_receiver: Callable[[], BotProcess], slack: FakeSlack, channel_id: str
) -> None:
    bot = behind_receiver()
    tool = slash_command("/tool", "what is 2+2?", channel_id=channel_id, response_url=slack.response_url("tool"))
    with SlackSender() as sender:
        assert sender.send(bot.events_url, mention("hello there", channel=channel_id)).status == 200
        forged = sender.send(bot.events_url, mention("forged", channel=channel_id).signed(signing_secret="wrong"))
        tool_ack = sender.send(bot.events_url, tool)  # forwarded to the bot's own server, and answered by it
        slack.wait_for_calls("chat.postMessage", 1, timeout=60)
        slack.wait_for_responses(1, name="tool", timeout=60)

    assert forged.status == 401
    assert tool_ack.status == 200 and "what is 2+2?" in tool_ack.json()["text"]
    assert [call.params["text"] for call in slack.calls("chat.postMessage")] == ["echo: hello there"]
    assert "receiving process listening" in bot.log()
    health = httpx.get(f"http://127.0.0.1:{bot.port}/healthz", timeout=10).json()  # the bot's, forwarded
    assert (health["receiver"], health["arrivals"], health["arrivals_waiting"]) == ("ok", "ok", 0)
    bot.stop()
    assert bot.process is not None and bot.process.returncode == 0, bot.log()


def test_the_receiver_acknowledges_while_the_bot_process_is_frozen_and_nothing_is_lost_or_repeated(
    behind_receiver: Callable[[], BotProcess], slack: FakeSlack, channel_id: str
) -> None:
    """Acks need nothing of the bot's process: frozen (SIGSTOP) it acks nothing, the receiver acks every
    mention; killed while frozen, its successor answers each once, in order, redeliveries included."""
    bot = behind_receiver()
    assert bot.process is not None
    channels = [channel_id, channel_id + "B"]
    mentions = [mention(f"question {n} in {c}", channel=c) for c in channels for n in range(3)]
    tool = slash_command("/tool", "what is 2+2?", channel_id=channel_id, response_url=slack.response_url("frozen"))
    with SlackSender() as sender:
        bot.process.send_signal(signal.SIGSTOP)
        try:
            assert [sender.send(bot.events_url, request).status for request in mentions] == [200] * len(mentions)
            tool_ack = sender.send(bot.events_url, tool)
        finally:
            bot.process.send_signal(signal.SIGKILL)
            bot.process.wait(30)
        restarted = behind_receiver()
        assert sender.send(restarted.events_url, mentions[0].retry(1)).status == 200  # Slack's redelivery
        slack.wait_for_calls("chat.postMessage", len(mentions), timeout=90)
        slack.wait_for_responses(1, name="frozen", timeout=60)

    assert tool_ack.status == 200 and tool_ack.json()["text"] == tool_acknowledgement("what is 2+2?")
    posts = slack.calls("chat.postMessage")
    for channel in channels:
        in_channel = [call.params["text"] for call in posts if call.params["channel"] == channel]
        assert in_channel == [f"echo: question {n} in {channel}" for n in range(3)], "each once, in order"
    wait_until(lambda: "took over 7 events" in restarted.log(), what="the take-over logged", timeout=30)
    assert len(slack.calls("chat.postMessage")) == len(mentions) and len(slack.responses("frozen")) == 1


def test_the_bot_stops_with_status_1_when_its_receiving_process_dies(
    behind_receiver: Callable[[], BotProcess],
) -> None:
    """A process manager then starts both again; the bot never runs deaf on a port nobody serves."""
    bot = behind_receiver()
    assert bot.process is not None
    receiver = bot.receiver_pid()
    assert receiver is not None
    os.kill(receiver, signal.SIGKILL)

    assert bot.process.wait(60) == 1, bot.log()
    assert "the receiving process exited" in bot.log()


# -- the reader, on the test's own database ---------------------------------------------------------------


def event(channel: str, number: int) -> Arrival:
    request_id = f"Ev{channel}{number}"
    payload: dict[str, Any] = {"type": "event_callback", "event_id": request_id, "event": {"channel": channel}}
    return Arrival(request_id, payload)


def taking_in(fails: Callable[[Arrival], bool]) -> tuple[list[str], Callable[[Arrival], bool]]:
    """A `take_in` that fails where `fails` says, and the IDs of those it took in, in order."""
    taken: list[str] = []

    def take_in(arrival: Arrival) -> bool:
        if fails(arrival):
            return False
        taken.append(arrival.request_id)
        return True

    return taken, take_in


def test_an_event_that_fails_holds_up_only_its_own_channel_and_is_tried_again_in_order(
    make_inbox: Callable[..., Inbox], bookkeeping: sa.Engine
) -> None:
    inbox = make_inbox()
    log = ArrivalLog(inbox.writes, inbox.namespace, create=True)
    owner = inbox.worker.owner
    log.store(owner, [event("CA", 1), event("CB", 1), event("CA", 2), event("CB", 2)])
    failing = {"EvCA1"}
    taken, take_in = taking_in(lambda arrival: arrival.request_id in failing)
    reader = ArrivalReader(log, owner, take_in, lambda: {owner}, retry_after=0.0)
    reader.read_all()
    assert taken == ["EvCB1", "EvCB2"], "the other channel goes on; CA2 waits behind CA1"
    assert [arrival.tries for arrival in log.oldest(owner, 10)] == [1, 0]

    failing.clear()
    reader.read_all()
    assert taken == ["EvCB1", "EvCB2", "EvCA1", "EvCA2"]
    assert log.oldest(owner, 10) == []


def test_a_failing_channel_with_a_long_backlog_does_not_hide_the_other_channels(
    make_inbox: Callable[..., Inbox],
) -> None:
    """The reader reads past a held-back channel's rows, however many, to the other channels' events;
    and tries a failed event again only after a pause, so a short outage costs few tries."""
    inbox = make_inbox()
    log = ArrivalLog(inbox.writes, inbox.namespace, create=True)
    owner = inbox.worker.owner
    log.store(owner, [*(event("CA", n) for n in range(10)), event("CB", 1)])
    taken, take_in = taking_in(lambda arrival: arrival.channel == "CA")
    reader = ArrivalReader(log, owner, take_in, lambda: {owner}, retry_after=3600.0, batch=4)
    reader.read_all()
    reader.read_all()  # at once again: CA is held back, not tried

    assert taken == ["EvCB1"]
    assert [arrival.tries for arrival in log.oldest(owner, 20)] == [1] + [0] * 9


def test_the_events_of_a_stopped_process_are_adopted_by_a_live_one(make_inbox: Callable[..., Inbox]) -> None:
    inbox = make_inbox()
    log = ArrivalLog(inbox.writes, inbox.namespace, create=True)
    log.store("gone", [event("CA", 1)])
    log.store("alive-elsewhere", [event("CB", 1)])

    assert log.adopt(inbox.worker.owner, {inbox.worker.owner, "alive-elsewhere"}) == 1
    assert [arrival.request_id for arrival in log.oldest(inbox.worker.owner, 10)] == ["EvCA1"]


# -- the receiving process alone ----------------------------------------------------------------------------


@pytest.fixture
def lone_receiver() -> Iterator[tuple[ReceivingProcess, str]]:
    """A receiving process whose database and bot process are both unreachable (nothing listens there)."""
    nowhere = free_port()
    config = ReceiverConfig(
        database_url=f"postgresql://nobody@127.0.0.1:{nowhere}/nothing",
        namespace="test_lone",
        owner="lone",
        signing_secret=SIGNING_SECRET,
        bot_url=f"http://127.0.0.1:{nowhere}",
        host="127.0.0.1",
        port=free_port(),
    )
    receiver = ReceivingProcess(config)
    url = f"http://127.0.0.1:{config.port}"
    wait_until(lambda: _accepts(config.port), timeout=30, what="the receiving process listening")
    yield receiver, url
    receiver.stop()


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_receiver_answers_503_when_storage_or_the_bot_is_down_and_stops_when_its_input_closes(
    lone_receiver: tuple[ReceivingProcess, str],
) -> None:
    """Slack then delivers the event again: nothing was stored, and nothing is acknowledged as if it was."""
    receiver, url = lone_receiver
    with SlackSender() as sender:
        stored = sender.send(f"{url}/slack/events", mention("remember me"))
        tool = sender.send(f"{url}/slack/events", slash_command("/tool", "2+2", response_url=f"{url}/nowhere"))
        usage = sender.send(f"{url}/slack/events", slash_command("/tool", " ", response_url=f"{url}/nowhere"))
        forwarded = sender.send(f"{url}/slack/events", slash_command("/pixelbot", "", response_url=f"{url}/nowhere"))
        forged = sender.send(f"{url}/slack/events", mention("forged").signed(signing_secret="wrong"))
        huge = sender.post(f"{url}/slack/events", b"x" * (MAX_BODY + 1), {"Content-Type": "application/json"})
    health = httpx.get(f"{url}/healthz", timeout=10)

    assert (stored.status, stored.text) == (503, "storage unavailable")
    assert tool.status == 200 and tool.json()["text"] == STORAGE_DOWN, "a command Slack won't redeliver is told"
    assert usage.status == 200 and usage.json()["text"] == TOOL_USAGE
    assert forwarded.status == 503 and health.status_code == 503, "the bot's process is not there"
    assert forged.status == 401 and huge.status == 413
    receiver.stop()
    assert receiver.process.returncode == 0


def test_a_tool_command_the_receiver_acknowledged_fails_its_take_in_when_it_cannot_be_stored(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its user was told it is being worked on: the arrival stays in the log to be tried again,
    rather than the bot telling a user nobody is listening to that storage is down."""
    command = slash_command("/tool", "what is 2+2?", channel_id=channel_id, response_url=slack.response_url("later"))
    admitted = Edge.screen_payload(command.payload)
    assert isinstance(admitted, Admitted)
    arrival = Arrival("cmd:later", admitted.payload)

    def storage_down(item: InboxItem) -> bool:
        raise StorageError("storage restarting")

    monkeypatch.setattr(running_bot.bot.inbox, "receive", storage_down)
    assert take_in(running_bot.bot.app, arrival) is False
    monkeypatch.undo()
    assert take_in(running_bot.bot.app, arrival) is True
    slack.wait_for_responses(1, name="later", timeout=30)


def test_after_an_event_is_given_up_its_channel_keeps_its_order(make_inbox: Callable[..., Inbox]) -> None:
    """An event that failed for good (ten tries, ten minutes) is dropped with an error line; its channel's
    later events, on this page or the next, wait for the next pass and come in order."""
    inbox = make_inbox()
    log = ArrivalLog(inbox.writes, inbox.namespace, create=True)
    owner = inbox.worker.owner
    log.store(owner, [event("CA", 1), event("CA", 2), event("CA", 3)])
    with inbox.writes.connect() as connection:  # the first one has failed nine times over an hour
        hopeless = log.table.c.request_id == "EvCA1"
        stale = datetime.now(UTC) - timedelta(hours=1)
        connection.execute(log.table.update().where(hopeless).values(tries=9, received_at=stale))
    taken, take_in = taking_in(lambda arrival: arrival.request_id == "EvCA1")
    reader = ArrivalReader(log, owner, take_in, lambda: {owner}, retry_after=0.0, batch=2)
    reader.read_all()
    assert taken == [], "CA2 and CA3 wait for the next pass, rather than CA3 going first"
    reader.read_all()
    assert taken == ["EvCA2", "EvCA3"]


class _StalledWriter(LogWriter):
    """A database that takes the statement and, once `release` is set, fails it (a cut connection)."""

    def __init__(self) -> None:
        super().__init__("postgresql://nobody@127.0.0.1:1/nothing", "test_stalled", "stalled")
        self.release = asyncio.Event()
        self.statements = 0

    async def store(self, arrivals: Sequence[Arrival]) -> None:
        self.statements += 1
        await self.release.wait()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    async def close(self) -> None:
        return None


def test_a_tool_user_told_storage_is_slow_is_told_again_when_the_command_was_lost_after_all(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `/tool` acked with "storage is slow, you'll hear from me" whose statement then fails is never
    answered: its user gets the storage-down words at its `response_url`, not silence."""
    monkeypatch.setattr(receiver_module, "STORE_TIMEOUT", 0.05)  # the ack comes while the statement runs
    command = slash_command("/tool", "what is 2+2?", response_url=slack.response_url("slow"))

    async def acknowledged_then_lost() -> str:
        writer = _StalledWriter()
        receiver = Receiver(Edge(SIGNING_SECRET), writer, "http://127.0.0.1:1", poke=lambda: None)
        # leaving the client stops the receiver as SIGTERM does: it finishes what it began, telling too
        async with TestClient(TestServer(receiver.application())) as client:
            answer = await client.post("/slack/events", data=command.body, headers=command.headers)
            assert writer.statements == 1, "the command was in a statement when its ack went"
            writer.release.set()
            return str((await answer.json())["text"])

    acked = asyncio.run(acknowledged_then_lost())
    gc.collect()  # a lost statement nobody looked at is logged now, not while pytest parses a failure's source
    assert acked == STORAGE_SLOW
    told = [post.payload for post in slack.responses("slow")]
    assert told == [{"response_type": "ephemeral", "text": STORAGE_DOWN}]


def test_a_statement_the_database_never_answers_fails_in_bounded_time_and_the_next_one_reconnects(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection cut without a word (its server frozen here) can't enforce its own statement timeout:
    the receiver's store gives up on its side, so that the writes behind it are not stuck for ever."""
    monkeypatch.setattr(receiver_module, "STATEMENT_TIMEOUT_MS", 500)
    engine = single_statement_engine(sa.make_url(postgres.url), pool_size=1)
    ArrivalLog(engine, "test_bound", create=True)
    engine.dispose()
    writer = LogWriter(postgres.url.replace("postgresql+psycopg://", "postgresql://"), "test_bound", "bound")

    async def frozen_then_back() -> None:
        await writer.store([Arrival("EvFirst", {"event": {"channel": "CB"}})])
        with postgres.admin_connection("postgres") as admin:
            backend = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO \"test_bound_arrivals\"%'"
            ).fetchone()
        assert backend is not None
        os.kill(backend[0], signal.SIGSTOP)
        try:
            with pytest.raises(psycopg.OperationalError, match="did not answer"):
                await writer.store([Arrival("EvFrozen", {"event": {"channel": "CB"}})])
        finally:
            os.kill(backend[0], signal.SIGCONT)
        await writer.store([Arrival("EvAfter", {"event": {"channel": "CB"}})])  # on a new connection
        await writer.close()

    asyncio.run(asyncio.wait_for(frozen_then_back(), 30))  # unbounded, the frozen statement would fail the test here
