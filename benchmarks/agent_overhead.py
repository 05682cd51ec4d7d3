"""The agent's own time per `chat`, at several memory sizes.

Overhead = wall time of `Agent.chat` minus the scripted model's fixed delay: storing both messages,
reading the recent memory, building the prompt, and Pixeltable's pipeline around the model call.

    python -m benchmarks.agent_overhead [--sizes 0 1000 10000] [--calls 40] [--delay 0.1]
"""

from __future__ import annotations

import argparse
import time
import uuid

from agent.runtime import configure_pixeltable
from benchmarks.common import command_line, fill_memory, machine, summary_ms, use_temporary_home
from tests.fake_openai import ScriptedOpenAI


def measure(size: int, calls: int, delay: float) -> list[float]:
    from agent import Agent

    agent = Agent(f"bench_{size}_{uuid.uuid4().hex[:6]}", "You are terse.")
    fill_memory(agent.tables.memory, size)
    agent.chat("warm up")  # the first call in a process pays the client start-up
    overheads = []
    for index in range(calls):
        started = time.perf_counter()
        agent.chat(f"question {index}")
        overheads.append(time.perf_counter() - started - delay)
    return overheads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1_000, 10_000])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.1, help="scripted model delay in seconds")
    args = parser.parse_args()

    use_temporary_home()
    configure_pixeltable()
    with ScriptedOpenAI(delay=args.delay) as server:
        import os

        os.environ["OPENAI_BASE_URL"] = server.base_url
        print(f"agent overhead per chat (model delay {args.delay * 1000:.0f} ms subtracted), {args.calls} calls")
        for size in args.sizes:
            print(f"  memory rows {size:>7,}: {summary_ms(measure(size, args.calls, args.delay))}")
    print(f"machine: {machine()}")
    print(f"command: {command_line()}")


if __name__ == "__main__":
    main()
