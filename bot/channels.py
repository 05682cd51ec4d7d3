"""One agent per Slack channel, in its own Pixeltable directory, created on first use and cached.

Directory names come from the workspace and channel IDs (`pixelbot.t0001_c0001`), so a channel's
agent can only ever read its own memory.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agent import Agent
from agent.store import agent_names

AGENTS_DIR = "pixelbot"
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")


@dataclass(frozen=True)
class ChannelKey:
    """A channel in a workspace."""

    team_id: str
    channel_id: str

    def __post_init__(self) -> None:
        for value in (self.team_id, self.channel_id):
            if not _SLACK_ID.match(value):
                raise ValueError(f"not a Slack ID: {value!r}")

    @property
    def agent_name(self) -> str:
        return f"{AGENTS_DIR}.{self.team_id.lower()}_{self.channel_id.lower()}"

    @classmethod
    def from_agent_name(cls, name: str) -> ChannelKey:
        team_id, channel_id = name.rsplit(".", 1)[-1].rsplit("/", 1)[-1].split("_", 1)
        return cls(team_id.upper(), channel_id.upper())


def channels_with_agents() -> list[ChannelKey]:
    """Every channel that has an agent in storage."""
    return [ChannelKey.from_agent_name(name) for name in agent_names(AGENTS_DIR)]


AgentFactory = Callable[[str], Agent]
DEFAULT_OPEN_AGENTS = 500


class ChannelAgents:
    """The open channel agents, least recently used evicted beyond `capacity` and reopened on demand.

    Opening an existing agent is a few catalog lookups, so a workspace with thousands of channels
    keeps the busy ones open and pays that again for the rest instead of holding every agent forever.
    """

    def __init__(self, factory: AgentFactory, capacity: int = DEFAULT_OPEN_AGENTS) -> None:
        self._factory = factory
        self._capacity = capacity
        self._agents: OrderedDict[ChannelKey, Agent] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, key: ChannelKey) -> Agent | None:
        """The channel's agent if it is open (no storage involved), else None."""
        with self._lock:
            agent = self._agents.get(key)
            if agent is not None:
                self._agents.move_to_end(key)
            return agent

    def get(self, key: ChannelKey) -> Agent:
        """The channel's agent, opened if need be (its tables are created with its first stored turn)."""
        agent = self.cached(key)
        if agent is not None:
            return agent
        agent = self._factory(key.agent_name)
        with self._lock:
            agent = self._agents.setdefault(key, agent)
            while len(self._agents) > self._capacity:
                self._agents.popitem(last=False)
        return agent

    def __len__(self) -> int:
        return len(self._agents)
