"""Where pixelbot's own time per answer goes: py-spy samples of the bot process under load.

Each phase runs a fresh `python -m bot serve` under `py-spy record --idle --threads --format raw` (py-spy
spawns the bot; attaching to a running process with `--pid` fails in this sandbox) against the fake Slack
and scripted model, then stops the bot with SIGTERM so py-spy writes its samples:
- quiet: 1 channel, one mention at a time with a pause after each answer: the cost of one mention alone;
- load:  10 channels at once, sequential within each, every 5th request a `/tool`: adds contention;
- first: a restart, then one mention in the quiet phase's channel: the first answer after a start.

Samples include idle threads (`--idle`), so they measure wall time; with `--gil`, only the thread
holding the GIL is sampled, so they measure where the process's one core of Python goes. For each of the bot's thread
groups (event loop, storage thread, catalog thread, I/O threads, inbox writers, request threads) the
busy samples (not parked waiting for work or I/O) are classified by what the thread was doing
(Postgres, Slack calls, the OpenAI client, Python) in ms per answer, and the storage thread's call tree
is printed. The raw samples are kept for flame graphs
(e.g. `flamegraph.pl` or speedscope).

    python -m benchmarks.profile_bot [--phases quiet load first] [--delay 0.3] [--rate 100] [--output DIR]
                                     [--database embedded|external]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    DEFAULT_MODEL_DELAY,
    AnswerBoard,
    FakeServices,
    ServerProcess,
    database,
    fake_services,
    print_provenance,
    work_directory,
)
from benchmarks.delivery import Delivery
from benchmarks.pyspy_report import report
from benchmarks.throughput import Conversation, Load

QUIET_CHANNEL = "CPROFILE0"


# -- phases ------------------------------------------------------------------------------------------
def py_spy(output: Path, rate: int, gil: bool = False) -> list[str]:
    binary = Path(sys.executable).parent / "py-spy"
    if not binary.exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return [
        str(binary),
        "record",
        "--gil" if gil else "--idle",
        "--threads",
        "--nonblocking",
        "-r",
        str(rate),
        "-f",
        "raw",
        "-o",
        str(output),
        "--",
    ]


def stop_profiled(bot: ServerProcess) -> None:
    """SIGTERM to the bot (py-spy's child): it shuts down, and py-spy writes its samples and exits."""
    for child in Path(f"/proc/{bot.pid}/task/{bot.pid}/children").read_text().split():
        os.kill(int(child), signal.SIGTERM)
    assert bot.process is not None
    bot.process.wait(120)


@dataclass
class Profiler:
    services: FakeServices
    board: AnswerBoard
    delivery: Delivery
    home: Path
    output: Path
    rate: int
    gil: bool = False  # only the thread holding the GIL: what the one core of Python goes to
    settings: dict[str, str] = field(default_factory=dict)  # the bot's environment beyond the fakes'

    def run(self, phase: str, drive: Callable[[ServerProcess], int]) -> tuple[Path, int]:
        """Start a profiled bot, `drive` it (returns the number of answers), stop it; the samples' path."""
        samples = self.output / f"{phase}.txt"
        prefix = py_spy(samples, self.rate, self.gil)
        env = self.services.bot_environment(self.home, **self.settings)
        bot = ServerProcess(env, self.output / f"{phase}.log", prefix=prefix)
        bot.start()
        try:
            answers = drive(bot)
        finally:
            stop_profiled(bot)
        return samples, answers

    def load(self, bot: ServerProcess, messages: int, tool_every: int, pause: float) -> Load:
        return Load(self.services, self.board, self.delivery, [bot], messages, tool_every, pipelined=False, pause=pause)


def quiet(profiler: Profiler, messages: int) -> Callable[[ServerProcess], int]:
    def drive(bot: ServerProcess) -> int:
        return len(Conversation(profiler.load(bot, messages, 0, 0.1), QUIET_CHANNEL).talk())

    return drive


def loaded(profiler: Profiler, channels: int, messages: int) -> Callable[[ServerProcess], int]:
    def drive(bot: ServerProcess) -> int:
        names = [f"CPROFILEL{index:03d}" for index in range(channels)]
        with ThreadPoolExecutor(channels) as pool:  # a first mention in each channel, then the load
            warm_ups = list(pool.map(lambda name: Conversation(profiler.load(bot, 1, 0, 0), name).talk(), names))
            conversations = [Conversation(profiler.load(bot, messages, 5, 0), name) for name in names]
            return len(warm_ups) + sum(len(result) for result in pool.map(Conversation.talk, conversations))

    return drive


def first(profiler: Profiler) -> Callable[[ServerProcess], int]:
    def drive(bot: ServerProcess) -> int:
        return len(Conversation(profiler.load(bot, 1, 0, 0), QUIET_CHANNEL).talk())

    return drive


DESCRIPTIONS = {
    "quiet": "1 channel, one mention at a time, 100 ms pause after each answer",
    "load": "{channels} channels at once, sequential within each, every 5th request /tool",
    "first": "first mention after a restart, in the quiet phase's channel (an existing agent if it ran)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", nargs="+", choices=["quiet", "load", "first"], default=["quiet", "load", "first"])
    parser.add_argument("--messages", type=int, default=20, help="mentions in the quiet phase")
    parser.add_argument("--channels", type=int, default=10, help="channels in the load phase (10 requests each)")
    parser.add_argument("--delay", type=float, default=DEFAULT_MODEL_DELAY, help="scripted model delay (s)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (CPU, not wall time)"
    )
    parser.add_argument("--threshold", type=float, default=2.0, help="smallest call tree entry shown (ms/answer)")
    parser.add_argument("--output", type=Path, help="where to keep the raw samples (default: a new temp dir)")
    parser.add_argument("--database", choices=("embedded", "external"), default="embedded")
    args = parser.parse_args()
    output = args.output or Path(tempfile.mkdtemp(prefix="pixelbot-profile-"))
    output.mkdir(parents=True, exist_ok=True)
    print(
        f"profile of pixelbot with py-spy at {args.rate} Hz (wall time, idle threads included); "
        f"model delay {args.delay * 1000:.0f} ms"
    )
    home = work_directory() / "home"
    with fake_services(args.delay) as services, database(args.database, home) as (storage, _), Delivery() as slack:
        profiler = Profiler(services, AnswerBoard(services.slack), slack, home, output, args.rate, args.gil, storage)
        drivers = {
            "quiet": quiet(profiler, args.messages),
            "load": loaded(profiler, args.channels, 10),
            "first": first(profiler),
        }
        for phase in args.phases:
            started = time.monotonic()
            samples, answers = profiler.run(phase, drivers[phase])
            description = DESCRIPTIONS[phase].format(channels=args.channels)
            print(f"\n== phase {phase}: {description}; {answers} answers, {time.monotonic() - started:.0f} s")
            report(samples, answers, args.rate, args.threshold, steady=phase != "first")
    print(f"\nraw samples (py-spy raw format, one file per phase): {output}")
    print_provenance()


if __name__ == "__main__":
    main()
