"""`Embedder` against the scripted OpenAI server: vectors asked for in OpenAI's compact base64 form and
read in either form; a server that refuses base64 is asked for floats from then on, even when the
start-up probe never reached it; any other refusal is an `EmbeddingError` and changes nothing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.errors import EmbeddingError
from agent.recall import Embedder, EmbeddingSettings
from agent.recall.embeddings import Vector
from tests.fake_openai import Reply, ScriptedOpenAI, embed_text

TEXTS = ["the falcon release ships in march", "lunch order: pizza again"]


@pytest.fixture
def embedder(model: ScriptedOpenAI) -> Embedder:
    return Embedder(EmbeddingSettings("test-model", 32, base_url=model.base_url, api_key="sk-test"))


def formats(server: ScriptedOpenAI) -> list[str]:
    return [request["encoding_format"] for request in server.embedding_requests]


def test_vectors_come_as_base64_and_read_as_the_server_meant_them(embedder: Embedder, model: ScriptedOpenAI) -> None:
    vectors = asyncio.run(embedder.embed(TEXTS))
    expected = [np.asarray(embed_text(text, 32), dtype=np.float32) for text in TEXTS]
    assert all(np.allclose(got, want) for got, want in zip(vectors, expected, strict=True))
    assert formats(model) == ["base64"]


@pytest.mark.parametrize("status", [400, 422])
def test_a_refusal_of_base64_after_start_turns_the_embedder_to_floats(
    embedder: Embedder, model: ScriptedOpenAI, status: int
) -> None:
    model.base64, model.base64_refusal = "refuse", status

    async def twice() -> tuple[list[Vector], list[Vector]]:  # one loop: the client belongs to it
        return await embedder.embed(TEXTS), await embedder.embed(TEXTS[:1])

    first, second = asyncio.run(twice())
    assert np.allclose(first[0], second[0]) and len(first) == 2
    assert formats(model) == ["base64", "float", "float"]


def test_another_refusal_is_an_error_and_keeps_base64(embedder: Embedder, model: ScriptedOpenAI) -> None:
    async def refused_then_served() -> None:  # one loop: the client belongs to it
        model.embedding_failure = Reply(status=400)
        with pytest.raises(EmbeddingError):
            await embedder.embed(TEXTS)
        model.embedding_failure = None
        await embedder.embed(TEXTS)

    asyncio.run(refused_then_served())
    assert formats(model)[-1] == "base64"
