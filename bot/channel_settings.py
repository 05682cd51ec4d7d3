"""Each channel's own settings over the bot's: what its agent uses, and changing them.

A channel may add instructions to the system prompt, choose a model from `PIXELBOT_MODELS`, switch
tools off and keep its memory for a number of days of its own (`agent.channel_config` stores them in
the channel's Pixeltable directory, with who changed what and when). Whatever a channel has not
chosen follows the bot's configuration, so a new `PIXELBOT_MODEL`, system prompt or tool reaches
every channel at the next start.

`ChannelSettings` is the one entry point: the agent factory asks it to configure each agent it opens,
the settings modal (`bot.settings_modal`) validates and applies changes through it, and retention
asks it how long each channel keeps its memory.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from agent import Agent
from agent.channel_config import ChannelConfig, ConfigChange, current_config, save_config
from agent.toolbox import Toolbox
from bot.audit import SETTINGS, Audit, AuditEntry
from bot.channels import ChannelAgents, ChannelKey

logger = logging.getLogger(__name__)

MAX_INSTRUCTIONS = 2000  # characters a channel may add to the system prompt
MAX_RETENTION_DAYS = 36_500
FOLLOW_EVERY = 5.0  # seconds another process's settings change may take to reach this one
INSTRUCTIONS_HEADING = "Instructions from this channel's members:"


class SettingsError(ValueError):
    """A settings change that can't be applied; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Defaults:
    """The bot's configuration, which a channel's settings add to or narrow."""

    system_prompt: str
    model: str
    models: tuple[str, ...]  # those a channel may choose (the default among them)
    toolbox: Toolbox | None  # every configured tool
    retention_days: int | None = None

    @property
    def tool_names(self) -> list[str]:
        return self.toolbox.names if self.toolbox is not None else []


class ChannelSettings:
    """The settings of every channel, read once per channel and cached; changes go to storage first."""

    def __init__(self, defaults: Defaults, audit: Audit | None = None) -> None:
        self.defaults = defaults
        self._audit = audit
        self._known: dict[ChannelKey, ChannelConfig] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    # -- what is in force ------------------------------------------------------------------------------
    def config(self, key: ChannelKey, stored: bool = True) -> ChannelConfig:
        """The channel's settings (storage is read once per channel; `stored=False`: it has none yet)."""
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        config = current_config(key.agent_name) if stored else ChannelConfig()
        with self._lock:
            return self._known.setdefault(key, config)

    def configure(self, agent: Agent) -> Agent:
        """Give a freshly opened agent its channel's settings over the bot's (a new channel's agent has
        none to read)."""
        key = ChannelKey.from_agent_name(agent.name)
        self._apply(agent, self.config(key, stored=agent.exists))
        return agent

    def retention_days(self, key: ChannelKey) -> int | None:
        """How many days the channel keeps its memory: its own choice, else `PIXELBOT_RETENTION_DAYS`."""
        return self.config(key).retention_days or self.defaults.retention_days

    def effective_model(self, config: ChannelConfig) -> str:
        """The model the channel uses: its choice while that is still allowed, else the default."""
        if config.model and config.model not in self.defaults.models:
            logger.warning("model %r is no longer in PIXELBOT_MODELS; using %s", config.model, self.defaults.model)
            return self.defaults.model
        return config.model or self.defaults.model

    def system_prompt(self, config: ChannelConfig) -> str:
        if not config.instructions:
            return self.defaults.system_prompt
        return f"{self.defaults.system_prompt}\n\n{INSTRUCTIONS_HEADING}\n{config.instructions}"

    def _apply(self, agent: Agent, config: ChannelConfig) -> None:
        toolbox = self.defaults.toolbox
        if toolbox is not None and config.disabled_tools:
            toolbox = toolbox.without(config.disabled_tools)
        agent.reconfigure(system_prompt=self.system_prompt(config), model=self.effective_model(config), toolbox=toolbox)

    # -- changing them --------------------------------------------------------------------------------
    def validated(
        self, key: ChannelKey, instructions: str, model: str, enabled_tools: list[str] | None, retention: str
    ) -> ChannelConfig:
        """The settings a form asked for, as stored: `model` "" for the default, `enabled_tools` None
        to leave the channel's tools as they are, `retention` as typed ("" for the default). Raises
        `SettingsError` naming every field that is wrong, so nothing is half-applied."""
        errors: dict[str, str] = {}
        instructions = instructions.strip()
        if len(instructions) > MAX_INSTRUCTIONS:
            errors["instructions"] = f"At most {MAX_INSTRUCTIONS:,} characters, please ({len(instructions):,} now)."
        if model and model not in self.defaults.models:
            errors["model"] = f"{model!r} is not one of the allowed models: {', '.join(self.defaults.models)}."
        known = set(self.defaults.tool_names)
        unknown = sorted(set(enabled_tools or ()) - known)
        if unknown:
            errors["tools"] = f"No such tool: {', '.join(unknown)}."
        days = _days(retention.strip(), errors)
        if errors:
            raise SettingsError(errors)
        if enabled_tools is None:  # the form had no tools (none configured): keep what is known, read nothing
            with self._lock:
                kept = self._known.get(key, ChannelConfig()).disabled_tools
            disabled = kept
        else:
            disabled = frozenset(known - set(enabled_tools))
        return ChannelConfig(instructions, model if model != self.defaults.model else "", disabled, days)

    def change(
        self, key: ChannelKey, config: ChannelConfig, user: str, agent: Agent, also: dict[str, Any]
    ) -> ConfigChange | None:
        """Store `config` as the channel's settings (recorded in the audit first: what can't be recorded
        isn't done) and apply it to the channel's `agent`; None if nothing changed. `also`: changes kept
        elsewhere but made in the same submission (listening), recorded with these. Pixeltable work:
        run it on the storage thread.

        The agent's tables are made first if it has none: an agent without tables is taken for a new
        channel when it is opened, and its settings are not looked for."""
        before = self.config(key)
        changes = config.changes_from(before) | also
        if not changes:
            return None
        if self._audit is not None:
            self._audit.record(user, SETTINGS, key, {"changes": changes, "config": config.as_json()})
        agent.tables  # noqa: B018  (made if missing)
        change = save_config(key.agent_name, config, user, changes)
        with self._lock:
            self._known[key] = config
        self._apply(agent, config)
        logger.info("settings of %s changed by %s: %s", key.channel_id, user, ", ".join(changes))
        return change

    def with_defaults_named(self, config: ChannelConfig) -> dict[str, str]:
        """The settings in words, each with what it falls back to (for `pixelbot channels --verbose`)."""
        days = config.retention_days or self.defaults.retention_days
        off = sorted(config.disabled_tools & set(self.defaults.tool_names))
        return {
            "model": self.effective_model(config) + ("" if config.model else " (default)"),
            "instructions": config.instructions or "(none)",
            "tools off": ", ".join(off) or "(none)",
            "retention": (f"{days} days" if days else "keep everything")
            + ("" if config.retention_days else " (default)"),
        }

    def follow(self, agents: ChannelAgents, storage: Executor, every: float = FOLLOW_EVERY) -> None:
        """With several processes on one database: every `every` seconds, look in the audit for
        settings changed by any process, and apply them to the agents open here. Until `stop`."""
        if self._audit is None:
            return
        audit, seen = self._audit, self._audit.newest()

        def run() -> None:
            nonlocal seen
            while not self._stopped.wait(every):
                try:
                    seen, entries = audit.since(SETTINGS, seen)
                    for entry in entries:
                        storage.submit(self._take, entry, agents).result()
                except Exception:
                    logger.exception("could not follow settings changes; trying again")

        threading.Thread(target=run, name="pixelbot-settings", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _take(self, entry: AuditEntry, agents: ChannelAgents) -> None:
        """Another process's change: the entry carries the settings in force after it (its settings
        row may not be visible yet when the entry is)."""
        if "/" not in entry.channel or "config" not in entry.details:
            return
        key = ChannelKey(*entry.channel.split("/", 1))
        config = ChannelConfig.from_json(entry.details["config"])
        with self._lock:
            self._known[key] = config
        agent = agents.cached(key)
        if agent is not None:
            self._apply(agent, config)


def _days(raw: str, errors: dict[str, str]) -> int | None:
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        errors["retention"] = "A whole number of days, please (or leave it empty to follow the workspace)."
        return None
    if not 1 <= days <= MAX_RETENTION_DAYS:
        errors["retention"] = f"Between 1 and {MAX_RETENTION_DAYS:,} days, please (or leave it empty)."
        return None
    return days
