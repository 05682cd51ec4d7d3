"""Recall's own cost in an answer: the search over a channel's recall table at 0, 10k and 100k rows.

`python -m benchmarks.recall_cost [--sizes 0,10000,100000] [--queries 50] [--dimensions 384]`

Measures `Recall.search` as an answer runs it on the storage thread (dense candidates from the
pgvector index, plus candidates for the question's specific words, then ranking), without the one
embedding request for the question, which depends on the embedding server. Rows are synthetic
(random unit vectors, texts from a vocabulary) and written straight into the recall table in
batches, so that filling 100k rows takes a minute instead of an embedding server's hour.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from agent.recall.embeddings import Vector
from benchmarks.common import percentile, print_provenance, work_directory

T = TypeVar("T")
_VOCABULARY = """deploy release budget vendor contract staging database rotation password oncall review design
lunch incident postmortem latency migration schema cluster backup quota invoice roadmap hiring sprint"""
WORDS = tuple(_VOCABULARY.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recall search cost by memory size.")
    parser.add_argument("--sizes", default="0,10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--dimensions", type=int, default=384)
    args = parser.parse_args(argv)
    os.environ["PIXELTABLE_HOME"] = str(work_directory() / "pixeltable")
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"recall search, {args.dimensions}-dim vectors, {args.queries} questions per size")
    for size in sizes:
        p50, p95, fill = measure(size, args.queries, args.dimensions)
        print(f"  {size:>7,} rows: p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   (filled in {fill:.0f} s)")
    print()
    print_provenance()
    return 0


def measure(size: int, queries: int, dimensions: int) -> tuple[float, float, float]:
    import pixeltable as pxt

    from agent.loop import background_loop
    from agent.recall import Embedder, EmbeddingSettings, MemoryItem, Recall
    from agent.recall import table as recall_table
    from agent.runtime import configure_pixeltable

    configure_pixeltable()
    rng, shuffle = np.random.default_rng(size), random.Random(size)
    name = f"bench_cost.c{size}"
    pxt.create_dir(name, parents=True, if_exists="ignore")
    table = recall_table.open_recall_table(name, "bench", dimensions)
    started, start = time.perf_counter(), datetime(2025, 1, 1, tzinfo=UTC)
    for first in range(0, size, 5_000):
        rows = []
        for index in range(first, min(size, first + 5_000)):
            text = " ".join(shuffle.choices(WORDS, k=12)) + f" ticket PX-{index}"
            item = MemoryItem(f"{index}:user", text, "user", f"U{index % 40:08d}", start + timedelta(minutes=index))
            rows.append((item, _unit(rng.standard_normal(dimensions).astype(np.float32))))
        recall_table.upsert(table, rows, "bench")
    fill = time.perf_counter() - started
    embedder = Embedder(EmbeddingSettings(model="bench", dimensions=dimensions))
    _analyze(table)
    recall = Recall(embedder, _Inline(), background_loop())
    seconds = []
    for number in range(queries + 3):
        question = f"what did we say about the {shuffle.choice(WORDS)} for PX-{shuffle.randrange(max(size, 1))}?"
        vector = _unit(rng.standard_normal(dimensions).astype(np.float32))
        began = time.perf_counter()
        recall.search(name, question, vector, {f"{index}:user" for index in range(20)})  # a recent window
        if number >= 3:  # the first searches warm the catalog and Postgres's caches
            seconds.append(time.perf_counter() - began)
    recall.indexer.stop()
    return statistics.median(seconds) * 1000, percentile(seconds, 0.95) * 1000, fill


def _analyze(table: Any) -> None:
    """Fresh planner statistics, as autovacuum keeps them for a table that grew over time (without
    them Postgres may sort every row instead of using the HNSW index)."""
    import sqlalchemy as sa
    from pixeltable.env import Env

    with Env.get().engine.begin() as connection:
        connection.execute(sa.text(f'ANALYZE "{table._tbl_version.get().store_tbl.sa_tbl.name}"'))


def _unit(vector: Vector) -> Vector:
    return vector / np.linalg.norm(vector)


class _Inline(Executor):
    """Runs work on the calling thread: the benchmark is single-threaded, and the indexer idle."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


if __name__ == "__main__":
    raise SystemExit(main())
