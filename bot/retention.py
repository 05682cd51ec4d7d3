"""Retention: what is older than a channel's retention is deleted once a day, everywhere.

A channel keeps its memory for `PIXELBOT_RETENTION_DAYS`, or for the days it chose itself
(`/pixelbot settings`); without either nothing of it is ever deleted. A daemon thread sweeps at start
(after a short pause, so the first answers go first) and then every `SWEEP_EVERY`: each channel's
memory (messages with their model calls and votes, which live on the same rows), the files it was
shared (documents with their pieces, images), recall index entries and finished inbox requests, then
the inbox rows of every other channel by the workspace's retention. Each channel is one job on the
storage thread, so the sweep never holds up answers for longer than one channel's delete.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from bot.audit import RETENTION, Audit
from bot.channels import ChannelAgents, ChannelKey
from bot.files import SlackFiles
from bot.inbox import Inbox

logger = logging.getLogger(__name__)

SWEEP_EVERY = timedelta(days=1)
FIRST_SWEEP_AFTER = timedelta(minutes=1)


class Retention:
    """Deletes what is older than each channel's retention, daily (`start`), or once (`sweep`)."""

    def __init__(
        self,
        days: int | None,
        days_for: Callable[[ChannelKey], int | None],
        agents: ChannelAgents,
        list_channels: Callable[[], list[ChannelKey]],
        inbox: Inbox,
        storage: Executor,
        audit: Audit | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        files: SlackFiles | None = None,
    ) -> None:
        """`days`: the workspace's retention (None: keep); `days_for`: a channel's (its own, else
        `days`; it reads storage, so it runs on the storage thread)."""
        self.days, self._days_for, self._agents, self._list_channels = days, days_for, agents, list_channels
        self._inbox, self._storage, self._audit, self._clock = inbox, storage, audit, clock
        self._files = files  # the files channels shared go by the same rule
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixelbot-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sweep(self) -> dict[str, int]:
        """Delete everything older than its retention now; deleted rows by channel ID (and "inbox")."""
        now = self._clock()
        deleted: dict[str, int] = {}
        own: dict[ChannelKey, int] = {}
        inbox = 0
        for key in self._storage.submit(self._list_channels).result():
            days = self._storage.submit(self._days_for, key).result()
            if days is None:
                continue
            if days != self.days:
                own[key] = days
            cutoff = now - timedelta(days=days)
            count = self._storage.submit(self._forget, key, cutoff).result()
            inbox += self._inbox.purge_before(cutoff, channel=key)
            if count:
                deleted[key.channel_id] = count
        if self.days is not None:  # the rest of the inbox: channels without an agent, or without their own
            inbox += self._inbox.purge_before(now - timedelta(days=self.days), keep=set(own))
        deleted["inbox"] = inbox
        logger.info("retention (%s days): deleted %s", self.days or "keep", deleted)
        if self._audit is not None and any(deleted.values()):
            details = {"days": self.days, "own_days": {k.channel_id: d for k, d in own.items()}, "deleted": deleted}
            self._audit.record("pixelbot", RETENTION, "", details)
        return deleted

    def _forget(self, key: ChannelKey, cutoff: datetime) -> int:
        agent = self._agents.get(key)
        files = self._files.forget_before(agent, cutoff) if self._files is not None else 0
        return agent.forget_before(cutoff) + files

    def _run(self) -> None:
        wait = FIRST_SWEEP_AFTER
        while not self._stop.wait(wait.total_seconds()):
            try:
                self.sweep()
            except Exception:
                logger.exception("retention sweep failed; trying again at the next one")
            wait = SWEEP_EVERY
