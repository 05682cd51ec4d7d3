"""The Pixeltable agent: chat with memory and multi-step tool use, durable and re-openable."""

from agent.runtime import close_file_server, quiet_warnings

quiet_warnings()
close_file_server()  # before anything can initialise Pixeltable: see its docstring

from agent.agent import Agent, Answer, Request, TurnKind  # noqa: E402
from agent.context import ContextLimits  # noqa: E402
from agent.errors import (  # noqa: E402
    AgentError,
    ConfigError,
    ModelFailure,
    NoToolsError,
    PixelbotError,
    StorageError,
)

__all__ = [
    "Agent",
    "AgentError",
    "Answer",
    "ConfigError",
    "ContextLimits",
    "ModelFailure",
    "NoToolsError",
    "PixelbotError",
    "Request",
    "StorageError",
    "TurnKind",
]
