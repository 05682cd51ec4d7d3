"""Helpers shared by the benchmarks: statistics, an isolated Pixeltable home, and printing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pixeltable as pxt


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
