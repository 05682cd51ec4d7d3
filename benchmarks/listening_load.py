"""Listening under load: many listening channels chatting at once, none of it answered.

`python -m benchmarks.listening_load [--channels 50] [--rate 20] [--seconds 30] [--connections 512]
[--database embedded|external] [--processes 1] [--routing channel|message]`

Every channel is switched on (`/pixelbot listen on`, as a user would), then each sends `--rate`
human messages a second for `--seconds`, open loop (`benchmarks.open_loop`: each message leaves at its
scheduled moment, whatever the bot does), as signed `message` events over HTTP to `python -m bot
serve`. Reported: the rate actually offered, acknowledgement times (Slack retries after 3 s), how late
the generator sent, the cores the bot, its Postgres and this process (generator and fake servers)
used meanwhile, how long until every message was stored (the inbox has no open row left), whether
each was stored exactly once (memory rows counted per channel afterwards), and the size of the
embedding requests recall made (batched under load).

`--database external` runs the bot on a PostgreSQL server of its own (`tests.postgres`: Debian's
package, fsync off) instead of Pixeltable's embedded one; there `--processes N` starts N bot processes
on the one database, and each channel's messages go to one of them (as a load balancer with channel
affinity would send them), so the run shows what a second process on the host buys.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import httpx

from benchmarks import open_loop
from benchmarks.common import (
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
    work_directory,
)
from benchmarks.delivery import Delivery
from bot.channels import ChannelKey
from bot.listening import CACHE_SECONDS
from tests.slack_requests import TEAM_ID, SlackSender, message, slash_command

WINDOW = 5.0  # seconds of sending per ack p99 shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second per channel")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=512, help="most requests in flight at once")
    add_processes_options(parser)
    add_settings_option(parser, "PIXELBOT_HTTP_THREADS=32")
    args = parser.parse_args(argv)
    check_processes_options(parser, args)
    work = work_directory()
    home = work / "home"
    with fake_services() as services, database(args.database, home) as (storage, pgdata):
        env = services.bot_environment(home, **storage | dict(args.env))
        with bot_processes(env, work, args.processes) as bots:
            channels = [f"CL{index:07d}" for index in range(args.channels)]
            switch_on(services, bots, channels)
            if args.processes > 1 and args.routing == "message":
                time.sleep(CACHE_SECONDS + 1)  # until every process has seen every switch (its cache's age)
            with Delivery() as slack:
                meter = CpuMeter([bot.pid for bot in bots], home, pgdata, [slack.pid])
                offered = offer(slack, bots, channels, args)
                cores = meter.cores_used()
            stored_after = wait_until_stored(bots, started=offered.last_started)
        counts = memory_counts(home, channels, storage)
    batches = [len(r["input"]) if isinstance(r["input"], list) else 1 for r in services.model.embedding_requests]
    report(args, offered, cores, stored_after, counts, batches)
    return 0


def switch_on(services: FakeServices, bots: list[ServerProcess], channels: list[str]) -> None:
    with SlackSender() as sender:
        for index, channel in enumerate(channels):
            url = services.slack.response_url(f"listen-{channel}")
            command = slash_command("/pixelbot", "listen on", channel_id=channel, response_url=url)
            sender.send(route(bots, "channel", index, 0).events_url, command)
    services.slack.wait_for_responses(len(channels), timeout=60)


def offer(
    slack: Delivery, bots: list[ServerProcess], channels: list[str], args: argparse.Namespace
) -> open_loop.Offered:
    """The messages, round robin over the channels, at `channels × rate` a second: each one's ack."""
    total = int(args.channels * args.rate * args.seconds)
    requests = []
    for n in range(total):
        index = n % len(channels)
        text = f"note {n}: the build is green again"
        bot = route(bots, args.routing, index, n // len(channels))
        requests.append((bot.events_url, message(text, channel=channels[index])))
    return slack.offer(requests, args.channels * args.rate, args.connections)


def wait_until_stored(bots: list[ServerProcess], started: float, timeout: float = 600.0) -> float:
    """Seconds after `started` (the last message sent) until no process had an open request."""
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < timeout:
            healths = [client.get(f"http://127.0.0.1:{bot.port}/healthz").json() for bot in bots]
            if all(_settled(health) for health in healths):
                return time.monotonic() - started
            time.sleep(0.2)
    return float("inf")


def _settled(health: dict[str, object]) -> bool:
    """Nothing open: acknowledged (the receiving process's arrival log), stored, or being handled."""
    waiting = (health.get("arrivals_waiting", 0), health.get("open_requests"), health.get("in_progress"))
    return waiting == (0, 0, 0)


def memory_counts(home: Path, channels: list[str], storage: dict[str, str]) -> dict[str, int]:
    os.environ.update(storage, PIXELTABLE_HOME=str(home))
    import pixeltable as pxt

    from agent.runtime import configure_pixeltable

    configure_pixeltable()
    counts = {}
    for channel in channels:
        table = pxt.get_table(f"{ChannelKey(TEAM_ID, channel).agent_name}.memory", if_not_exists="ignore")
        counts[channel] = table.count() if table is not None else 0
    return counts


def windowed_p99(sent: list[open_loop.Sent], rate: float) -> list[float]:
    """The ack p99 (ms) of the messages scheduled in each `WINDOW` of the run: warm-up and steady state."""
    windows: dict[int, list[float]] = {}
    for index, one in enumerate(sent):
        windows.setdefault(int(index / rate / WINDOW), []).append(one.ack)
    return [percentile(acks, 0.99) * 1000 for _, acks in sorted(windows.items())]


def report(
    args: argparse.Namespace,
    offered: open_loop.Offered,
    cores: dict[str, float],
    stored_after: float,
    counts: dict[str, int],
    batches: list[int],
) -> None:
    sent = offered.sent
    per_channel = len(sent) // args.channels
    exact = sum(1 for count in counts.values() if count == per_channel)
    acks = [one.ack for one in sent]  # a failed or timed-out one is inf, and counts as the slowest
    failed = sum(1 for ack in acks if ack == float("inf"))
    late = [one.late for one in sent]
    target = args.channels * args.rate
    shape = f"{args.channels} channels x {args.rate:g} msg/s x {args.seconds:g} s"
    serving = f"{args.processes} bot process{'es' if args.processes > 1 else ''}, {args.database} database"
    serving += f", routed by {args.routing}" if args.processes > 1 else ""
    print(f"listening load: {shape} = {len(sent):,} messages; {serving}")
    sending = offered.last_started - offered.first_due
    print(f"  offered      {(len(sent) - 1) / sending:8.0f} msg/s (target {target:.0f}); started late "
          f"p50 {percentile(late, 0.5) * 1000:.1f} ms, p99 {percentile(late, 0.99) * 1000:.1f} ms")  # fmt: skip
    print(f"  ack          p50 {percentile(acks, 0.5) * 1000:6.1f} ms   p99 {percentile(acks, 0.99) * 1000:6.1f} ms   "
          f"max {max(acks, default=0.0) * 1000:6.0f} ms   (from each message's scheduled moment)   "
          f"failed or timed out (30 s) {failed}")  # fmt: skip
    windows = " ".join(f"{ms:.0f}" for ms in windowed_p99(sent, target))
    print(f"  ack p99 by {WINDOW:g} s of sending: {windows} ms")
    used = ", ".join(f"{part} {used:.2f}" for part, used in cores.items())
    print(f"  cores used   {used} (first message to last ack: {offered.last_ack - offered.first_due:.1f} s)")
    print(f"  last ack     {offered.last_ack - offered.last_started:6.1f} s after the last message was sent")
    print(f"  all stored   {stored_after:6.1f} s after the last message was sent")
    print(f"  exactly once {exact}/{args.channels} channels hold {per_channel} messages each")
    if batches:
        print(f"  embeddings   {len(batches)} requests, median {statistics.median(batches):.0f} inputs, "
              f"{sum(1 for b in batches if b >= 16) * 100 // len(batches)}% with >= 16")  # fmt: skip
    print()
    print_provenance()


if __name__ == "__main__":
    raise SystemExit(main())
