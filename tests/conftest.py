"""Shared fixtures: the test servers, one Pixeltable home per run, and per-test isolation.

Isolation, as simonw/llm's conftest does it for its user directory: whatever a test changes in the
process is undone after it (environment variables), the scripted servers are
reset in full before it, and every bot a test builds gets its own namespace (`PIXELBOT_NAMESPACE`), so
its inbox never takes over the open requests of an earlier test. The Pixeltable home itself is shared:
Pixeltable picks its home once per process, and its embedded Postgres takes seconds to start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pixeltable as pxt
import pytest
import sqlalchemy as sa

from agent.runtime import configure_pixeltable
from bot.app import PixelBot, create_bot
from bot.channels import ChannelKey
from bot.database import bookkeeping_engine
from bot.inbox import Inbox, Worker
from bot.server import http_server
from bot.settings import Settings
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import TEAM_ID, FakeSlack
from tests.postgres import postgres  # noqa: F401  (a fixture)
from tests.slack_requests import SIGNING_SECRET, AppResponse, SlackRequest, SlackSender

ADMIN_ID = "U0ADMIN"
TEST_ENV = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "PIXELTABLE_VERBOSITY": "0"}
MODEL_TIMEOUT = 2.0
NO_DOTENV = Path("/nonexistent/.env")


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """Undo, on exit, every change to `os.environ`.

    The code under test changes it on purpose (`Settings.export_to_environment`), so the changes cannot
    all go through `monkeypatch.setenv`; a snapshot catches them.
    """
    saved_environment = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved_environment):
            del os.environ[name]
        os.environ.update(saved_environment)


@pytest.fixture(autouse=True)
def isolated_process_state() -> Iterator[None]:
    """Every test leaves the process environment as it found it."""
    with restored_process_state():
        yield


@dataclass
class _CurrentTest:
    """The namespace of the running test's bots; `bot_environment` reads it, the `namespace` fixture sets it."""

    namespace: str = "pixelbot"


_current_test = _CurrentTest()


@pytest.fixture(autouse=True)
def namespace() -> Iterator[str]:
    """A Pixeltable namespace (`PIXELBOT_NAMESPACE`) of this test's own, shared by all bots it builds."""
    _current_test.namespace = f"pixelbot_t{uuid.uuid4().hex[:12]}"
    yield _current_test.namespace
    _current_test.namespace = "pixelbot"


@pytest.fixture(scope="session")
def openai_server() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def pixeltable_home(openai_server: ScriptedOpenAI) -> Iterator[Path]:
    """One Pixeltable home per run (starting Postgres costs seconds); tests isolate by name and namespace.

    Its environment is undone when the run ends; each test starts from it and its changes are undone
    after the test (`isolated_process_state`).
    """
    with (
        tempfile.TemporaryDirectory(prefix="pixelbot-test-") as home,
        restored_process_state(),
        pytest.MonkeyPatch.context() as environment,
    ):
        for name, value in {**TEST_ENV, "PIXELTABLE_HOME": home, "OPENAI_BASE_URL": openai_server.base_url}.items():
            environment.setenv(name, value)
        configure_pixeltable()
        yield Path(home)


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """A Pixeltable home for a bot process, outside pytest's tmp tree.

    The embedded Postgres runs as another user (`pgserver`); pytest makes its own tmp tree private
    to root again whenever a session starts, which would lock that user out mid-run.
    """
    with tempfile.TemporaryDirectory(prefix="pixelbot-home-") as home:
        Path(home).chmod(0o755)
        yield Path(home)


@pytest.fixture
def model(openai_server: ScriptedOpenAI, pixeltable_home: Path) -> Iterator[ScriptedOpenAI]:
    """The scripted model, reset for this test; every request it saw must match OpenAI's spec."""
    openai_server.reset()
    yield openai_server
    assert openai_server.spec_errors == []


@pytest.fixture(scope="session")
def bookkeeping(pixeltable_home: Path) -> Iterator[sa.Engine]:
    """The engine of the bot's bookkeeping tables, on the test run's database."""
    engine = bookkeeping_engine(pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def make_inbox(bookkeeping: sa.Engine) -> Iterator[Callable[..., Inbox]]:
    """Inboxes on a namespace of this test's own, so no other test's requests are seen or taken."""
    namespace = f"test_{uuid.uuid4().hex[:10]}"
    made: list[Inbox] = []

    def make(worker: Worker | None = None) -> Inbox:
        made.append(Inbox(bookkeeping, namespace, worker))
        return made[-1]

    yield make
    for inbox in made:
        inbox.shutdown()


@pytest.fixture
def agent_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def slack_server() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def slack(slack_server: FakeSlack) -> Iterator[FakeSlack]:
    """The Slack Web API, reset for this test; every call the bot made must match Slack's spec."""
    slack_server.reset()
    yield slack_server
    assert slack_server.spec_errors == []


@pytest.fixture
def channel_id() -> str:
    """A channel no other test uses, so its agent starts with an empty memory."""
    return "C" + uuid.uuid4().hex[:10].upper()


def bot_environment(slack: FakeSlack, model: ScriptedOpenAI, **overrides: str) -> dict[str, str]:
    """The environment a bot needs to run against the test servers, in the running test's own namespace.

    Every call within one test gives the same namespace, so a restarted bot or a second process shares
    the first one's inbox and agents, and no other test's.
    """
    return {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "OPENAI_API_KEY": TEST_ENV["OPENAI_API_KEY"],
        "SLACK_API_URL": slack.base_url,
        "OPENAI_BASE_URL": model.base_url,
        "PIXELBOT_ADMINS": ADMIN_ID,
        "PIXELBOT_MODEL_TIMEOUT": str(int(MODEL_TIMEOUT)),
        "PIXELBOT_MODEL_RETRIES": "2",
        "PIXELBOT_NAMESPACE": _current_test.namespace,
        "PIXELBOT_EMBEDDING_DIMENSIONS": "64",  # the scripted server's vectors: small, made on request
        "PIXELBOT_RECALL_AFTER": "0",  # recall from a channel's first message (tests hold few)
        # answers posted whole, which most tests read from chat.postMessage; tests/test_streaming.py streams
        "PIXELBOT_STREAMING": "false",
        **overrides,
    }


def bot_settings(slack: FakeSlack, model: ScriptedOpenAI, **overrides: str) -> Settings:
    """Settings for an in-process bot against the test servers (no `.env` is read)."""
    return Settings.from_env(bot_environment(slack, model, **overrides), dotenv_path=NO_DOTENV)


@dataclass
class RunningBot:
    """The bot served in-process on a real port, and a sender that posts to it as Slack does."""

    bot: PixelBot
    root_url: str
    sender: SlackSender

    @property
    def events_url(self) -> str:
        return f"{self.root_url}/slack/events"

    def send(self, request: SlackRequest) -> AppResponse:
        return self.sender.send(self.events_url, request)

    def memory(self, channel_id: str) -> pxt.Table:
        """The memory table of the channel's agent, once the bot has finished its work (answers are
        posted before they are stored)."""
        assert self.bot.answerer.wait_idle(30), "the bot did not finish its work"
        return self.bot.agents.get(ChannelKey(TEAM_ID, channel_id)).tables.memory

    def memory_rows(self, channel_id: str) -> list[tuple[str, str]]:
        """(role, content) of a channel's memory, oldest first, once the bot has finished its work."""
        memory = self.memory(channel_id)
        return [(row["role"], row["content"]) for row in memory.order_by(memory.timestamp).collect()]


@contextlib.contextmanager
def serve_in_process(settings: Settings) -> Iterator[RunningBot]:
    """Build a bot and serve it on a free port until the block ends; then stop it as `serve` does on SIGTERM."""
    bot = create_bot(settings)
    server = http_server(bot, host="127.0.0.1", port=0)
    thread = threading.Thread(target=_run_until_closed, args=(server,), daemon=True)
    thread.start()
    try:
        with SlackSender() as sender:
            yield RunningBot(bot, f"http://127.0.0.1:{server.effective_port}", sender)
    finally:
        server.close()
        bot.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def running_bot(model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path) -> Iterator[RunningBot]:
    with serve_in_process(bot_settings(slack, model)) as running:
        yield running


@pytest.fixture
def streaming_bot(model: ScriptedOpenAI, slack: FakeSlack, pixeltable_home: Path) -> Iterator[RunningBot]:
    """A bot with pixelbot's default of streaming answers, and a model timeout far beyond its tests'
    slow answers (1.5 s; the usual 2 s timeout leaves too little room on a busy machine)."""
    settings = bot_settings(slack, model, PIXELBOT_STREAMING="true", PIXELBOT_MODEL_TIMEOUT="30")
    with serve_in_process(settings) as running:
        yield running


@contextlib.contextmanager
def stalled_insert(inbox: Inbox, request_id: str, channel_id: str, kind: str) -> Iterator[None]:
    """While the block runs, storing `request_id` waits (an uncommitted row with that key); when it
    ends, the stall ends and the waiting insert goes through: a database that stalled, then recovered."""
    blocker = inbox.engine.connect()
    transaction = blocker.begin()
    blocker.execute(
        inbox.table.insert().values(
            request_id=request_id, kind=kind, team_id="T0001", channel_id=channel_id, user_id="U0001", text="x",
            ts="1.1", thread_ts="", response_url="", received_at=datetime.now(UTC), status="answering", owner="blocker",
        )
    )  # fmt: skip
    try:
        yield
    finally:
        transaction.rollback()
        blocker.close()


def _run_until_closed(server: Any) -> None:
    """waitress has no stop(): closing its sockets from the test thread ends `run()` with EBADF."""
    with contextlib.suppress(OSError):
        server.run()


def table(path: str) -> pxt.Table:
    """The Pixeltable table at `path`, which the test expects to exist."""
    found = pxt.get_table(path)
    assert found is not None, path
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.02)
