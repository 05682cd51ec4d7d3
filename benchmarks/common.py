"""Helpers shared by the benchmarks: statistics, an isolated Pixeltable home, fake servers, bot processes, printing."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import itertools
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pixeltable as pxt

from tests.bot_process import REPO, BotProcess
from tests.fake_openai import ScriptedOpenAI
from tests.fake_slack import FakeSlack, SlackCall
from tests.postgres import PostgresServer


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


def summary_ms(values: Sequence[float]) -> str:
    """`median … ms, p95 … ms` of durations given in seconds."""
    return f"median {statistics.median(values) * 1000:7.1f} ms   p95 {percentile(values, 0.95) * 1000:7.1f} ms"


def use_temporary_home() -> Path:
    """Point Pixeltable at a fresh home so a benchmark never touches real data."""
    home = Path(tempfile.mkdtemp(prefix="pixelbot-bench-"))
    os.environ["PIXELTABLE_HOME"] = str(home)
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    return home


def add_settings_option(parser: argparse.ArgumentParser, example: str) -> None:
    """`--env NAME=VALUE ...`: settings of the bot under test; `dict(args.env)` gives them."""
    parser.add_argument(
        "--env", nargs="*", default=[], type=_setting, metavar="NAME=VALUE", help=f"settings of the bot, e.g. {example}"
    )


def add_processes_options(parser: argparse.ArgumentParser) -> None:
    """`--database embedded|external`, `--processes N` and `--routing channel|message`: the bot on
    Pixeltable's embedded Postgres, or on a PostgreSQL server of its own (`tests.postgres`: Debian's
    package, fsync off), where N bot processes may share it. Each channel's requests go to one of them
    (`channel`: a load balancer with channel affinity), or each request to the next (`message`: a plain
    one). Check them with `check_processes_options`."""
    parser.add_argument("--database", choices=("embedded", "external"), default="embedded")
    parser.add_argument("--processes", type=int, default=1, help="bot processes (above 1: --database external)")
    parser.add_argument("--routing", choices=("channel", "message"), default="channel", help="with --processes")


def check_processes_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.processes > 1 and args.database == "embedded":
        parser.error("--processes above 1 needs --database external: the embedded database serves one process")


@contextlib.contextmanager
def database(kind: str, home: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """The bot's database: the settings that point a bot at it (none for the embedded one of Pixeltable
    home `home`) and its data directory."""
    if kind == "embedded":
        yield {}, home / "pgdata"
        return
    with PostgresServer() as postgres:
        yield {"PIXELTABLE_DB_CONNECT_STR": postgres.url}, postgres.data


@contextlib.contextmanager
def bot_processes(env: dict[str, str], work: Path, count: int) -> Iterator[list[ServerProcess]]:
    """`count` bot processes with one environment (one database), started one after another."""
    with contextlib.ExitStack() as running:
        yield [running.enter_context(ServerProcess(env, work / f"pixelbot-{n}.log")) for n in range(count)]


def route(bots: Sequence[ServerProcess], routing: str, channel: int, message: int) -> ServerProcess:
    """The process the `message`th request of the `channel`th channel goes to: always the same one for
    the channel (`routing` "channel"), or the next one for each message of the channel ("message")."""
    return bots[(channel if routing == "channel" else channel + message) % len(bots)]


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def work_directory() -> Path:
    """A temporary directory for a run (Pixeltable home, logs), removed when the process exits.

    Pixeltable leaves its embedded Postgres running when a process exits (pgserver without a cleanup
    mode), so the removal first stops every Postgres serving a data directory inside it.
    """
    work = Path(tempfile.mkdtemp(prefix="pixelbot-bench-"))
    atexit.register(_remove_work_directory, work)
    return work


def _remove_work_directory(work: Path) -> None:
    for pid_file in work.rglob("postmaster.pid"):
        stop_postgres(pid_file.parent)
    shutil.rmtree(work, ignore_errors=True)


def stop_postgres(pgdata: Path, timeout: float = 30.0) -> bool:
    """Stop the embedded Postgres serving `pgdata`, if one runs (fast shutdown); whether one was stopped."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # Postgres's fast shutdown: disconnect clients, checkpoint, exit
    except (OSError, ValueError, IndexError):
        return False
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def fill_memory(memory: pxt.Table, rows: int, thread_ts: str = "", batch: int = 5_000) -> None:
    """Add `rows` old messages to a memory table, alternating user and assistant."""
    start = datetime.now(UTC) - timedelta(days=30)
    for offset in range(0, rows, batch):
        memory.insert(
            [
                {
                    "request_id": f"old{index // 2}",
                    "role": "user" if index % 2 == 0 else "assistant",
                    "content": f"old message {index} about nothing in particular",
                    "timestamp": start + timedelta(seconds=index),
                    "user": "U0OLD",
                    "thread_ts": thread_ts,
                    "kind": "chat",
                }
                for index in range(offset, min(rows, offset + batch))
            ]
        )


def machine() -> str:
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, {platform.system()}"


def command_line() -> str:
    return " ".join([Path(sys.executable).name, "-m", "benchmarks." + Path(sys.argv[0]).stem, *sys.argv[1:]])


# -- reporting ---------------------------------------------------------------------------------------
def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def code_version() -> str:
    """The commit measured, and whether the bot's code had uncommitted changes (read-only git calls)."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "agent", "bot", "tools")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{commit}{' + uncommitted changes in agent/, bot/ or tools/' if dirty else ''}"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def print_provenance() -> None:
    """The lines every benchmark ends with: where, when, what, and how to reproduce the figures."""
    print(f"machine: {machine()}")
    print(f"date:    {today()}")
    print(f"code:    {code_version()}")
    print(f"command: {command_line()}")


# -- the servers around a bot ------------------------------------------------------------------------
DEFAULT_MODEL_DELAY = 0.3  # seconds the scripted model takes to answer
SIGNING_SECRET = "test-signing-secret"  # the secret `tests.slack_requests` signs with


@dataclass
class FakeServices:
    """The fake Slack Web API and the scripted OpenAI server, both on 127.0.0.1."""

    slack: FakeSlack
    model: ScriptedOpenAI

    def bot_environment(self, home: Path, **overrides: str) -> dict[str, str]:
        """Environment for `python -m bot serve` (or the baseline bot) against these servers."""
        return {
            "SLACK_BOT_TOKEN": "xoxb-benchmark-token",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "OPENAI_API_KEY": "sk-benchmark",
            "SLACK_API_URL": self.slack.base_url,
            "OPENAI_BASE_URL": self.model.base_url,
            "PIXELTABLE_HOME": str(home),
            "PIXELTABLE_VERBOSITY": "0",
            "PIXELBOT_MODEL_TIMEOUT": "30",
            "PIXELBOT_MODEL_RETRIES": "1",
            "PIXELBOT_EMBEDDING_DIMENSIONS": "256",  # recall's vectors from the scripted server
            # answers posted whole, as the baseline bot posts them, so both are timed at the same point;
            # `--env PIXELBOT_STREAMING=true` times streamed answers at their chat.stopStream
            "PIXELBOT_STREAMING": "false",
            **overrides,
        }


@contextlib.contextmanager
def fake_services(delay: float = DEFAULT_MODEL_DELAY) -> Iterator[FakeServices]:
    """The fake Slack and model. Model requests are checked against OpenAI's spec when a benchmark
    reads `spec_errors` at its end, not while served: checking takes ~4 ms of CPU per request, which
    would be taken from the bot on the machine's few cores (`validate_later`)."""
    with FakeSlack() as slack, ScriptedOpenAI(delay=delay, validate_later=True) as model:
        yield FakeServices(slack, model)


# -- processes ---------------------------------------------------------------------------------------
class ServerProcess(BotProcess):
    """`python -m <module>` on a free port, ready once it answers `GET /healthz` with 200.

    With the default module this is exactly `tests.bot_process.BotProcess` (`python -m bot serve`).
    """

    def __init__(
        self, env: dict[str, str], log_path: Path, args: Sequence[str] = ("bot", "serve"), prefix: Sequence[str] = ()
    ) -> None:
        super().__init__(env, log_path)
        self.args = list(args)
        self.prefix = list(prefix)  # e.g. a profiler that runs the command (`py-spy record ... --`)
        self.spawned_at = self.ready_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120.0) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.spawned_at = time.monotonic()
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", *self.args], env=self.env, cwd=REPO, stdout=log, stderr=log
            )
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float, poll: float = 0.02) -> None:
        """Like `BotProcess._wait_until_healthy`, polling finely and noting when it got ready."""
        deadline = self.spawned_at + timeout
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.args} exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                        self.ready_at = time.monotonic()
                        return
                except httpx.TransportError:
                    pass
                time.sleep(poll)
        raise RuntimeError(f"{self.args} not ready within {timeout} s:\n{self.log()}")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mib(pid: int) -> float:
    """Resident memory of a bot process (VmRSS of /proc/<pid>/status), in MiB, with its receiving
    process's (`PIXELBOT_ACK_PROCESS`) if it has one."""
    return sum(_rss_mib(one) for one in with_receiver(pid))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def with_receiver(pid: int) -> list[int]:
    """A bot process and its receiving process (`bot.receiver`), if it runs one."""
    return [pid, *(child for child, parent, cmdline in _processes() if parent == pid and "bot.receiver" in cmdline)]


# -- waiting for answers -----------------------------------------------------------------------------
def wait_for_answer(slack: FakeSlack, thread_ts: str, count: int, timeout: float = 60.0) -> SlackCall:
    """The `chat.postMessage` answering the message `thread_ts`, once at least `count` posts arrived."""
    deadline = time.monotonic() + timeout
    while True:
        posts = slack.wait_for_calls("chat.postMessage", count, timeout=max(0.0, deadline - time.monotonic()))
        for post in reversed(posts):
            if post.params.get("thread_ts") == thread_ts:
                return post
        count = len(posts) + 1


class AnswerBoard:
    """When each answer arrived: a `chat.postMessage` handler on the fake Slack, keyed by `thread_ts`
    (a streamed answer arrives with its `chat.stopStream`).

    Waiting on `FakeSlack.wait_for_calls` wakes every waiter on every call and copies the call list, which
    costs O(waiters x calls) per call under load; here each waiter wakes only for its own answer.
    """

    def __init__(self, slack: FakeSlack) -> None:
        self._events: dict[str, threading.Event] = {}
        self._arrivals: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._streams: dict[str, str] = {}  # stream ts -> thread_ts
        slack.set_handler("chat.postMessage", self._post_message)
        slack.set_handler("chat.startStream", self._start_stream)
        slack.set_handler(
            "chat.appendStream", lambda params: {"ok": True, "channel": params["channel"], "ts": params["ts"]}
        )
        slack.set_handler("chat.stopStream", self._stop_stream)

    def _start_stream(self, params: Mapping[str, Any]) -> dict[str, Any]:
        ts = f"1700000000.{next(self._ids):06d}"
        with self._lock:
            self._streams[ts] = str(params.get("thread_ts", ""))
        return {"ok": True, "channel": params["channel"], "ts": ts}

    def _stop_stream(self, params: Mapping[str, Any]) -> dict[str, Any]:
        arrived = time.monotonic()
        with self._lock:
            thread_ts = self._streams.pop(str(params.get("ts")), "")
            self._arrivals.setdefault(thread_ts, arrived)
        self._event(thread_ts).set()
        return {"ok": True, "channel": params["channel"], "ts": params.get("ts")}

    def _event(self, thread_ts: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(thread_ts, threading.Event())

    def _post_message(self, params: Mapping[str, Any]) -> dict[str, Any]:
        arrived = time.monotonic()
        thread_ts = str(params.get("thread_ts", ""))
        with self._lock:
            self._arrivals.setdefault(thread_ts, arrived)
        self._event(thread_ts).set()
        ts = f"1700000000.{next(self._ids):06d}"
        message = {"type": "message", "text": params.get("text", ""), "ts": ts, "thread_ts": thread_ts}
        return {"ok": True, "channel": params["channel"], "ts": ts, "message": message}

    def wait(self, thread_ts: str, timeout: float = 120.0) -> float:
        """The arrival time (`time.monotonic()`) of the first answer in thread `thread_ts`."""
        if not self._event(thread_ts).wait(timeout):
            raise TimeoutError(f"no answer in thread {thread_ts} within {timeout} s")
        with self._lock:
            return self._arrivals[thread_ts]


# -- CPU use -----------------------------------------------------------------------------------------
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, with_exited_children: bool = False) -> float:
    """User + system CPU time of a process so far (0 if it is gone), plus that of its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    if with_exited_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: children that exited and were waited for
    return ticks / _CLOCK_TICKS


def _processes() -> Iterator[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process that can be read."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            yield int(entry.name), parent, cmdline


def postgres_cpu_seconds(pgdata: Path) -> float:
    """CPU time of the Postgres server of data directory `pgdata`: server, live and exited backends."""
    processes = list(_processes())
    servers = {pid for pid, _, cmdline in processes if "postgres" in cmdline and str(pgdata) in cmdline}
    backends = [pid for pid, parent, _ in processes if parent in servers]
    return sum(cpu_seconds(pid, with_exited_children=True) for pid in servers) + sum(map(cpu_seconds, backends))


class CpuMeter:
    """CPU used by the bot (all its processes), its Postgres and the load generator (this process, with
    the fake servers, and `generator_pids`: its delivery process). `pgdata`: the server's data directory,
    by default the embedded one of Pixeltable home `home`."""

    def __init__(
        self,
        bot_pids: int | Sequence[int],
        home: Path,
        pgdata: Path | None = None,
        generator_pids: Sequence[int] = (),
    ) -> None:
        pids = [bot_pids] if isinstance(bot_pids, int) else list(bot_pids)
        self.bot_pids = [one for pid in pids for one in with_receiver(pid)]
        self.generator_pids = [os.getpid(), *generator_pids]
        self.pgdata = pgdata or home / "pgdata"
        self._start = self._sample()
        self._started_at = time.monotonic()

    def _sample(self) -> dict[str, float]:
        return {
            "bot": sum(map(cpu_seconds, self.bot_pids)),
            "postgres": postgres_cpu_seconds(self.pgdata),
            "load+fakes": sum(map(cpu_seconds, self.generator_pids)),
        }

    def cores_used(self) -> dict[str, float]:
        """Average cores busy per part since the meter started."""
        elapsed = time.monotonic() - self._started_at
        now = self._sample()
        return {part: (now[part] - self._start[part]) / elapsed for part in now}
