"""Running the model's tool calls and what it reads back, and what a failed model call becomes: unit
tests of `agent.toolbox.Toolbox`, `agent.tool_use.tool_messages` and `agent.model.model_error`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2 as httpx  # the transport of openai 3.x
import openai
import pixeltable as pxt
import pytest
from pixeltable.func.udf import udf

from agent import AgentError, ModelFailure
from agent.model import model_error
from agent.tool_use import tool_messages
from agent.toolbox import Toolbox
from tools import calculate, say_hello


@udf
def lookup(table: str, limit: int) -> dict[str, Any]:
    """Look rows up (a test tool returning JSON)."""
    return {"table": table, "rows": list(range(limit))}


@udf
def explode(reason: str) -> str:
    """Always fails (a test tool)."""
    raise RuntimeError(reason)


def call(name: str, arguments: Any, call_id: str = "c1") -> dict[str, Any]:
    """A tool call as it appears in an assistant message."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": raw}}


def run(call_: dict[str, Any]) -> str:
    toolbox = Toolbox(pxt.tools(say_hello, calculate, lookup, explode))
    return asyncio.run(toolbox.run(call_))


def test_a_call_runs_the_tool_with_its_arguments() -> None:
    assert run(call("say_hello", {"name": "Ada"})) == "Hello, Ada!"
    assert run(call("calculate", {"expression": "6*7"})) == "42"


def test_results_that_are_not_text_are_sent_as_json() -> None:
    assert json.loads(run(call("lookup", {"table": "t", "limit": 2}))) == {"table": "t", "rows": [0, 1]}


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("launch_rockets", {}, "Error: there is no tool named 'launch_rockets'."),
        ("say_hello", "{not json", "arguments are not JSON"),
        ("say_hello", "[1, 2]", "arguments must be a JSON object"),
        ("say_hello", {}, "missing argument(s): name"),
        ("say_hello", {"name": "A", "extra": 1}, "unknown argument(s): extra"),
        ("lookup", {"table": "t", "limit": "many"}, "invalid literal"),
        ("explode", {"reason": "boom"}, "RuntimeError: boom"),
    ],
)
def test_a_bad_call_becomes_an_error_the_model_can_explain(name: str, arguments: Any, expected: str) -> None:
    result = run(call(name, arguments))

    assert result.startswith("Error:") and expected in result


def test_each_call_gets_its_result_back_by_id_in_call_order() -> None:
    calls = [call("calculate", {}, "c1"), call("say_hello", {}, "c2"), call("calculate", {}, "c3")]

    messages = tool_messages(calls, ["42", "Hello, Ada!", "7"])

    assert messages == [
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "tool", "tool_call_id": "c2", "content": "Hello, Ada!"},
        {"role": "tool", "tool_call_id": "c3", "content": "7"},
    ]


def _status_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://model.test/v1/chat/completions")
    return cls("details from the server", response=httpx.Response(status, request=request), body=None)


_REQUEST = httpx.Request("POST", "http://model.test/v1/chat/completions")


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (_status_error(openai.RateLimitError, 429), ModelFailure.RATE_LIMITED),
        (openai.APITimeoutError(request=_REQUEST), ModelFailure.TIMEOUT),
        (openai.APIConnectionError(request=_REQUEST), ModelFailure.UNAVAILABLE),
        (_status_error(openai.InternalServerError, 500), ModelFailure.UNAVAILABLE),
        (_status_error(openai.BadRequestError, 400), ModelFailure.REJECTED),
        (_status_error(openai.AuthenticationError, 401), ModelFailure.REJECTED),
        (_status_error(openai.NotFoundError, 404), ModelFailure.REJECTED),
        (ValueError("something nobody expected"), ModelFailure.UNAVAILABLE),
    ],
)
def test_model_error_classifies_the_clients_exceptions(error: Exception, failure: ModelFailure) -> None:
    classified = model_error(error)

    assert isinstance(classified, AgentError)
    assert classified.failure is failure
    assert type(error).__name__ in str(classified)
