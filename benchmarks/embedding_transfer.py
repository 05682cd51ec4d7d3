"""What reading embedding vectors costs the bot, as base64 (what it asks for) and as floats.

`python -m benchmarks.embedding_transfer [--dimensions 384,1536,3072] [--batches 20]`

The bot's `Embedder` (the `openai` client, HTTP, reading the body) asks a local OpenAI-compatible
server for batches of 64 texts, as recall's indexer does under listening load. The server sends
dense random unit vectors, as a real model does (the tests' scripted server sends sparse ones, whose
floats are short). Floats are measured against the same server refusing base64, which turns the
embedder to floats, as it does with such a server in production. The figure is the CPU of the
thread that makes the requests (the server runs on other threads): Python time that a busy bot
takes from its acknowledgements and answers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agent.recall import Embedder, EmbeddingSettings
from agent.recall.embeddings import BATCH_SIZE
from benchmarks.common import print_provenance
from benchmarks.recall.embedding_server import EmbeddingServer

WARM_UP = 2  # batches before the clock starts (the client's connection, the format's probe)


class RandomEmbedder:
    """Dense random unit vectors of `dimensions` (the served numbers, not their meaning, are measured)."""

    name = "random"

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._rng = np.random.default_rng(dimensions)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = self._rng.standard_normal((len(texts), self.dimensions)).astype(np.float32)
        unit: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(text.split()) for text in texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimensions", default="384,1536,3072")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    logging.getLogger("agent.recall.embeddings").setLevel(logging.ERROR)  # "refused base64": meant here
    print(f"reading embeddings: batches of {BATCH_SIZE} texts, {args.batches} per row; CPU of the requesting thread")
    print(f"{'dims':>5} {'format':>7} | {'CPU/text':>9} {'CPU/batch':>10} {'wall/batch':>11}")
    for dimensions in (int(value) for value in args.dimensions.split(",")):
        for formats, shown in ((("float", "base64"), "base64"), (("float",), "float")):
            cpu, wall = measure(dimensions, formats, args.batches)
            print(f"{dimensions:>5} {shown:>7} | {cpu / BATCH_SIZE:>6.3f} ms {cpu:>7.2f} ms {wall:>8.2f} ms")
    print("(ms; floats: the same server refusing base64, as older vLLM does)")
    print()
    print_provenance()
    return 0


def measure(dimensions: int, formats: Sequence[str], batches: int) -> tuple[float, float]:
    """Median CPU and wall time (ms) of one batch."""
    texts = [f"message {index} of the channel, about the release" for index in range(BATCH_SIZE)]
    with EmbeddingServer(embedder=RandomEmbedder(dimensions), formats=formats) as server:
        settings = EmbeddingSettings("random", dimensions, base_url=server.base_url, api_key="local")
        embedder = Embedder(settings)

        async def run() -> tuple[list[float], list[float]]:
            cpu, wall = [], []
            for number in range(WARM_UP + batches):
                began_cpu, began = time.thread_time(), time.perf_counter()
                await embedder.embed(texts)
                if number >= WARM_UP:
                    cpu.append(time.thread_time() - began_cpu)
                    wall.append(time.perf_counter() - began)
            await embedder.client.close()  # before its loop closes
            return cpu, wall

        cpu, wall = asyncio.run(run())
    return statistics.median(cpu) * 1000, statistics.median(wall) * 1000


if __name__ == "__main__":
    raise SystemExit(main())
