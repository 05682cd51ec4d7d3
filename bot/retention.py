"""Retention: with `PIXELBOT_RETENTION_DAYS`, what is older is deleted once a day, everywhere.

A daemon thread sweeps at start (after a short pause, so the first answers go first) and then every
`SWEEP_EVERY`: each channel's memory (messages with their model calls and votes, which live on the
same rows) and recall index entries, then the inbox's finished requests. Each channel is one job on
the storage thread, so the sweep never holds up answers for longer than one channel's delete. Without
the setting nothing is ever deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from bot.audit import RETENTION, Audit
from bot.channels import ChannelAgents, ChannelKey
from bot.inbox import Inbox

logger = logging.getLogger(__name__)

SWEEP_EVERY = timedelta(days=1)
FIRST_SWEEP_AFTER = timedelta(minutes=1)


class Retention:
    """Deletes what is older than `days` days, daily (`start`), or once (`sweep`)."""

    def __init__(
        self,
        days: int,
        agents: ChannelAgents,
        list_channels: Callable[[], list[ChannelKey]],
        inbox: Inbox,
        storage: Executor,
        audit: Audit | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.days, self._agents, self._list_channels = days, agents, list_channels
        self._inbox, self._storage, self._audit, self._clock = inbox, storage, audit, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixelbot-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sweep(self) -> dict[str, int]:
        """Delete everything older than the retention period now; deleted rows by place."""
        cutoff = self._clock() - timedelta(days=self.days)
        deleted: dict[str, int] = {}
        for key in self._storage.submit(self._list_channels).result():
            count = self._storage.submit(self._forget, key, cutoff).result()
            if count:
                deleted[key.channel_id] = count
        deleted["inbox"] = self._inbox.purge_before(cutoff)
        logger.info("retention (%d days): deleted %s", self.days, deleted)
        if self._audit is not None and any(deleted.values()):
            details = {"days": self.days, "before": cutoff.isoformat(), "deleted": deleted}
            self._audit.record("pixelbot", RETENTION, "", details)
        return deleted

    def _forget(self, key: ChannelKey, cutoff: datetime) -> int:
        return self._agents.get(key).forget_before(cutoff)

    def _run(self) -> None:
        wait = FIRST_SWEEP_AFTER
        while not self._stop.wait(wait.total_seconds()):
            try:
                self.sweep()
            except Exception:
                logger.exception("retention sweep failed; trying again at the next one")
            wait = SWEEP_EVERY
