"""Baseline recall on the synthetic channel: BM25 and plain dense retrieval, the figures to beat.

`python -m benchmarks.recall.baselines [--seed 7 --messages 3000 --facts 40]`

Each message is indexed as "Name: text" (a channel memory knows who said what, and person questions
often name only the speaker); the text-only rows show what that buys. Dense retrieval embeds every
message and each question through the OpenAI client against the local `EmbeddingServer` (the
product's own code path) and ranks by cosine. The hybrid row, reciprocal-rank fusion of the two
(k=60), is the usual cheap step up, so it is printed as a stronger bar too.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openai

from benchmarks.recall.bm25 import BM25
from benchmarks.recall.embedding_server import EmbeddingServer
from benchmarks.recall.history import Message, Probe, describe, generate
from benchmarks.recall.metrics import Summary, print_summaries, summarize

DEPTH = 50
"""How many results each retriever ranks per question (MRR looks this deep; recall stops at 10)."""
BATCH = 256


def _git_commit() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def indexed_text(message: Message, *, with_name: bool) -> str:
    return f"{message.user_name}: {message.text}" if with_name else message.text


def embed_all(client: openai.OpenAI, texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Unit vectors for `texts`, `BATCH` per request, in order."""
    rows: list[list[float]] = []
    for start in range(0, len(texts), BATCH):
        response = client.embeddings.create(model="all-MiniLM-L6-v2", input=list(texts[start : start + BATCH]))
        rows.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
    vectors = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


def bm25_rankings(messages: Sequence[Message], probes: Sequence[Probe], *, with_name: bool) -> list[list[str]]:
    index = BM25([indexed_text(m, with_name=with_name) for m in messages])
    return [[messages[i].key for i, _ in index.top(p.question, DEPTH)] for p in probes]


def dense_rankings(
    messages: Sequence[Message], doc_vectors: npt.NDArray[np.float32], query_vectors: npt.NDArray[np.float32]
) -> list[list[str]]:
    scores = query_vectors @ doc_vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
    return [[messages[int(i)].key for i in row] for row in order]


def rrf(*rankings: Sequence[Sequence[str]], k: int = 60) -> list[list[str]]:
    """Reciprocal-rank fusion per question: score(key) = sum over rankers of 1 / (k + rank)."""
    fused: list[list[str]] = []
    for per_question in zip(*rankings, strict=True):
        scores: dict[str, float] = {}
        for ranking in per_question:
            for rank, key in enumerate(ranking, start=1):
                scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
        fused.append(sorted(scores, key=lambda key: (-scores[key], key))[:DEPTH])
    return fused


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recall baselines (BM25, dense) on the synthetic channel history.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--facts", type=int, default=40)
    args = parser.parse_args(argv)

    messages, probes = generate(seed=args.seed, messages=args.messages, facts=args.facts)
    answers = [p.answer_keys for p in probes]
    kinds = [p.kind for p in probes]
    kind_counts = {kind: kinds.count(kind) for kind in set(kinds)}
    summaries: list[Summary] = []

    started = time.perf_counter()
    bm25_named = bm25_rankings(messages, probes, with_name=True)
    bm25_plain = bm25_rankings(messages, probes, with_name=False)
    bm25_seconds = time.perf_counter() - started
    summaries.append(summarize("BM25 (name: text)", bm25_named, answers, kinds))
    summaries.append(summarize("BM25 (text only)", bm25_plain, answers, kinds))

    load_started = time.perf_counter()
    with EmbeddingServer() as server:
        load_seconds = time.perf_counter() - load_started
        client = openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0, timeout=600)
        embed_all(client, ["warm-up"])
        started = time.perf_counter()
        named_vectors = embed_all(client, [indexed_text(m, with_name=True) for m in messages])
        embed_seconds = time.perf_counter() - started
        plain_vectors = embed_all(client, [indexed_text(m, with_name=False) for m in messages])
        query_vectors = embed_all(client, [p.question for p in probes])
        model = server.embedder.name if server.embedder is not None else "?"
    dense_named = dense_rankings(messages, named_vectors, query_vectors)
    dense_plain = dense_rankings(messages, plain_vectors, query_vectors)
    summaries.append(summarize(f"dense {model} (name: text)", dense_named, answers, kinds))
    summaries.append(summarize(f"dense {model} (text only)", dense_plain, answers, kinds))
    summaries.append(summarize("hybrid RRF (name: text)", rrf(bm25_named, dense_named), answers, kinds))

    print("Recall baselines: synthetic channel memory benchmark")
    print(f"command : {shlex.join([Path(sys.executable).name, '-m', 'benchmarks.recall.baselines', *sys.argv[1:]])}")
    print(f"commit  : {_git_commit()}")
    print(f"machine : {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"python  : {platform.python_version()}")
    print(f"history : seed {args.seed}: {describe(messages, probes)}")
    print(
        f"timing  : BM25 index+rank x2 {bm25_seconds * 1000:.0f} ms; model load {load_seconds:.1f} s; "
        f"embedding {len(messages)} messages over HTTP {embed_seconds:.1f} s "
        f"({len(messages) / embed_seconds:.0f} texts/s)"
    )
    print()
    print_summaries(summaries, kind_counts)
    print()
    print("Figures to beat: recall@5 and recall@10 of the 'name: text' rows (mean over probes).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
