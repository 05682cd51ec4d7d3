"""The Pixeltable agent: chat with memory and multi-step tool use, durable and re-openable."""

from agent.agent import Agent, Answer, TurnKind
from agent.context import ContextLimits
from agent.errors import AgentError, ConfigError, ModelFailure, PixelbotError

__all__ = [
    "Agent",
    "AgentError",
    "Answer",
    "ConfigError",
    "ContextLimits",
    "ModelFailure",
    "PixelbotError",
    "TurnKind",
]
