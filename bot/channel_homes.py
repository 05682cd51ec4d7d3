"""One channel, one memory, whichever workspace its events come through.

A Slack Connect channel shared between organisations, or a channel of an Enterprise Grid org-wide
install, has one channel ID in every workspace that sees it, but its events (and commands, and
clicks) arrive with the team ID of the workspace they came through. Agents are keyed by the channel:
the first workspace a channel is seen through becomes its home (`<namespace>_channel_homes`, first
writer wins across processes), and the channel's memory, settings, listening switch and lease live
under the home's key (`ChannelKey(home, channel)`, directory `pixelbot.<home>_<channel>`). Answers
still go out with the token of the workspace the request came through (`InboxItem.team_id`).

Directories made before channels had homes are adopted as they are; a channel that has directories
under two teams (its events came through both) is merged into one at start (`ChannelHomes.adopt`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bot.channels import ChannelKey
from bot.database import create_tables
from bot.inbox import InboxItem

logger = logging.getLogger(__name__)


class ChannelHomes:
    """Each channel's home workspace, in the shared database, cached (a home never changes)."""

    def __init__(self, engine: sa.Engine, namespace: str = "pixelbot") -> None:
        self._engine = engine
        metadata = sa.MetaData()
        self.table = sa.Table(
            f"{namespace}_channel_homes",
            metadata,
            sa.Column("channel_id", sa.Text, primary_key=True),
            sa.Column("team_id", sa.Text, nullable=False),
            sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        )
        create_tables(engine, metadata)
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def home(self, team_id: str, channel_id: str) -> str:
        """The channel's home team: `team_id` if the channel is new. One statement the first time."""
        with self._lock:
            known = self._known.get(channel_id)
        if known is not None:
            return known
        insert = postgresql.insert(self.table).values(channel_id=channel_id, team_id=team_id, since=datetime.now(UTC))
        statement = insert.on_conflict_do_update(  # a no-op update, so that the existing row is returned
            index_elements=[self.table.c.channel_id], set_={"channel_id": insert.excluded.channel_id}
        ).returning(self.table.c.team_id)
        with self._engine.begin() as connection:  # once per channel and process: not worth a faster path
            home = str(connection.execute(statement).scalar_one())
        with self._lock:
            self._known[channel_id] = home
        return home

    def key(self, team_id: str, channel_id: str) -> ChannelKey:
        """The key of the channel's agent, for a request that came through `team_id`."""
        return ChannelKey(self.home(team_id, channel_id), channel_id)

    def homed(self, item: InboxItem) -> InboxItem:
        """`item`, naming its channel's home (so that its channel is the agent's key)."""
        return replace(item, home_team_id=self.home(item.team_id, item.channel_id))

    def adopt(self, existing: Iterable[ChannelKey]) -> list[tuple[ChannelKey, ChannelKey]]:
        """Give the channels that have agents their homes (a channel with a home keeps it; else its
        directory's team, the first by ID if it has several), in one statement, and say which
        directories are strays of a channel homed elsewhere: `(stray, home)` pairs, to be merged into
        the home's memory and removed (`Agent.take_memory_of`)."""
        keys = sorted(existing, key=lambda key: (key.channel_id, key.team_id))
        now = datetime.now(UTC)
        rows = [{"channel_id": key.channel_id, "team_id": key.team_id, "since": now} for key in keys]
        with self._engine.begin() as connection:
            if rows:
                connection.execute(postgresql.insert(self.table).values(rows).on_conflict_do_nothing())
            query = sa.select(self.table.c.channel_id, self.table.c.team_id)
            homes: dict[str, str] = dict(connection.execute(query).tuples().all())
        with self._lock:
            self._known.update(homes)
        return [
            (key, ChannelKey(homes[key.channel_id], key.channel_id))
            for key in keys
            if homes[key.channel_id] != key.team_id
        ]
