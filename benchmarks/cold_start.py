"""Cold start of `python -m bot serve` with 0, 100 and 1,000 channel agents already on disk.

For each size, agents are added to one prepared Pixeltable home (incrementally: the home is reused and
grows), then the bot is started as a subprocess and measured:
- start: from spawning the process until `GET /healthz` answers 200 (polled every 20 ms);
- RSS (VmRSS of the bot's Python process; the embedded Postgres runs in processes of its own) once ready,
  and after the first answer;
- the first answer after the start (a mention in an existing channel), the second (same channel), and the
  first in another existing channel (opening a second agent), with a 200 ms pause after each answer
  (see `benchmarks.e2e_latency` on why); the first mention is sent as soon as the bot is ready, or
  `--settle` seconds later (to tell start-up work still running in the background from the first
  answer's own costs).

Each size is started twice: first with the embedded Postgres stopped, so the bot starts it, as after a
reboot; then again with Postgres left running by that start, as after a restart of the bot alone
(Pixeltable never stops its embedded Postgres when a process exits). Agents are created by a child
process (this module with `--create-agents`). The first two agents (the channels asked after the start)
are always complete agents, made as the bot makes them (`bot.app.open_channel_agent`). The others are,
with `--agents`:
- `memory` (default): the agent's directory and its memory table (no indexes), 40-60 ms each;
- `tables`: the same as `memory` since an agent has one table (kept for the older homes' scripts);
- `full`: complete agents, as the bot makes them, about 200 ms each and more as the catalog grows.
Creating tables gets slower as the catalog grows, so 1,000 agents take about 1, 2.5 or 4 minutes; the
default keeps the run under 3 minutes. Pass `--home DIR` to keep a prepared home and reuse it later.

    python -m benchmarks.cold_start [--sizes 0 100 1000] [--agents memory|tables|full] [--starts 1]
                                    [--settle 0] [--home DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    DEFAULT_MODEL_DELAY,
    AnswerBoard,
    FakeServices,
    ServerProcess,
    fake_services,
    print_provenance,
    rss_mib,
    stop_postgres,
    work_directory,
)
from bot.channels import ChannelKey
from tests.bot_process import REPO
from tests.slack_requests import TEAM_ID, SlackSender, mention

START_TARGET = 5.0  # seconds, with 1,000 agents
FULL_AGENTS = 2  # the channels asked after each start
PAUSE = 0.2  # after each answer, so the next request does not collide with the closing of the previous one
BARE_TABLES = {"memory": ("memory",), "tables": ("memory",)}  # an agent has one table now


def channel(index: int) -> ChannelKey:
    return ChannelKey(TEAM_ID, f"C{index:06d}")


# -- preparing the home (runs in a child process) ----------------------------------------------------
def create_agents(total: int, kind: str) -> None:
    """Add agents C000000, C000001, ... until the home holds `total`; prints what it took."""
    from agent.runtime import configure_pixeltable

    configure_pixeltable()
    import pixeltable as pxt

    from agent.store import agent_names
    from bot.app import channel_defaults, model_client, open_channel_agent
    from bot.channel_settings import ChannelSettings
    from bot.channels import AGENTS_DIR
    from bot.settings import Settings
    from tools import DEFAULT_TOOLS

    existing = len(agent_names(AGENTS_DIR))
    settings = Settings(slack_bot_token="unused", slack_signing_secret="unused", openai_api_key="unused")
    channels = ChannelSettings(channel_defaults(settings, pxt.tools(*DEFAULT_TOOLS)))
    started = time.monotonic()
    for index in range(existing, total):
        name = channel(index).agent_name
        if kind == "full" or index < FULL_AGENTS:
            open_channel_agent(settings, channels, model_client(settings), None, name).tables  # noqa: B018  (creates them)
        else:
            create_bare_agent(name, BARE_TABLES[kind])
    added = total - existing
    if added > 0:
        elapsed = time.monotonic() - started
        print(f"  added {added:,} agents ({kind}) in {elapsed:.1f} s, {elapsed / added * 1000:.0f} ms each")


def create_bare_agent(name: str, tables: tuple[str, ...]) -> None:
    """An agent's directory and some of its tables, without indexes and computed columns."""
    import pixeltable as pxt

    from agent.store import MEMORY_SCHEMA

    schemas = {"memory": MEMORY_SCHEMA}
    pxt.create_dir(name, parents=True)
    for table in tables:
        pxt.create_table(f"{name}.{table}", schemas[table])


def grow_home(home: Path, total: int, kind: str) -> None:
    command = [sys.executable, "-m", "benchmarks.cold_start", "--create-agents", str(total), "--agents", kind]
    env = {**os.environ, "PIXELTABLE_HOME": str(home), "PIXELTABLE_VERBOSITY": "0", "OPENAI_API_KEY": "sk-unused"}
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    print(done.stdout, end="")
    if done.returncode != 0:
        raise RuntimeError(f"creating agents failed:\n{done.stderr[-3000:]}")


# -- measuring a start -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    agents: int
    postgres: str  # "stopped" (started by the bot, as after a reboot) or "running" (as after a bot restart)
    ready: float
    rss_ready: float
    rss_answered: float
    first: float
    second: float
    other_channel: float


def ask(sender: SlackSender, board: AnswerBoard, bot: ServerProcess, key: ChannelKey) -> float:
    request = mention("what did we decide?", channel=key.channel_id)
    started = time.monotonic()
    response = sender.send(bot.events_url, request)
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.text}")
    latency = board.wait(request.payload["event"]["ts"]) - started
    time.sleep(PAUSE)
    return latency


def measure_start(
    services: FakeServices, board: AnswerBoard, home: Path, log: Path, agents: int, settle: float
) -> Start:
    """A start with the embedded Postgres stopped first (it is running if the home was just prepared)."""
    stop_postgres(home / "pgdata")
    return measure_bot_start(services, board, home, log, agents, settle, "stopped")


def measure_bot_start(
    services: FakeServices, board: AnswerBoard, home: Path, log: Path, agents: int, settle: float, postgres: str
) -> Start:
    bot = ServerProcess(services.bot_environment(home), log)
    with bot, SlackSender(timeout=60) as sender:
        ready, rss_ready = bot.ready_at - bot.spawned_at, rss_mib(bot.pid)
        time.sleep(settle)
        first = ask(sender, board, bot, channel(0))
        rss_answered = rss_mib(bot.pid)
        second = ask(sender, board, bot, channel(0))
        other = ask(sender, board, bot, channel(1))
    return Start(agents, postgres, ready, rss_ready, rss_answered, first, second, other)


def report(starts: list[Start]) -> None:
    print(
        f"\n{'agents':>7} {'postgres':>9} {'start s':>8} {'RSS ready':>10} {'RSS 1st':>8} | "
        f"{'1st answer':>10} {'2nd':>7} {'1st other ch':>12}  (MiB, ms)"
    )
    for s in starts:
        print(
            f"{s.agents:>7,} {s.postgres:>9} {s.ready:>8.2f} {s.rss_ready:>10.0f} {s.rss_answered:>8.0f} | "
            f"{s.first * 1000:>10.0f} {s.second * 1000:>7.0f} {s.other_channel * 1000:>12.0f}"
        )
    largest = [start for start in starts if start.agents == starts[-1].agents]
    slowest = max(largest, key=lambda start: start.ready)
    verdict = "met" if slowest.ready < START_TARGET else "missed"
    print(
        f"slowest start with {slowest.agents:,} agents: {slowest.ready:.2f} s, Postgres {slowest.postgres} "
        f"(target < {START_TARGET:.0f} s: {verdict})"
    )
    penalties = ", ".join(f"{(s.first - s.second) * 1000:.0f} ms (Postgres {s.postgres})" for s in largest)
    print(f"first-answer penalty (1st - 2nd answer) with {slowest.agents:,} agents: {penalties}")


def run(args: argparse.Namespace) -> None:
    work = work_directory()
    home = args.home or work / "home"
    starts = []
    with fake_services(args.delay) as services:
        board = AnswerBoard(services.slack)
        for size in sorted(args.sizes):
            grow_home(home, size, args.agents)
            for _ in range(args.starts):  # Postgres stopped, then left running by that start
                log = work / "pixelbot.log"
                starts.append(measure_start(services, board, home, log, size, args.settle))
                starts.append(measure_bot_start(services, board, home, log, size, args.settle, "running"))
    if args.home:
        stop_postgres(args.home / "pgdata")
    report(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 1_000], help="agents on disk")
    parser.add_argument(
        "--agents", choices=["memory", "tables", "full"], default="memory", help="what agents 3 and up consist of"
    )
    parser.add_argument("--starts", type=int, default=1, help="pairs of starts (Postgres stopped, running) per size")
    parser.add_argument("--home", type=Path, help="prepared Pixeltable home to reuse and grow (default: temporary)")
    parser.add_argument("--settle", type=float, default=0.0, help="wait after ready before the first mention (s)")
    parser.add_argument("--delay", type=float, default=DEFAULT_MODEL_DELAY, help="scripted model delay (s)")
    parser.add_argument("--create-agents", type=int, help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args()
    if args.create_agents is not None:
        create_agents(args.create_agents, args.agents)
        return
    print(
        f"cold start of `python -m bot serve` with agents on disk ({args.agents}); model delay {args.delay} s; "
        f"first mention {args.settle} s after ready"
    )
    run(args)
    print_provenance()


if __name__ == "__main__":
    main()
