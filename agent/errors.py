"""The project's exceptions: few, so that the Slack layer can map each to a friendly message."""

from __future__ import annotations

from enum import StrEnum


class PixelbotError(Exception):
    """Base class of every error pixelbot raises on purpose."""


class ConfigError(PixelbotError):
    """The configuration is missing or invalid; raised at start-up, before serving."""


class StorageError(PixelbotError):
    """Storage (the database) is unreachable or refused a write; the request was not stored."""


class StorageTimeoutError(StorageError):
    """Storage did not answer in time: the write may still land later, so the request may yet be stored."""


class EmbeddingError(PixelbotError):
    """The embedding server did not embed (down, slow, or refusing): recall is skipped for now."""


class ModelFailure(StrEnum):
    """Why a model call failed, as much as the user needs to know."""

    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    BAD_RESPONSE = "bad_response"


class AgentError(PixelbotError):
    """The agent could not produce an answer. The user's message is already in memory."""

    def __init__(self, message: str, failure: ModelFailure = ModelFailure.UNAVAILABLE) -> None:
        super().__init__(message)
        self.failure = failure


class NoToolsError(AgentError):
    """`/tool` was asked of an agent that has no tools."""

    def __init__(self, message: str = "this agent has no tools") -> None:
        super().__init__(message, ModelFailure.REJECTED)
