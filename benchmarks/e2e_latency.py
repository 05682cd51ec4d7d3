"""End-to-end latency of a mention: pixelbot against a minimal Bolt + OpenAI bot with no storage.

Latency = from posting the signed `app_mention` event to the bot's `/slack/events` until the answer's
`chat.postMessage` arrives at the fake Slack server (its arrival time is taken by the server). One request
is in flight at a time; the two bots' requests alternate (ABBA order, so neither always goes first), so
that drift of the machine hits both alike, and each pixelbot request is paired with its neighbouring
baseline request for the per-request ratio and difference.

Both bots run as separate processes (`python -m bot serve`, exactly as deployed, and
`python -m benchmarks.baseline_bot`), on the same fake Slack and scripted model served from this process.
In-process serving would put the bot's threads (workers, inbox batchers, caretaker, Pixeltable) under the
same GIL as the load generator, the fake servers and the other bot, and charge either bot for the other's
work; as processes each gets its own interpreter, as in production.

With `--memory-rows`, each size gets its own channel whose agent memory is filled beforehand (bulk
inserts of top-level messages, the conversation the mentions continue), to see whether pixelbot's
overhead grows with the memory.

After each answer the driver pauses `--gap` (default 100 ms) before the next request, like a user reading
the answer. Without it (`--gap 0`) pixelbot's next inbox insert usually collides with the background
write that closes the previous request in the same table; Pixeltable then sleeps 100-500 ms before
retrying its lock (see `benchmarks/README.md`), which a benchmark of one request at a time should not
provoke by itself. `benchmarks.throughput` measures that contention under concurrent load.

    python -m benchmarks.e2e_latency [--rounds 40] [--delay 0.3] [--gap 0.1] [--memory-rows 0 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    DEFAULT_MODEL_DELAY,
    FakeServices,
    ServerProcess,
    add_settings_option,
    fake_services,
    fill_memory,
    percentile,
    print_provenance,
    wait_for_answer,
    work_directory,
)
from bot.channels import ChannelKey
from tests.slack_requests import TEAM_ID, SlackSender, mention

WARM_UP = 3  # requests per bot and channel before measuring (table creation, client start-up)


@dataclass(frozen=True)
class Sample:
    """One request: the acknowledgement's round trip and the end-to-end latency, in seconds."""

    ack: float
    latency: float


@dataclass
class Target:
    """A bot to send mentions to, in one channel, counting the answers it should have posted."""

    name: str
    process: ServerProcess
    channel: str


class Driver:
    """Sends one mention at a time and waits for its answer on the fake Slack server."""

    def __init__(self, services: FakeServices, sender: SlackSender, gap: float) -> None:
        self.services = services
        self.sender = sender
        self.gap = gap
        self.posted = 0

    def ask(self, target: Target, text: str) -> Sample:
        request = mention(text, channel=target.channel)
        started = time.monotonic()
        response = self.sender.send(target.process.events_url, request)
        if response.status != 200:
            raise RuntimeError(f"{target.name} answered HTTP {response.status}: {response.text}")
        self.posted += 1
        post = wait_for_answer(self.services.slack, request.payload["event"]["ts"], self.posted)
        time.sleep(self.gap)
        return Sample(response.elapsed, post.received_at - started)

    def interleaved(self, first: Target, second: Target, rounds: int) -> tuple[list[Sample], list[Sample]]:
        """`rounds` requests to each target, alternating ABBA; the samples of each, paired by index."""
        samples: dict[str, list[Sample]] = {first.name: [], second.name: []}
        for index in range(rounds):
            order = (first, second) if index % 2 == 0 else (second, first)
            for target in order:
                samples[target.name].append(self.ask(target, f"question {index}"))
        return samples[first.name], samples[second.name]

    def warm_up(self, *targets: Target) -> None:
        for target in targets:
            for index in range(WARM_UP):
                self.ask(target, f"warm-up {index}")


def channel_for(rows: int) -> str:
    return f"CMEM{rows}"


def fill_channels(home: Path, sizes: list[int]) -> None:
    """Create each size's channel memory in `home` and fill it, before the bot starts."""
    import os

    from agent.runtime import configure_pixeltable
    from agent.store import open_memory

    os.environ["PIXELTABLE_HOME"] = str(home)
    configure_pixeltable()
    for rows in sizes:
        if rows:
            started = time.monotonic()
            fill_memory(open_memory(ChannelKey(TEAM_ID, channel_for(rows)).agent_name), rows)
            elapsed = time.monotonic() - started
            print(f"filled the memory of channel {channel_for(rows)} with {rows:,} rows in {elapsed:.1f} s")


# -- reporting ---------------------------------------------------------------------------------------
def row(label: str, values: list[float], unit: str = "ms") -> str:
    scale, fmt = (1000, "{:9.1f}") if unit == "ms" else (1, "{:9.3f}")
    median, p95 = statistics.median(values) * scale, percentile(values, 0.95) * scale
    return f"  {label:<34}{fmt.format(median)}{fmt.format(p95)}  {unit}"


def report(rows: int, pixelbot: list[Sample], baseline: list[Sample], reference: tuple[int, float] | None) -> float:
    """Print one size's figures; returns pixelbot's median latency."""
    ours, theirs = [s.latency for s in pixelbot], [s.latency for s in baseline]
    print(f"\nmemory rows in the channel: {rows:,}  ({len(ours)} requests per bot)      median      p95")
    print(row("pixelbot end-to-end", ours))
    print(row("baseline end-to-end", theirs))
    print(row("ratio pixelbot/baseline (paired)", [a / b for a, b in zip(ours, theirs, strict=True)], unit="x"))
    print(row("overhead pixelbot-baseline (paired)", [a - b for a, b in zip(ours, theirs, strict=True)]))
    print(row("pixelbot ack (HTTP response)", [s.ack for s in pixelbot]))
    print(row("baseline ack (HTTP response)", [s.ack for s in baseline]))
    median = statistics.median(ours)
    if reference is not None:
        ratio = median / reference[1]
        print(f"  pixelbot median vs {reference[0]:,} rows: {ratio:.2f}x (target: 100,000 rows within 1.2x of empty)")
    return median


def run(args: argparse.Namespace, work: Path) -> None:
    fill_channels(work / "home", args.memory_rows)
    with fake_services(args.delay) as services, SlackSender(timeout=60) as sender:
        env = services.bot_environment(work / "home", **dict(args.env))
        with (
            ServerProcess(env, work / "pixelbot.log") as pixelbot,
            ServerProcess(env, work / "baseline.log", ["benchmarks.baseline_bot"]) as baseline,
        ):
            driver = Driver(services, sender, args.gap)
            reference: tuple[int, float] | None = None
            for rows in args.memory_rows:
                ours = Target("pixelbot", pixelbot, channel_for(rows))
                theirs = Target("baseline", baseline, channel_for(rows))
                driver.warm_up(ours, theirs)
                median = report(rows, *driver.interleaved(ours, theirs, args.rounds), reference)
                reference = reference or (rows, median)
        errors = services.slack.spec_errors + services.model.spec_errors
        print(f"\nspec errors in the bots' calls to Slack and OpenAI: {len(errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="measured requests per bot and memory size")
    parser.add_argument("--delay", type=float, default=DEFAULT_MODEL_DELAY, help="scripted model delay (s)")
    parser.add_argument("--gap", type=float, default=0.1, help="pause after each answer before the next request (s)")
    add_settings_option(parser, "PIXELBOT_RECALL=false")
    parser.add_argument("--memory-rows", type=int, nargs="+", default=[0], help="memory sizes, first is the reference")
    args = parser.parse_args()
    print(
        f"end-to-end latency of a mention, one request in flight, model delay {args.delay * 1000:.0f} ms, "
        f"{args.gap * 1000:.0f} ms pause after each answer; pixelbot and baseline bot as separate processes"
    )
    run(args, work_directory())
    print_provenance()


if __name__ == "__main__":
    main()
