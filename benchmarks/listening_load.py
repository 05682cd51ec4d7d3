"""Listening under load: many listening channels chatting at once, none of it answered.

`python -m benchmarks.listening_load [--channels 50] [--rate 20] [--seconds 30]`

Every channel is switched on (`/pixelbot listen on`, as a user would), then each sends `--rate`
human messages a second for `--seconds`, open loop (on a fixed schedule, whatever the bot does), as
signed `message` events over HTTP to `python -m bot serve`. Reported: the rate actually offered,
acknowledgement times (Slack retries after 3 s), how long until every message was stored (the
inbox has no open row left), whether each was stored exactly once (memory rows counted per channel
afterwards), and the size of the embedding requests recall made (batched under load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

import httpx

from benchmarks.common import FakeServices, ServerProcess, fake_services, percentile, print_provenance, work_directory
from bot.channels import ChannelKey
from tests.slack_requests import TEAM_ID, SlackSender, message, slash_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second per channel")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--senders", type=int, default=16, help="load-generator threads")
    args = parser.parse_args(argv)
    work = work_directory()
    with fake_services() as services:
        env = services.bot_environment(work / "home")
        with ServerProcess(env, work / "pixelbot.log") as bot:
            channels = [f"CL{index:07d}" for index in range(args.channels)]
            switch_on(services, bot, channels)
            acks, sent, seconds = offer(bot, channels, args)
            stored_after = wait_until_stored(bot, started=time.monotonic())
        counts = memory_counts(work / "home", channels)
    batches = [len(r["input"]) if isinstance(r["input"], list) else 1 for r in services.model.embedding_requests]
    report(args, acks, sent, seconds, stored_after, counts, batches)
    return 0


def switch_on(services: FakeServices, bot: ServerProcess, channels: list[str]) -> None:
    with SlackSender() as sender:
        for channel in channels:
            url = services.slack.response_url(f"listen-{channel}")
            sender.send(bot.events_url, slash_command("/pixelbot", "listen on", channel_id=channel, response_url=url))
    services.slack.wait_for_responses(len(channels), timeout=60)


def offer(bot: ServerProcess, channels: list[str], args: argparse.Namespace) -> tuple[list[float], int, float]:
    """Send on schedule from `args.senders` threads; each message's ack time."""
    total = int(args.channels * args.rate * args.seconds)
    interval = 1.0 / (args.channels * args.rate)
    requests = [
        message(f"note {n}: the build is green again", channel=channels[n % len(channels)]) for n in range(total)
    ]
    acks: list[float] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.5

    def send(offset: int) -> None:
        with SlackSender(timeout=30) as sender:
            for n in range(offset, total, args.senders):
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                response = sender.send(bot.events_url, requests[n])
                with lock:
                    acks.append(response.elapsed if response.status == 200 else float("inf"))

    threads = [threading.Thread(target=send, args=(offset,)) for offset in range(args.senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acks, total, time.monotonic() - start


def wait_until_stored(bot: ServerProcess, started: float, timeout: float = 600.0) -> float:
    """Seconds after the last message was sent until the inbox had no open request."""
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < timeout:
            health = client.get(f"http://127.0.0.1:{bot.port}/healthz").json()
            if health.get("open_requests") == 0 and health.get("in_progress") == 0:
                return time.monotonic() - started
            time.sleep(0.2)
    return float("inf")


def memory_counts(home: Path, channels: list[str]) -> dict[str, int]:
    os.environ["PIXELTABLE_HOME"] = str(home)
    import pixeltable as pxt

    from agent.runtime import configure_pixeltable

    configure_pixeltable()
    counts = {}
    for channel in channels:
        table = pxt.get_table(f"{ChannelKey(TEAM_ID, channel).agent_name}.memory", if_not_exists="ignore")
        counts[channel] = table.count() if table is not None else 0
    return counts


def report(
    args: argparse.Namespace,
    acks: list[float],
    sent: int,
    seconds: float,
    stored_after: float,
    counts: dict[str, int],
    batches: list[int],
) -> None:
    offered = sent / seconds
    per_channel = sent // args.channels
    exact = sum(1 for count in counts.values() if count == per_channel)
    failed = sum(1 for ack in acks if ack == float("inf"))
    fine = [ack for ack in acks if ack != float("inf")]
    print(f"listening load: {args.channels} channels x {args.rate:g} msg/s x {args.seconds:g} s = {sent:,} messages")
    print(f"  offered      {offered:8.0f} msg/s (target {args.channels * args.rate:.0f})")
    print(f"  ack          p50 {percentile(fine, 0.5) * 1000:6.1f} ms   p99 {percentile(fine, 0.99) * 1000:6.1f} ms   "
          f"max {max(fine) * 1000:6.0f} ms   refused {failed}")  # fmt: skip
    print(f"  all stored   {stored_after:6.1f} s after the last message")
    print(f"  exactly once {exact}/{args.channels} channels hold {per_channel} messages each")
    if batches:
        print(f"  embeddings   {len(batches)} requests, median {statistics.median(batches):.0f} inputs, "
              f"{sum(1 for b in batches if b >= 16) * 100 // len(batches)}% with >= 16")  # fmt: skip
    print()
    print_provenance()


if __name__ == "__main__":
    raise SystemExit(main())
