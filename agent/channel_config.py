"""An agent's own configuration, chosen by its channel: instructions, model, disabled tools, retention.

Kept in the agent's Pixeltable directory as `<name>.settings`, one row per change, never updated:
`at`, `changed_by`, `settings` (everything in force after the change) and `changes` (each field that
changed, from what to what). The newest row is what is in force; the rows before it say who changed
what and when. An agent without the table follows the bot's configuration in everything.

The table is made with the first change, so that a channel nobody configured costs nothing, and a
brand-new channel (no directory yet) is never even looked up.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pixeltable as pxt

from agent.store import creating

SETTINGS_SCHEMA: dict[str, Any] = {
    "at": pxt.Timestamp,
    "changed_by": pxt.String,
    "settings": pxt.Json,
    "changes": pxt.Json,
}


@dataclass(frozen=True)
class ChannelConfig:
    """What a channel chose; each field's empty value means "as the bot is configured"."""

    instructions: str = ""  # added to the system prompt
    model: str = ""
    disabled_tools: frozenset[str] = frozenset()  # disabled, not enabled: a tool added later reaches every channel
    retention_days: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "instructions": self.instructions,
            "model": self.model,
            "disabled_tools": sorted(self.disabled_tools),
            "retention_days": self.retention_days,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelConfig:
        """Tolerant of rows written by other versions: unknown fields are ignored, missing ones default."""
        days = data.get("retention_days")
        return cls(
            instructions=str(data.get("instructions") or ""),
            model=str(data.get("model") or ""),
            disabled_tools=frozenset(str(name) for name in data.get("disabled_tools") or ()),
            retention_days=days if isinstance(days, int) and days > 0 else None,
        )

    def changes_from(self, before: ChannelConfig) -> dict[str, dict[str, Any]]:
        """Each field that differs from `before`: {"field": {"from": old, "to": new}}."""
        old, new = before.as_json(), self.as_json()
        return {f.name: {"from": old[f.name], "to": new[f.name]} for f in fields(self) if old[f.name] != new[f.name]}


@dataclass(frozen=True)
class ConfigChange:
    """One row of the history."""

    at: datetime
    changed_by: str
    config: ChannelConfig
    changes: dict[str, Any] = field(default_factory=dict)


def _table(agent_name: str) -> pxt.Table | None:
    return pxt.get_table(f"{agent_name}.settings", if_not_exists="ignore")


def config_history(agent_name: str, limit: int = 20) -> list[ConfigChange]:
    """The newest `limit` changes of the agent's configuration, newest first (none if never changed)."""
    table = _table(agent_name)
    if table is None:
        return []
    rows = table.order_by(table.at, asc=False).limit(limit).collect()
    return [ConfigChange(r["at"], r["changed_by"], ChannelConfig.from_json(r["settings"]), r["changes"]) for r in rows]


def current_config(agent_name: str) -> ChannelConfig:
    """What is in force: the newest change, or the defaults."""
    history = config_history(agent_name, limit=1)
    return history[0].config if history else ChannelConfig()


def save_config(
    agent_name: str, config: ChannelConfig, changed_by: str, changes: dict[str, Any], at: datetime | None = None
) -> ConfigChange:
    """Append `config` as the agent's configuration (the table is made with the first change).

    `changes` is what the row records as changed: usually `config.changes_from(current)`, plus what
    is kept elsewhere but changed in the same submission (a channel's listening switch)."""
    table = _table(agent_name)
    if table is None:
        with creating():
            pxt.create_dir(agent_name, if_exists="ignore", parents=True)
            table = pxt.create_table(f"{agent_name}.settings", SETTINGS_SCHEMA, if_exists="ignore")
    change = ConfigChange(at or datetime.now(UTC), changed_by, config, changes)
    table.insert([{"at": change.at, "changed_by": changed_by, "settings": config.as_json(), "changes": changes}])
    return change
