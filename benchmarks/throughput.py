"""Throughput, latency and acknowledgement time with 1, 10 and 50 channels talking at once.

Each channel is one thread of the load generator sending `--messages` requests; every `--tool-every`-th
is a `/tool` slash command (answered through its `response_url`), the others are mentions (answered
with `chat.postMessage`). Channels run concurrently. Within a channel the requests are sequential by
default: a user waits for the answer before sending the next message, so end-to-end latency is one
request's latency including the wait for a free worker, and never the backlog of its own channel. With
`--pipelined` a channel sends all its requests at once (each POST waits only for its acknowledgement),
which queues them in the bot's per-channel FIFO and keeps every worker busy; its latencies then include
that backlog.

Throughput = answers / (last answer's arrival - first request's start). The model takes `--delay` per
call and each channel's user waits for an answer before the next message, so no bot can answer more than
channels / delay per second ("ideal", the physical limit); the percentage of it reached is printed.
The same phases are then run against the floor, a no-storage Bolt bot (`baseline_bot`, mentions only),
in the same run (`--no-baseline` skips it). Ack = the HTTP response time of each event POST and each
`/tool` POST (Slack retries after 3 s), timed where it is sent: in a process that does nothing else
(`benchmarks.delivery`), as Slack's servers share no GIL with the fake Slack and model. Latency of a
mention = request sent until its `chat.postMessage` arrives at the fake Slack server; of a `/tool` =
until the load generator sees its `response_url` post.

Before each measured phase, each new channel gets one mention and its answer (not measured): that
creates the channel's agent tables, which is timed and printed as "warm-up".

pixelbot runs as a separate process (`python -m bot serve`) so that it does not share a GIL with the
load generator and the fake servers; the machine's cores are still shared by all of them, so each phase
also prints the cores used by the bot, its embedded Postgres and this process. A request the bot refuses
(e.g. Bolt's 404 when a listener has not acknowledged within 3 s) is counted and reported, and its answer
still awaited for a while.

    python -m benchmarks.throughput [--channels 1 10 50] [--messages 10] [--tool-every 5] [--pipelined]
                                    [--pause 0] [--workers 8] [--delay 0.3]
                                    [--database embedded|external] [--processes 1]
                                    [--routing channel|message]

`--database external --processes N` runs N bot processes on one PostgreSQL server of their own, each
channel talking to one of them (`benchmarks.common.add_processes_options`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.common import (
    DEFAULT_MODEL_DELAY,
    AnswerBoard,
    CpuMeter,
    FakeServices,
    ServerProcess,
    add_processes_options,
    add_settings_option,
    bot_processes,
    check_processes_options,
    database,
    fake_services,
    percentile,
    print_provenance,
    route,
    rss_mib,
    work_directory,
)
from benchmarks.delivery import Delivery
from tests.slack_requests import SlackRequest, mention, slash_command

ACK_TARGET = 0.100  # seconds, p99 at 50 channels
ANSWER_TIMEOUT = 120.0  # seconds to wait for the answer to a request that was acknowledged
FAILED_ANSWER_TIMEOUT = 30.0  # ... and to one that was refused (Bolt's 404 after its 3 s ack timeout, say)
THROUGHPUT_TARGET = 0.85  # of ideal (issue 9: 40 channels × 2 with a 3 s model)
_phase_numbers = itertools.count(1)


@dataclass(frozen=True)
class Outcome:
    """One request: kind, when it was sent, its ack time and HTTP status, when its answer arrived (or None)."""

    kind: str
    sent_at: float
    ack: float
    status: int
    arrived: float | None

    @property
    def latency(self) -> float:
        assert self.arrived is not None
        return self.arrived - self.sent_at


@dataclass(frozen=True)
class Pending:
    kind: str
    key: str  # the mention's ts, or the channel's response_url name
    count: int  # for /tool: how many responses this channel has had once this one is answered
    sent_at: float
    ack: float
    status: int


@dataclass
class Load:
    """What each channel sends, and the bot and servers it talks to."""

    services: FakeServices
    board: AnswerBoard
    delivery: Delivery  # Slack's side: sends each request and times its ack, in a process of its own
    bots: list[ServerProcess]  # each request goes to one of them (`route`)
    messages: int
    tool_every: int
    pipelined: bool
    pause: float = 0.0  # think time after each answer (sequential mode)
    pgdata: Path | None = None  # the data directory of their PostgreSQL, if not the embedded one
    routing: str = "channel"


@dataclass
class Conversation:
    """One channel's user: sends its requests and waits for the answers."""

    load: Load
    channel: str
    number: int = 0  # the channel's, for `route`
    tools_sent: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def talk(self) -> list[Outcome]:
        pending: list[Pending] = []
        for index in range(1, self.load.messages + 1):
            sent = self._send(index)
            if self.load.pipelined:
                pending.append(sent)
            else:
                self.outcomes.append(self._await(sent))
                time.sleep(self.load.pause)
        self.outcomes += [self._await(sent) for sent in pending]
        return self.outcomes

    def _is_tool(self, index: int) -> bool:
        return self.load.tool_every > 0 and index % self.load.tool_every == 0

    def _send(self, index: int) -> Pending:
        slack = self.load.services.slack
        if self._is_tool(index):
            self.tools_sent += 1
            request = slash_command(
                "/tool", f"question {index}", channel_id=self.channel, response_url=slack.response_url(self.channel)
            )
            return self._post(request, "tool", self.channel, index)
        request = mention(f"question {index}", channel=self.channel)
        return self._post(request, "mention", request.payload["event"]["ts"], index)

    def _post(self, request: SlackRequest, kind: str, key: str, index: int) -> Pending:
        """Send a request; a failed one (Slack would retry an event, or show an error for a command) is kept."""
        bot = route(self.load.bots, self.load.routing, self.number, index)
        sent_at = time.monotonic()
        response = self.load.delivery.send(bot.events_url, request)
        return Pending(kind, key, self.tools_sent, sent_at, response.elapsed, response.status)

    def _await(self, sent: Pending) -> Outcome:
        """Wait for the answer; a request that failed may still be answered, but gets less time."""
        timeout = ANSWER_TIMEOUT if sent.status == 200 else FAILED_ANSWER_TIMEOUT
        arrived: float | None
        try:
            if sent.kind == "mention":
                arrived = self.load.board.wait(sent.key, timeout)
            else:
                self.load.services.slack.wait_for_responses(sent.count, name=sent.key, timeout=timeout)
                arrived = time.monotonic()
        except (TimeoutError, AssertionError):
            arrived = None
        return Outcome(sent.kind, sent.sent_at, sent.ack, sent.status, arrived)


def new_channels(count: int) -> list[str]:
    phase = next(_phase_numbers)
    return [f"CP{phase}X{index:03d}" for index in range(count)]


def warm_up(load: Load, channels: list[str]) -> tuple[float, float, float]:
    """One mention per new channel, all at once: the slowest first answer (from its own sending), the
    seconds until every answer arrived, and until the bot is idle again (answers are posted before
    they are stored; new channels' tables are created then)."""
    single = Load(load.services, load.board, load.delivery, load.bots, messages=1, tool_every=0, pipelined=False)
    conversations = conversations_of(single, channels)
    started = time.monotonic()
    with ThreadPoolExecutor(len(channels)) as pool:
        results = list(pool.map(Conversation.talk, conversations))
    answered = time.monotonic() - started
    latencies = [outcome.latency for result in results for outcome in result if outcome.arrived is not None]
    with httpx.Client(timeout=5) as client:
        while any(client.get(f"http://127.0.0.1:{bot.port}/healthz").json().get("in_progress") for bot in load.bots):
            time.sleep(0.05)
    return max(latencies, default=float("nan")), answered, time.monotonic() - started


@dataclass(frozen=True)
class Phase:
    channels: int
    outcomes: list[Outcome]
    cores: dict[str, float]  # average cores busy per part of the system during the phase
    rss: float


def run_phase(load: Load, count: int, home: Path) -> Phase:
    channels = new_channels(count)
    slowest, answered, idle = warm_up(load, channels)
    print(
        f"  {count} channel(s): warm-up: first answer in {count} new channels at once: slowest {slowest:.2f} s "
        f"after its mention, all answered {answered:.2f} s after the first was sent; tables stored {idle:.1f} s"
    )
    conversations = conversations_of(load, channels)
    meter = CpuMeter([bot.pid for bot in load.bots], home, load.pgdata, [load.delivery.pid])
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(Conversation.talk, conversations))
    outcomes = [outcome for result in results for outcome in result]
    return Phase(count, outcomes, meter.cores_used(), sum(rss_mib(bot.pid) for bot in load.bots))


def conversations_of(load: Load, channels: list[str]) -> list[Conversation]:
    """One user per channel."""
    return [Conversation(load, channel, number) for number, channel in enumerate(channels)]


# -- reporting ---------------------------------------------------------------------------------------
def p50_p99(values: list[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7}"
    return f"{statistics.median(values) * 1000:7.0f} {percentile(values, 0.99) * 1000:7.0f}"


HEADER = (
    f"{'channels':>8} {'answers':>7} {'seconds':>7} {'ans/s':>6} {'ideal':>6} {'%ideal':>6} | "
    f"{'e2e p50':>7} {'p99':>7} | {'ack p50':>7} {'p99':>7} | {'/tool p50':>9} {'p99':>7} | "
    f"{'cores: bot':>10} {'pg':>4} {'load':>4} | {'RSS MiB':>7}"
)


def report_line(phase: Phase, ideal: float) -> tuple[float, float]:
    """Print one phase's row; returns (fraction of ideal throughput, ack p99 of all requests)."""
    outcomes = phase.outcomes
    answered = [o for o in outcomes if o.arrived is not None]
    arrivals = [o.arrived for o in outcomes if o.arrived is not None]
    elapsed = max(arrivals) - min(o.sent_at for o in outcomes)
    rate = len(answered) / elapsed
    event_acks = [o.ack for o in outcomes if o.kind == "mention"]
    tool_acks = [o.ack for o in outcomes if o.kind == "tool"]
    cores = phase.cores
    print(
        f"{phase.channels:>8} {len(answered):>7} {elapsed:>7.1f} {rate:>6.1f} {ideal:>6.1f} {rate / ideal:>6.0%} | "
        f"{p50_p99([o.latency for o in answered])} | {p50_p99(event_acks)} | {p50_p99(tool_acks):>17} | "
        f"{cores['bot']:>10.2f} {cores['postgres']:>4.2f} {cores['load+fakes']:>4.2f} | {phase.rss:>7.0f}"
    )
    return rate / ideal, percentile([o.ack for o in outcomes], 0.99)


def print_failures(phases: list[Phase]) -> None:
    """Requests the bot refused (non-200) and requests never answered, per phase."""
    for phase in phases:
        refused = Counter(f"{o.kind} HTTP {o.status}" for o in phase.outcomes if o.status != 200)
        unanswered = sum(o.arrived is None for o in phase.outcomes)
        if refused or unanswered:
            listed = ", ".join(f"{count} {what}" for what, count in refused.items()) or "none"
            print(f"  {phase.channels} channel(s): refused requests: {listed}; never answered: {unanswered}")
    print("  (Bolt answers 404 'unhandled request' when a listener has not acknowledged within 3 s)")


def print_targets(results: dict[int, tuple[float, float]]) -> None:
    for channels, (fraction, ack_p99) in results.items():
        verdict_rate = "met" if fraction >= THROUGHPUT_TARGET else "missed"
        verdict_ack = "met" if ack_p99 < ACK_TARGET else "missed"
        print(
            f"  {channels} channel(s): throughput {fraction:.0%} of ideal (target >= {THROUGHPUT_TARGET:.0%}: "
            f"{verdict_rate}); ack p99 {ack_p99 * 1000:.0f} ms (target < {ACK_TARGET * 1000:.0f} ms: {verdict_ack})"
        )


def measure(
    args: argparse.Namespace,
    services: FakeServices,
    bots: list[ServerProcess],
    home: Path,
    tools: int,
    pgdata: Path | None = None,
) -> list[Phase]:
    board = AnswerBoard(services.slack)
    with Delivery() as delivery:
        load = Load(
            services, board, delivery, bots, args.messages, tools, args.pipelined, args.pause, pgdata, args.routing
        )
        return [run_phase(load, count, home) for count in args.channels]


def run(args: argparse.Namespace, work: Path) -> None:
    home = work / "home"
    with fake_services(args.delay) as services, database(args.database, home) as (storage, pgdata):
        env = services.bot_environment(home, PIXELBOT_WORKERS=str(args.workers), **storage | dict(args.env))
        print(f"pixelbot ({args.processes} process(es), {args.database} database, routed by {args.routing}):")
        with bot_processes(env, work, args.processes) as bots:
            phases = measure(args, services, bots, home, args.tool_every, pgdata)
        baseline: list[Phase] = []
        if args.baseline:
            print("baseline (no-storage Bolt bot, mentions only):")
            with ServerProcess(env, work / "baseline.log", args=("benchmarks.baseline_bot",)) as floor:
                baseline = measure(args, services, [floor], home, 0)
        results = {}
        for name, measured in (("pixelbot", phases), ("baseline", baseline)):
            if not measured:
                continue
            print(f"\n{name}\n{HEADER}")
            for phase in measured:
                ideal = phase.channels / args.delay  # channel-bound: each user waits for their answer
                fraction_and_ack = report_line(phase, ideal)
                if name == "pixelbot":
                    results[phase.channels] = fraction_and_ack
        print(
            "(ideal = channels / model delay: the physical limit when each channel's user waits for the answer; "
            "times in ms; e2e = mentions and /tool; ack = event POSTs; /tool = slash command POSTs; "
            f"cores = average CPU cores busy out of {os.cpu_count()}: bot process, its Postgres, load generator "
            "with the fake Slack and model)"
        )
        print_targets(results)
        print_failures(phases)
        errors = services.slack.spec_errors + services.model.spec_errors
        print(f"spec errors in the bot's calls to Slack and OpenAI: {len(errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 10, 50], help="channel counts, one phase each")
    parser.add_argument("--messages", type=int, default=10, help="requests per channel and phase")
    parser.add_argument("--tool-every", type=int, default=5, help="every n-th request is /tool (0: none)")
    parser.add_argument("--pipelined", action="store_true", help="send a channel's requests without waiting")
    parser.add_argument("--pause", type=float, default=0.0, help="think time after each answer (s, sequential)")
    parser.add_argument("--workers", type=int, default=256, help="PIXELBOT_WORKERS of the bot")
    add_settings_option(parser, "PIXELBOT_RECALL=false")
    add_processes_options(parser)
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the no-storage bot")
    parser.add_argument("--delay", type=float, default=DEFAULT_MODEL_DELAY, help="scripted model delay (s)")
    args = parser.parse_args()
    check_processes_options(parser, args)
    mode = "pipelined" if args.pipelined else "sequential (each waits for its answer)"
    print(
        f"throughput: {args.messages} requests per channel (every {args.tool_every}th /tool), {mode} within a "
        f"channel, channels concurrent; model delay {args.delay * 1000:.0f} ms; {args.workers} workers"
    )
    run(args, work_directory())
    print_provenance()


if __name__ == "__main__":
    main()
