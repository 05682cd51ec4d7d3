"""Time to first visible text: from the model's first token to the first words in Slack.

The scripted model streams its answer (`--first-token` seconds to the first token, then one word every
`--chunk-delay`); `ScriptedOpenAI.first_token_at` notes when each stream's first word was flushed, and
the fake Slack notes when the `chat.startStream` carrying the first words arrived (`StreamedMessage.
appends`). Both are `time.monotonic()` in this process, the bot runs as its own process
(`python -m bot serve`, streaming on, as deployed).

- sequential: one mention at a time, `--rounds` of them (each pair is exact);
- concurrent: `--channels` mentions at once, in as many channels, `--bursts` times; the k-th first token
  of a burst is paired with its k-th first text (a rank match: the streams are not told apart, so
  this pairs the same distribution, not the same request).

The floor is one Web API call from this process to the fake Slack (what any bot must spend to show
text); the target is 150 ms p50.

    python -m benchmarks.streaming_latency [--rounds 30] [--channels 20] [--bursts 3] [--first-token 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from slack_sdk import WebClient

from benchmarks.common import (
    FakeServices,
    ServerProcess,
    fake_services,
    percentile,
    print_provenance,
    work_directory,
)
from tests.fake_openai import Reply
from tests.slack_requests import SlackSender, mention, next_ts

WORDS = [f"word{n} " for n in range(40)]


def _row(name: str, seconds: list[float]) -> str:
    median, p95 = statistics.median(seconds) * 1000, percentile(seconds, 0.95) * 1000
    return f"  {name:<44}{median:8.1f} ms {p95:8.1f} ms   (n={len(seconds)})"


def _first_text_at(services: FakeServices, channel: str, thread_ts: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stream in services.slack.streams(channel):
            if stream.thread_ts == thread_ts and stream.state == "stopped" and stream.appends:
                return stream.appends[0][0]
        time.sleep(0.005)
    raise RuntimeError(f"no streamed answer in {channel}/{thread_ts} within {timeout} s")


def sequential(services: FakeServices, sender: SlackSender, bot: ServerProcess, rounds: int) -> list[float]:
    gaps = []
    for n in range(rounds + 2):  # two warm-up rounds: the channel's tables, the clients' connections
        ts = next_ts()
        tokens_before = len(services.model.first_token_at)
        sender.send(bot.events_url, mention(f"question {n}", channel="CSEQ", ts=ts))
        shown = _first_text_at(services, "CSEQ", ts)
        first_token = services.model.first_token_at[tokens_before]
        if n >= 2:
            gaps.append(shown - first_token)
    return gaps


def concurrent(
    services: FakeServices, sender: SlackSender, bot: ServerProcess, channels: int, bursts: int
) -> list[float]:
    gaps: list[float] = []
    for burst in range(bursts + 1):  # the first burst creates the channels' tables
        tokens_before = len(services.model.first_token_at)
        threads = [(f"CCON{c:03d}", next_ts()) for c in range(channels)]
        for channel, ts in threads:
            sender.send(bot.events_url, mention(f"burst {burst}", channel=channel, ts=ts))
        shown = sorted(_first_text_at(services, channel, ts) for channel, ts in threads)
        tokens = sorted(services.model.first_token_at[tokens_before : tokens_before + channels])
        if burst:
            gaps += [text - token for text, token in zip(shown, tokens, strict=True)]
    return gaps


def floor(services: FakeServices, calls: int = 30) -> list[float]:
    client = WebClient(token="xoxb-benchmark-token", base_url=services.slack.base_url)
    times = []
    for _ in range(calls):
        started = time.monotonic()
        client.chat_startStream(channel="D0FLOOR", thread_ts=next_ts(), markdown_text="x")
        times.append(time.monotonic() - started)
    return times


def run(args: argparse.Namespace, work: Path) -> None:
    with fake_services(args.first_token) as services, SlackSender(timeout=60) as sender:
        services.model.respond_with(lambda body: Reply(chunks=WORDS, chunk_delay=args.chunk_delay))
        env = services.bot_environment(work / "home", PIXELBOT_STREAMING="true")
        with ServerProcess(env, work / "pixelbot.log") as bot:
            one = sequential(services, sender, bot, args.rounds)
            many = concurrent(services, sender, bot, args.channels, args.bursts)
        errors = services.slack.spec_errors + services.model.spec_errors
        print(f"\nmodel: first token after {args.first_token} s, then a word every {args.chunk_delay * 1000:.0f} ms")
        print(f"{'first visible text after the first token':<46}{'median':>11} {'p95':>11}")
        print(_row("one mention at a time", one))
        print(_row(f"{args.channels} channels at once (rank-matched)", many))
        print(_row("floor: one chat.startStream call", floor(services)))
        print(f"target: median <= 150 ms. spec errors in the bot's calls: {len(errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--first-token", type=float, default=1.0, help="seconds until the model's first token")
    parser.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between the model's words")
    args = parser.parse_args()
    run(args, work_directory())
    print_provenance()


if __name__ == "__main__":
    main()
