"""Self-tests of ScriptedOpenAI's streamed answers: the real `openai` client (and raw httpx, for the wire
format) against it over real HTTP. No Pixeltable: these only need the server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import wait_until
from tests.fake_openai import Reply, ScriptedOpenAI

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as started:
        yield started


@pytest.fixture
def model(server: ScriptedOpenAI) -> Iterator[ScriptedOpenAI]:
    server.reset()
    yield server
    assert server.spec_errors == []


@pytest.fixture
def client(model: ScriptedOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=model.base_url, api_key="x", max_retries=0) as made:
        yield made


def raw_events(model: ScriptedOpenAI, **request: Any) -> tuple[httpx.Response, list[str]]:
    """The `data:` payloads of a streamed answer, as sent, with the response (its headers)."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, **request}
    with httpx.stream("POST", f"{model.base_url}/chat/completions", json=body, timeout=10) as response:
        text = response.read().decode()
    assert text.endswith("\n\n"), text
    events = text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events), events
    return response, [event.removeprefix("data: ") for event in events]


def deltas(payloads: list[str]) -> list[dict[str, Any]]:
    """The delta of every chunk with a choice (all but the usage chunk and `[DONE]`)."""
    chunks = [json.loads(payload) for payload in payloads if payload != "[DONE]"]
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]


# -- the wire format ------------------------------------------------------------------------------------
def test_a_stream_is_chunked_server_sent_events_ending_in_done(model: ScriptedOpenAI) -> None:
    model.then(Reply(text="Hello there"))

    response, payloads = raw_events(model)

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert all(chunk.keys() == {"id", "object", "created", "model", "choices"} for chunk in chunks)
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1 and chunks[0]["model"] == "gpt-4o-mini"
    choices = [chunk["choices"] for chunk in chunks]
    assert all(len(c) == 1 and c[0].keys() == {"index", "delta", "finish_reason", "logprobs"} for c in choices)
    assert [c[0]["delta"] for c in choices] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Hello "},
        {"content": "there"},
        {},
    ]
    assert [c[0]["finish_reason"] for c in choices] == [None, None, None, "stop"]
    assert model.requests[-1]["stream"] is True


def test_usage_comes_last_when_asked_for(model: ScriptedOpenAI) -> None:
    model.then(Reply(text="hi"))

    _, payloads = raw_events(model, stream_options={"include_usage": True})

    *chunks, usage = [json.loads(payload) for payload in payloads[:-1]]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 15
    assert all(chunk["usage"] is None for chunk in chunks)  # as OpenAI: every other chunk says "no usage yet"


def test_tool_calls_stream_as_openai_does(model: ScriptedOpenAI) -> None:
    arguments = {"city": "Paris", "unit": "celsius"}
    model.then(Reply(tool_calls=[("get_weather", arguments), ("get_time", "{}")]))

    _, payloads = raw_events(model, tools=[WEATHER_TOOL])

    calls = [call for delta in deltas(payloads) for call in delta.get("tool_calls", [])]
    starts = [call for call in calls if "id" in call]
    assert [(c["index"], c["type"], c["function"]) for c in starts] == [
        (0, "function", {"name": "get_weather", "arguments": ""}),
        (1, "function", {"name": "get_time", "arguments": ""}),
    ]
    fragments = [call for call in calls if "id" not in call]
    assert all(call.keys() == {"index", "function"} and call["function"].keys() == {"arguments"} for call in fragments)
    assert len([call for call in fragments if call["index"] == 0]) > 1  # the arguments come in pieces
    joined = "".join(call["function"]["arguments"] for call in fragments if call["index"] == 0)
    assert json.loads(joined) == arguments
    assert json.loads(payloads[-2])["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "tool_calls",
        "logprobs": None,
    }


# -- the real client ------------------------------------------------------------------------------------
def test_the_client_streams_text_and_usage(model: ScriptedOpenAI, client: openai.OpenAI) -> None:
    model.then(Reply(text="Streaming works,  nicely.\n"))

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    contents = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices]
    assert contents == ["", "Streaming ", "works,  ", "nicely.\n", None]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15


def test_scripted_chunks_replace_the_word_split(model: ScriptedOpenAI, client: openai.OpenAI) -> None:
    model.then(Reply(text="ignored", chunks=["Hel", "lo", " wor", "ld"]))

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    assert [c.choices[0].delta.content for c in stream][1:-1] == ["Hel", "lo", " wor", "ld"]


def test_the_stream_helper_assembles_text_and_tool_calls(model: ScriptedOpenAI, client: openai.OpenAI) -> None:
    model.then(Reply(text="Let me look. ", tool_calls=[("get_weather", {"city": "Paris"})]))

    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL], stream_options={"include_usage": True}
    ) as stream:
        completion = stream.get_final_completion()

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look. "
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.usage is not None and completion.usage.total_tokens == 15


def test_delay_is_time_to_first_token_and_deltas_are_flushed_as_paced(
    model: ScriptedOpenAI, client: openai.OpenAI
) -> None:
    model.then(Reply(text="one two three", delay=0.3, chunk_delay=0.2))
    started = time.monotonic()

    arrivals = [
        (time.monotonic(), chunk.choices[0].delta.content)
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        if chunk.choices and chunk.choices[0].delta.content
    ]
    ended = time.monotonic()

    assert [content for _, content in arrivals] == ["one ", "two ", "three"]
    assert arrivals[0][0] - started >= 0.3
    # each delta reached the client when it was written, not all at the end of the stream
    assert arrivals[-1][0] - arrivals[0][0] >= 0.35
    [first_token] = model.first_token_at
    assert started + 0.3 <= first_token <= ended


def test_a_cut_stream_is_an_error_not_a_short_answer(model: ScriptedOpenAI, client: openai.OpenAI) -> None:
    model.then(Reply(text="one two three four", cut_after=2))
    received: list[str | None] = []

    with pytest.raises((httpx.RemoteProtocolError, openai.APIError)):
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "one ", "two "]


def test_a_cut_is_an_incomplete_chunked_body_for_httpx(model: ScriptedOpenAI) -> None:
    model.then(Reply(text="only", tool_calls=[("get_weather", {"city": "Paris"})], cut_after=5))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    received = b""

    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        httpx.stream("POST", f"{model.base_url}/chat/completions", json=body, timeout=10) as response,
    ):
        for data in response.iter_bytes():
            received += data

    assert b'"only"' in received and b"get_weather" not in received  # cut before the tool call, never finished
    assert b"[DONE]" not in received


def test_the_stream_helper_raises_on_a_cut(model: ScriptedOpenAI, client: openai.OpenAI) -> None:
    model.then(Reply(text="half an answer", cut_after=1))

    with (
        pytest.raises((httpx.RemoteProtocolError, openai.APIError)),
        client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream,
    ):
        stream.get_final_completion()


def test_scripted_failures_answer_a_stream_request_with_json(model: ScriptedOpenAI, client: openai.OpenAI) -> None:
    model.then(Reply(status=429, headers={"Retry-After": "0"}))

    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    model.then(Reply(status=503))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    response = httpx.post(f"{model.base_url}/chat/completions", json=body, timeout=10)
    assert response.status_code == 503 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "server_error"
    assert model.first_token_at == []


def test_stream_requests_are_validated(model: ScriptedOpenAI) -> None:
    raw_events(model, stream_options={"include_usage": "yes"})

    assert len(model.requests) == 1 and any("include_usage" in error for error in model.spec_errors)
    model.spec_errors.clear()


def test_reset_forgets_first_token_times(model: ScriptedOpenAI) -> None:
    raw_events(model)
    assert len(model.first_token_at) == 1

    model.reset()

    assert model.first_token_at == []


def test_requests_without_stream_are_answered_whole(model: ScriptedOpenAI, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.object == "chat.completion" and completion.choices[0].message.content == "echo: hi"
    assert model.first_token_at == []


def test_a_request_cut_off_by_its_client_going_away_is_not_a_spec_error(model: ScriptedOpenAI) -> None:
    """A bot killed while sending a request (the durability tests do that) leaves half a body."""
    host, port = model.base_url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as connection:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n"
        connection.sendall(head.encode() + b'{"model": "gpt')
    wait_until(lambda: model.cut_off == 1, what="the cut-off request")
    assert model.spec_errors == []


def test_requests_checked_later_are_checked_all_the_same() -> None:
    """`validate_later` (the benchmarks'): a malformed request is answered, and reported when asked."""
    with ScriptedOpenAI(validate_later=True) as later:
        response = httpx.post(f"{later.base_url}/chat/completions", json={"model": "gpt-4o-mini"}, timeout=10)
        embedding = httpx.post(f"{later.base_url}/embeddings", json={"input": "hi"}, timeout=10)

        assert response.status_code == 200 and embedding.status_code == 200
        errors = later.spec_errors
        assert any("messages" in error for error in errors) and any("model" in error for error in errors)
        assert later.spec_errors == errors, "each request is checked once"
