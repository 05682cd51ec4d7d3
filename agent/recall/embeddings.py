"""Embedding texts for recall, with an OpenAI-compatible server that may not be the chat model's.

Embeddings are computed by pixelbot, not by a Pixeltable computed column: a computed embedding runs
inside the insert that stores a turn (blocking every other write of the process while it waits on
the network) and fails the insert when the server is down. Here they are requested in batches off
the storage path, and an outage only postpones them (`agent.recall.indexer`).

Vectors are asked for as base64 (OpenAI's compact form, and the `openai` client's own default): a
batch of 64 vectors of 1,536 numbers is 2 MB of JSON as floats and takes 50-64 ms of the bot's Python
to request and read, 0.5 MB and ~6 ms as base64 (`benchmarks.embedding_transfer`). Some
OpenAI-compatible servers ignore the format and send floats anyway (read just the same); some refuse
it with a 400 or 422 (older vLLM, some gateways): the embedder then asks for floats from then on.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import openai

from agent.errors import ConfigError, EmbeddingError
from agent.tokens import truncate_to_tokens

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
KNOWN_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
DEFAULT_TIMEOUT = 10.0
MAX_INPUT_TOKENS = 2_000  # of one text; embedding models read up to 8,191, recall needs the gist
BATCH_SIZE = 64  # texts per request (OpenAI takes up to 2,048)
FORMAT_REFUSALS = (openai.BadRequestError, openai.UnprocessableEntityError)  # 400, or 422 from a typed schema


@dataclass(frozen=True)
class EmbeddingSettings:
    """Which model embeds, where. `dimensions` is required for a model this module does not know,
    because the index is sized before the first text is embedded; `None` URL and key mean the
    chat model's (the `openai` client's defaults)."""

    model: str = DEFAULT_EMBEDDING_MODEL
    dimensions: int | None = None
    base_url: str | None = None
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def size(self) -> int | None:
        """The length of this model's vectors, if known before asking the server."""
        return self.dimensions or KNOWN_DIMENSIONS.get(self.model)


class Embedder:
    """Vectors for texts from one embedding model (an `AsyncOpenAI` client, made on first use)."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.settings = settings
        self._client: openai.AsyncOpenAI | None = None
        self._size = settings.size
        self._encoding = "base64"  # "float" once the server refused base64

    @property
    def size(self) -> int:
        if self._size is None:
            raise ConfigError("the embedding size is unknown until the model has been probed")
        return self._size

    @property
    def model(self) -> str:
        return self.settings.model

    def probe(self) -> int:
        """Embed one text now, so that a wrong model, key, URL or size fails at start, not in an answer;
        the vector length found. A server that is merely unreachable is not a wrong setting: if the
        size is known, the bot starts and recall waits for the server."""
        client = openai.OpenAI(base_url=self.settings.base_url, api_key=self.settings.api_key, max_retries=0)
        create = partial(client.embeddings.with_raw_response.create, input=["pixelbot"], timeout=self.settings.timeout)
        try:
            encoding = self._encoding
            try:
                raw = create(**self._options(encoding))
            except FORMAT_REFUSALS as error:
                if encoding != "base64":
                    raise
                raw = create(**self._options("float"))  # floats refused too: not the format, raised
                self._floats_from_now_on(error)
            vectors = _vectors(raw.http_response.text)
        except (openai.APIConnectionError, openai.InternalServerError) as error:
            if self._size is None:
                raise ConfigError(
                    f"cannot reach the embedding server to learn the size of {self.model!r} ({error}); "
                    "set PIXELBOT_EMBEDDING_DIMENSIONS or check PIXELBOT_EMBEDDING_BASE_URL."
                ) from None
            return self._size
        except openai.OpenAIError as error:
            raise ConfigError(
                f"the embedding model {self.model!r} refused a test embedding: {error}. Check "
                "PIXELBOT_EMBEDDING_MODEL, PIXELBOT_EMBEDDING_BASE_URL and PIXELBOT_EMBEDDING_API_KEY "
                "(or set PIXELBOT_RECALL=false)."
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"the embedding server's answer for {self.model!r} is not readable ({error!r}). Check "
                "PIXELBOT_EMBEDDING_BASE_URL (or set PIXELBOT_RECALL=false)."
            ) from None
        found = len(vectors[0]) if vectors else 0
        if self._size is not None and found != self._size:
            raise ConfigError(
                f"the embedding model {self.model!r} returns vectors of {found} numbers, not "
                f"{self._size}: set PIXELBOT_EMBEDDING_DIMENSIONS={found} (some servers ignore `dimensions`)."
            )
        if found == 0:
            raise ConfigError(f"the embedding model {self.model!r} returned an empty vector.")
        self._size = found
        return found

    async def embed(self, texts: list[str]) -> list[Vector]:
        """One unit vector per text, in order, in requests of `BATCH_SIZE`; `EmbeddingError` if the
        server fails (after the client's own retries)."""
        vectors: list[Vector] = []
        for start in range(0, len(texts), BATCH_SIZE):
            vectors += await self._embed_batch(texts[start : start + BATCH_SIZE])
        return vectors

    async def _embed_batch(self, texts: list[str]) -> list[Vector]:
        inputs = [truncate_to_tokens(text, MAX_INPUT_TOKENS) or " " for text in texts]
        create = partial(self.client.embeddings.with_raw_response.create, input=inputs)
        try:  # the raw body: the client's typed objects cost more CPU than the request itself
            encoding = self._encoding  # this request's: another batch may switch it meanwhile
            try:
                raw = await create(**self._options(encoding))
            except FORMAT_REFUSALS as error:
                if encoding != "base64":
                    raise
                raw = await create(**self._options("float"))  # floats refused too: not the format, raised
                self._floats_from_now_on(error)
            vectors = _vectors(raw.http_response.text)
        except openai.OpenAIError as error:
            raise EmbeddingError(f"embedding failed ({type(error).__name__}): {error}") from error
        except (ValueError, KeyError, TypeError) as error:
            raise EmbeddingError(f"the embedding server's answer is not readable: {error!r}") from None
        if len(vectors) != len(inputs) or any(len(vector) != self.size for vector in vectors):
            raise EmbeddingError(f"the embedding server sent {len(vectors)} vectors of the wrong shape")
        return [unit(vector) for vector in vectors]

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.settings.base_url,
                api_key=self.settings.api_key,
                timeout=self.settings.timeout,
                max_retries=1,
            )
        return self._client

    def _floats_from_now_on(self, refusal: openai.APIStatusError) -> None:
        """The server refused base64 vectors and sent floats when asked for them (said once)."""
        if self._encoding == "float":
            return
        self._encoding = "float"
        logger.warning("the embedding server refused base64 vectors (%s); asking for floats from now on", refusal)

    def _options(self, encoding: str) -> dict[str, Any]:
        """`dimensions` only when set: OpenAI's older models refuse it, and some servers ignore it."""
        options: dict[str, Any] = {"model": self.model, "encoding_format": encoding}
        if self.settings.dimensions is not None:
            options["dimensions"] = self.settings.dimensions
        return options


def _vectors(body: str) -> list[Vector]:
    """The vectors of an embedding response's body, in the order of its inputs."""
    data = json.loads(body)["data"]
    return [_vector(item["embedding"]) for item in sorted(data, key=lambda item: item["index"])]


def _vector(value: object) -> Vector:
    """One embedding as sent: a list of numbers, or base64 of little-endian float32 (OpenAI's compact form)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    if not isinstance(value, list):
        raise TypeError("an embedding is neither a list nor base64")
    return np.asarray(value, dtype=np.float32)


def unit(vector: Vector) -> Vector:
    """`vector` scaled to length 1 (cosine similarity is then a dot product); zero stays zero."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def similarity(a: Vector, b: Vector) -> float:
    """Cosine similarity of two vectors (as recall's index measures it)."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norms) if norms else 0.0
