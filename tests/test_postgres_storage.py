"""Pixeltable on an external PostgreSQL server: the storage that several pixelbot processes share.

Each client is a tests/pg_worker.py process, since Pixeltable chooses its database once per process.
What these tests pin down about a server restart is what the bot has to handle:
- after the restart, the next operation succeeds at once (the pool pings and replaces dead connections);
- while the server is down, an operation fails at once with `sqlalchemy.exc.OperationalError` (not a
  `pixeltable.exceptions.Error`), and the process works again as soon as the server is back.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest

from tests.pg_worker import ANSWER_MARK
from tests.postgres import ROLE, PostgresServer, unavailable_reason

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("pg_worker.py")
ANSWER_TIMEOUT = 60.0
ROWS_EACH = 200


class Worker:
    """A tests/pg_worker.py process on `url`; `send` a command, `receive` its answer (or `ask`, both)."""

    def __init__(self, url: str, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PIXELTABLE_DB_CONNECT_STR": url,
            "PIXELTABLE_HOME": str(home),
            "PIXELTABLE_VERBOSITY": "0",
        }
        self.log_path = home / "worker.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.answers: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        """Pass on answer lines (Pixeltable may print other lines), then None at end of output."""
        for line in stdout:
            if line.startswith(ANSWER_MARK):
                self.answers.put(line.removeprefix(ANSWER_MARK))
        self.answers.put(None)

    def send(self, *command: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        try:
            line = self.answers.get(timeout=ANSWER_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no answer within {ANSWER_TIMEOUT}s:\n{self.log()}") from None
        assert line is not None, f"worker exited with {self.process.poll()}:\n{self.log()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, *command: object) -> dict[str, Any]:
        self.send(*command)
        return self.receive()

    def ok(self, *command: object) -> dict[str, Any]:
        """`ask`, failing the test with the worker's error if the command failed."""
        answer = self.ask(*command)
        assert answer["ok"], f"{command} failed: {answer['error']}"
        return answer

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        """End of input ends the worker; kill it if it does not end."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, for tests that stop it (about half a second to create)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """The test's workers (see `spawn`), closed at its end."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()


def spawn(workers: list[Worker], url: str, home: Path) -> Worker:
    worker = Worker(url, home)
    workers.append(worker)
    return worker


def server_state(server: PostgresServer) -> tuple[datetime, int]:
    """When the server process started, and how many connections the pixelbot role has open (Pixeltable's pool)."""
    with server.admin_connection() as connection:
        row = connection.execute(
            "SELECT pg_postmaster_start_time(), count(*) FILTER (WHERE usename = %s) FROM pg_stat_activity", (ROLE,)
        ).fetchone()
    assert row is not None
    started, connections = row
    assert isinstance(started, datetime)
    assert isinstance(connections, int)
    return started, connections


def test_a_table_round_trips_through_the_external_server(
    postgres: PostgresServer, workers: list[Worker], tmp_path: Path
) -> None:
    worker = spawn(workers, postgres.url, tmp_path / "home")
    worker.ok("create", "round_trip")
    worker.ok("insert", "round_trip", 1, 3)

    assert worker.ok("texts", "round_trip")["texts"] == {"1": "row 1", "2": "row 2", "3": "row 3"}
    with postgres.admin_connection(postgres.database) as connection:  # stored there, not in an embedded server
        stored = connection.execute("SELECT count(*) FROM pg_tables WHERE tableowner = %s", (ROLE,)).fetchone()
    assert stored is not None and stored[0] > 0
    assert not (tmp_path / "home" / "pgdata").exists()


def test_two_processes_insert_into_one_table_at_the_same_time(
    postgres: PostgresServer, workers: list[Worker], tmp_path: Path
) -> None:
    first = spawn(workers, postgres.url, tmp_path / "first")
    second = spawn(workers, postgres.url, tmp_path / "second")
    first.ok("create", "shared")
    second.ok("keys", "shared")  # both processes initialised, so that their inserts overlap

    first.send("insert", "shared", 0, ROWS_EACH)
    second.send("insert", "shared", ROWS_EACH, ROWS_EACH)
    spans = [(answer["started"], answer["finished"]) for answer in (first.receive(), second.receive())]

    assert max(start for start, _ in spans) < min(end for _, end in spans), f"inserts did not overlap: {spans}"
    for worker in (first, second):
        assert sorted(worker.ok("keys", "shared")["keys"]) == list(range(2 * ROWS_EACH))


def test_processes_creating_the_same_new_agent_at_once_all_get_one_usable_agent(
    postgres: PostgresServer, workers: list[Worker], tmp_path: Path
) -> None:
    racers = [spawn(workers, postgres.url, tmp_path / f"racer{n}") for n in range(6)]
    for racer in racers:
        racer.ok("create", "warm")  # initialised before the race
    name = f"race_{os.getpid()}_{id(racers)}.agent"

    start_at = time.time() + 1.0  # a moment by which every racer has its command
    for racer in racers:
        racer.send("open_agent", name, start_at)
    answers = [racer.receive() for racer in racers]

    assert all(answer["ok"] for answer in answers), answers
    for racer in racers:  # and afterwards every process still finds it, once
        assert racer.ok("open_agent", name)["dirs"] == [name.replace(".", "/")]


def test_the_first_operation_after_a_server_restart_succeeds(
    private_postgres: PostgresServer, workers: list[Worker], tmp_path: Path
) -> None:
    worker = spawn(workers, private_postgres.url, tmp_path / "home")
    worker.ok("create", "restarted")
    worker.ok("insert", "restarted", 0, 1)
    started_before, pooled = server_state(private_postgres)
    assert pooled > 0, "the worker has no pooled connection for the restart to break"

    private_postgres.restart()

    first_after = worker.ask("insert", "restarted", 1, 1)
    assert server_state(private_postgres)[0] > started_before, "the server process was not restarted"
    assert first_after["ok"], f"the first insert after the restart failed: {first_after['error']}"
    assert sorted(worker.ok("keys", "restarted")["keys"]) == [0, 1]


def test_while_the_server_is_down_operations_fail_and_then_recover(
    private_postgres: PostgresServer, workers: list[Worker], tmp_path: Path
) -> None:
    worker = spawn(workers, private_postgres.url, tmp_path / "home")
    worker.ok("create", "outage")

    private_postgres.stop()
    failed = worker.ask("insert", "outage", 0, 1)
    private_postgres.start()

    assert not failed["ok"]
    assert [error["type"] for error in failed["error"][:2]] == [
        "sqlalchemy.exc.OperationalError",
        "psycopg.OperationalError",
    ]
    assert "Connection refused" in failed["error"][0]["message"]
    worker.ok("insert", "outage", 1, 1)
    assert worker.ok("keys", "outage")["keys"] == [1]
