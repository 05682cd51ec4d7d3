"""The audit trail: who exported a channel's memory, who erased a user, and (later) who changed what.

One plain PostgreSQL table per namespace, `<namespace>_audit`, beside the inbox's (see `bot.database`):
`at`, `actor` (a Slack user ID, or the OS user running the command line), `action`, `channel`
("TEAM/CHANNEL", or "" for what concerns no one channel) and `details` (JSON). It is append-only:
this module only inserts and reads, and a trigger made with the table refuses UPDATE, DELETE and
TRUNCATE, so that a mistake (or a helpful script) cannot rewrite the record. Actions are free-form
words (`EXPORT`, `DELETE_USER`, and e.g. "settings" for a settings change), so that new kinds of
entry need no schema change.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from agent import StorageError
from bot.channels import ChannelKey
from bot.database import create_tables

EXPORT = "export"
DELETE_USER = "delete-user"
FORGET = "forget"  # /pixelbot forget thread|channel
RETENTION = "retention"  # a retention sweep that deleted something
UNINSTALL = "uninstall"  # a workspace uninstalled pixelbot, and its memory was deleted (PIXELBOT_ON_UNINSTALL)
SETTINGS = "settings"  # a channel's settings changed (`/pixelbot settings`)


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    actor: str
    action: str
    channel: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_json(self) -> str:
        """One JSON line: at (ISO 8601, UTC), actor, action, channel, details."""
        record = {"at": self.at.astimezone(UTC).isoformat(), "actor": self.actor, "action": self.action}
        return json.dumps(record | {"channel": self.channel, "details": self.details}, ensure_ascii=False)


def channel_label(key: ChannelKey) -> str:
    """How an entry names a channel: "TEAM/CHANNEL"."""
    return f"{key.team_id}/{key.channel_id}"


def os_actor() -> str:
    """The OS user running this process: the actor of what the command line does."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for the UID (a container without /etc/passwd entry)
        return "unknown"


def _table(namespace: str) -> tuple[sa.MetaData, sa.Table]:
    metadata = sa.MetaData()
    name = f"{namespace}_audit"
    table = sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False, index=True),
        sa.Column("channel", sa.Text, nullable=False, server_default=""),
        sa.Column("details", postgresql.JSONB, nullable=False, server_default="{}"),
    )
    # made in the same transaction as the table: two processes creating it at once can't leave one half-made
    refuse = sa.DDL(  # type: ignore[no-untyped-call]
        f'CREATE FUNCTION "{name}_append_only"() RETURNS trigger LANGUAGE plpgsql AS '
        "$$ BEGIN RAISE EXCEPTION 'the audit table is append-only'; END $$"
    )
    trigger = sa.DDL(  # type: ignore[no-untyped-call]
        f'CREATE TRIGGER "{name}_append_only" BEFORE UPDATE OR DELETE OR TRUNCATE ON "{name}" '
        f'FOR EACH STATEMENT EXECUTE FUNCTION "{name}_append_only"()'
    )
    sa.event.listen(table, "after_create", refuse)
    sa.event.listen(table, "after_create", trigger)
    return metadata, table


class Audit:
    """The namespace's audit table, created if missing."""

    def __init__(self, engine: sa.Engine, namespace: str = "pixelbot") -> None:
        self.engine = engine
        metadata, self.table = _table(namespace)
        try:
            create_tables(engine, metadata)
        except sa.exc.SQLAlchemyError as error:
            raise StorageError(f"cannot open the audit table {self.table.name}: {type(error).__name__}") from error

    def record(
        self, actor: str, action: str, channel: ChannelKey | str = "", details: dict[str, Any] | None = None
    ) -> AuditEntry:
        """Append one entry (`details` must be JSON-serialisable); raises `StorageError` if it could not
        be stored, so that a caller can refuse to do what it could not record."""
        label = channel_label(channel) if isinstance(channel, ChannelKey) else channel
        entry = AuditEntry(actor, action, label, dict(details or {}))
        row = {"at": entry.at, "actor": actor, "action": action, "channel": label, "details": entry.details}
        try:
            with self.engine.begin() as connection:
                connection.execute(self.table.insert().values(**row))
        except sa.exc.SQLAlchemyError as error:
            raise StorageError(f"could not record {action} in the audit: {type(error).__name__}") from error
        return entry

    def since(self, action: str, after: int) -> tuple[int, list[AuditEntry]]:
        """The entries of `action` recorded after the entry numbered `after`, oldest first, and the
        newest entry's number: how other processes learn what changed."""
        table = self.table
        query = sa.select(table).where((table.c.action == action) & (table.c.id > after)).order_by(table.c.id)
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query).mappings().all()
        except sa.exc.SQLAlchemyError as error:
            raise StorageError(f"could not read the audit: {type(error).__name__}") from error
        entries = [
            AuditEntry(row["actor"], row["action"], row["channel"], dict(row["details"] or {}), row["at"])
            for row in rows
        ]
        return (rows[-1]["id"] if rows else after), entries

    def newest(self) -> int:
        """The number of the newest entry (0 if none)."""
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.coalesce(sa.func.max(self.table.c.id), 0))).scalar_one())

    def entries(
        self, limit: int = 50, action: str | None = None, details: dict[str, Any] | None = None
    ) -> list[AuditEntry]:
        """The newest `limit` entries, newest first; only of `action`, and only those whose details
        contain `details` (JSON containment: `{"user": "U1"}` finds every entry about U1), if given."""
        table = self.table
        query = sa.select(table).order_by(table.c.at.desc(), table.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(table.c.action == action)
        if details:
            query = query.where(table.c.details.contains(details))
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query).mappings().all()
        except sa.exc.SQLAlchemyError as error:
            raise StorageError(f"could not read the audit: {type(error).__name__}") from error
        return [
            AuditEntry(row["actor"], row["action"], row["channel"], dict(row["details"] or {}), row["at"])
            for row in rows
        ]
