"""What the model reads back after calling tools, and what a failed model call becomes: unit tests of
`agent.tool_use.tool_messages` and `agent.pipeline.model_error`, no storage, no model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import AgentError, ModelFailure
from agent.pipeline import model_error
from agent.tool_use import tool_messages


def call(call_id: str, name: str) -> dict[str, Any]:
    """A tool call as it appears in an assistant message."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def test_each_call_gets_its_result_in_call_order_matched_by_position_per_tool() -> None:
    """Pixeltable groups results by tool name, in call order; each call gets its own back."""
    calls = [call("c1", "calculate"), call("c2", "say_hello"), call("c3", "calculate")]
    results = {"calculate": ["42", "7"], "say_hello": ["Hello, Ada!"]}

    messages = tool_messages(calls, results, error=None)

    assert messages == [
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "tool", "tool_call_id": "c2", "content": "Hello, Ada!"},
        {"role": "tool", "tool_call_id": "c3", "content": "7"},
    ]


def test_results_that_are_not_text_are_sent_as_json() -> None:
    calls = [call("c1", "lookup"), call("c2", "lookup")]

    messages = tool_messages(calls, {"lookup": [{"rows": [1, 2]}, 3.5]}, error=None)

    assert [json.loads(message["content"]) for message in messages] == [{"rows": [1, 2]}, 3.5]


@pytest.mark.parametrize("results", [{}, None, {"calculate": []}])
def test_a_call_without_a_result_tells_the_model_there_is_no_such_tool(results: dict[str, Any] | None) -> None:
    [message] = tool_messages([call("c1", "calculate")], results, error=None)

    assert message == {"role": "tool", "tool_call_id": "c1", "content": "Error: there is no tool named 'calculate'."}


def test_a_failed_round_gives_every_call_the_error_to_explain() -> None:
    calls = [call("c1", "calculate"), call("c2", "nonsense")]

    messages = tool_messages(calls, {"calculate": ["42"]}, error="division by zero")

    assert [message["tool_call_id"] for message in messages] == ["c1", "c2"]
    for message in messages:
        assert message["content"].startswith("Error: the tool call could not run (division by zero).")


def test_a_malformed_call_still_gets_an_answer() -> None:
    [message] = tool_messages([{}], {}, error=None)

    assert message == {"role": "tool", "tool_call_id": "", "content": "Error: there is no tool named ''."}


@pytest.mark.parametrize(
    ("error_type", "failure"),
    [
        ("RateLimitError", ModelFailure.RATE_LIMITED),
        ("APITimeoutError", ModelFailure.TIMEOUT),
        ("TimeoutError", ModelFailure.TIMEOUT),
        ("ReadTimeout", ModelFailure.TIMEOUT),
        ("InternalServerError", ModelFailure.UNAVAILABLE),
        ("APIConnectionError", ModelFailure.UNAVAILABLE),
        ("BadRequestError", ModelFailure.REJECTED),
        ("AuthenticationError", ModelFailure.REJECTED),
        ("PermissionDeniedError", ModelFailure.REJECTED),
        ("NotFoundError", ModelFailure.REJECTED),
        ("UnprocessableEntityError", ModelFailure.REJECTED),
        ("JSONDecodeError", ModelFailure.BAD_RESPONSE),
        ("SomethingNobodyExpected", ModelFailure.UNAVAILABLE),
    ],
)
def test_model_error_classifies_pixeltables_record_of_the_failure(error_type: str, failure: ModelFailure) -> None:
    error = model_error({"errortype": error_type, "errormsg": "details from the server"})

    assert isinstance(error, AgentError)
    assert error.failure is failure
    assert str(error) == f"model call failed ({error_type}): details from the server"


def test_model_error_without_a_record_is_still_readable() -> None:
    error = model_error({})

    assert error.failure is ModelFailure.UNAVAILABLE
    assert str(error) == "model call failed (unknown error): the model call failed"
