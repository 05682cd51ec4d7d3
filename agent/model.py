"""Calling the chat model: OpenAI's async client, its errors as `AgentError`s, the response as stored JSON.

pixelbot calls the model itself instead of through a Pixeltable computed column: a call then waits on
the event loop without holding a thread, a table lock or a storage connection (so a thousand slow
answers cost nothing to the rest of the bot), and the model, prompt and tools in force are the ones of
the current settings for every channel. Each call's request and response are still stored in the
channel's Pixeltable tables (`agent.store`), so exports and audits see every call.

A call can also be streamed (`stream`): the words reach a listener as the model writes them, so that
Slack can show them at once, and the chunks are put back together (by the `openai` library's own
`ChatCompletionStreamState`) into the same chat completion a plain call returns, which is what is
stored. Pixeltable's `chat_completions` cannot stream: it reads the whole response.

Requests go through the client's documented `post` for raw requests rather than
`chat.completions.create`: the request is already the JSON body, and `create` first walks it
recursively against its typed parameters (`async_maybe_transform`), which took ~4.5 ms of the GIL per
answer, a tenth of the bot's Python time per answer under load (`benchmarks.profile_bot --gil`). The
client's retries, timeouts, authentication and errors are the same.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from agent.errors import AgentError, ModelFailure

CHAT_COMPLETIONS = "/chat/completions"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 2

TextListener = Callable[[str], None]
"""Called on the event loop with each new piece of an answer's words, in order."""

_FAILURES: tuple[tuple[type[Exception], ModelFailure], ...] = (
    (openai.RateLimitError, ModelFailure.RATE_LIMITED),
    (openai.APITimeoutError, ModelFailure.TIMEOUT),  # before APIConnectionError, its base class
    (openai.APIConnectionError, ModelFailure.UNAVAILABLE),
    (openai.InternalServerError, ModelFailure.UNAVAILABLE),
    (openai.APIResponseValidationError, ModelFailure.BAD_RESPONSE),
    (openai.APIStatusError, ModelFailure.REJECTED),  # 400, 401, 403, 404, 422 and other refusals
)


@dataclass(frozen=True)
class ModelSettings:
    """Where and how to call the model; `None` means the `openai` client's own default (environment)."""

    base_url: str | None = None
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES


@dataclass(frozen=True)
class Completion:
    """One finished call: the response body as the server sent it, and how long it took."""

    response: dict[str, Any]
    seconds: float


class ModelClient:
    """Chat completions over one `AsyncOpenAI` client (a connection pool), made on first use.

    The `openai` client retries rate limits (honouring `Retry-After`), 5xx and dropped connections
    `retries` times with backoff, and gives up on one attempt after `timeout` seconds.
    """

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = settings or ModelSettings()
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.settings.base_url,
                api_key=self.settings.api_key,
                timeout=self.settings.timeout,
                max_retries=self.settings.retries,
            )
        return self._client

    async def complete(self, request: dict[str, Any]) -> Completion:
        """The model's response to `request` (a `CreateChatCompletionRequest` body), or an `AgentError`."""
        started = time.monotonic()
        try:
            body = json.loads(await self.client.post(CHAT_COMPLETIONS, body=request, cast_to=str))
        except json.JSONDecodeError:
            raise AgentError("the model's response is not JSON", ModelFailure.BAD_RESPONSE) from None
        except openai.OpenAIError as error:
            raise model_error(error) from error
        if not isinstance(body, dict):
            raise AgentError("the model's response is not a JSON object", ModelFailure.BAD_RESPONSE)
        return Completion(body, time.monotonic() - started)

    async def stream(self, request: dict[str, Any], on_text: TextListener) -> Completion:
        """`complete`, streamed: `on_text` gets the words as they arrive; the completion returned is
        the one the chunks add up to. A stream that breaks off is an `AgentError` (what `on_text` got
        by then is all there is)."""
        started = time.monotonic()
        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
        finished = False
        try:
            chunks = await self.client.post(
                CHAT_COMPLETIONS,
                body={**request, "stream": True, "stream_options": {"include_usage": True}},
                cast_to=ChatCompletionChunk,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            async for chunk in chunks:
                state.handle_chunk(chunk)
                for choice in chunk.choices:
                    finished |= choice.finish_reason is not None
                    if choice.delta.content:
                        on_text(choice.delta.content)
        except openai.OpenAIError as error:
            raise model_error(error) from error
        except httpx.HTTPError as error:  # the connection broke off mid-stream
            raise AgentError(
                f"the model's stream broke off ({type(error).__name__})", ModelFailure.UNAVAILABLE
            ) from error
        if not finished:
            raise AgentError("the model's stream ended before its answer did", ModelFailure.BAD_RESPONSE)
        body = state.get_final_completion().model_dump(mode="json", exclude_none=True)
        return Completion(body, time.monotonic() - started)


def model_error(error: Exception) -> AgentError:
    """The `AgentError` for an exception of the `openai` client."""
    failure = next((kind for cls, kind in _FAILURES if isinstance(error, cls)), ModelFailure.UNAVAILABLE)
    return AgentError(f"model call failed ({type(error).__name__}): {error}", failure)


def assistant_message(response: dict[str, Any]) -> dict[str, Any]:
    """The assistant message of a chat completion, or an `AgentError` if the response has none."""
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise AgentError("the model's response has no message", ModelFailure.BAD_RESPONSE) from None
    if not isinstance(message, dict):
        raise AgentError("the model's response message is malformed", ModelFailure.BAD_RESPONSE)
    return message


def message_text(message: dict[str, Any]) -> str | None:
    """The words of an assistant message, or None if it has none (empty, whitespace, or not text)."""
    content = message.get("content")
    return content if isinstance(content, str) and content.strip() else None
