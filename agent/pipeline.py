"""Running one row through a Pixeltable pipeline table and reading back exactly that row.

`insert(..., return_rows=True)` hands back the inserted row with its computed values, so the answer
belongs to the request that produced it and no lookup (by message text or otherwise) is needed.
Errors are kept in the table (`on_error='ignore'`) and turned into an `AgentError` here.
"""

from __future__ import annotations

from typing import Any

import pixeltable as pxt

from agent.errors import AgentError, ModelFailure

_FAILURES_BY_ERROR_TYPE = {
    "RateLimitError": ModelFailure.RATE_LIMITED,
    "APITimeoutError": ModelFailure.TIMEOUT,
    "TimeoutError": ModelFailure.TIMEOUT,
    "ReadTimeout": ModelFailure.TIMEOUT,
    "InternalServerError": ModelFailure.UNAVAILABLE,
    "APIConnectionError": ModelFailure.UNAVAILABLE,
    "BadRequestError": ModelFailure.REJECTED,
    "AuthenticationError": ModelFailure.REJECTED,
    "PermissionDeniedError": ModelFailure.REJECTED,
    "NotFoundError": ModelFailure.REJECTED,
    "UnprocessableEntityError": ModelFailure.REJECTED,
    "JSONDecodeError": ModelFailure.BAD_RESPONSE,
}


def run_row(table: pxt.Table, row: dict[str, Any]) -> dict[str, Any]:
    """Insert `row`, let the computed columns run, and return the stored row with their values."""
    status = table.insert([row], on_error="ignore", return_rows=True)
    assert status.rows is not None, "return_rows=True always returns the rows"
    stored: dict[str, Any] = status.rows[0]
    response_error = stored.get("response:md")
    if stored.get("response") is None:
        raise model_error(response_error or {})
    return stored


def model_error(error: dict[str, Any]) -> AgentError:
    """An `AgentError` from Pixeltable's record of a failed model call."""
    error_type = str(error.get("errortype") or "unknown error")
    message = str(error.get("errormsg") or "the model call failed")
    failure = _FAILURES_BY_ERROR_TYPE.get(error_type, ModelFailure.UNAVAILABLE)
    return AgentError(f"model call failed ({error_type}): {message}", failure)


def assistant_message(response: dict[str, Any]) -> dict[str, Any]:
    """The assistant message of a chat completion, or an `AgentError` if the response has none."""
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise AgentError("the model's response has no message", ModelFailure.BAD_RESPONSE) from None
    if not isinstance(message, dict):
        raise AgentError("the model's response message is malformed", ModelFailure.BAD_RESPONSE)
    return message


def message_text(message: dict[str, Any]) -> str:
    """The text of an assistant message that must answer in words."""
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        raise AgentError("the model returned an empty answer", ModelFailure.BAD_RESPONSE)
    return content
