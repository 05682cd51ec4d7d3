"""Importing a Slack workspace export into the matching channels' memories.

Each exported message becomes a context message of its channel's agent (`Agent.absorb`, kind
"imported"), keyed by its Slack ts, so importing the same export twice stores every message once;
recall indexes them in batches, and the import waits for that before it reports.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from agent import Agent
from agent.agent import ChannelMessage
from agent.slack_export import ExportedMessage, Skipped, SlackExport
from bot.channels import ChannelKey

BATCH = 500  # messages per insert
INDEX_WAIT = 3_600.0  # seconds the import waits for recall to index what it stored


@dataclass
class ImportSummary:
    """What an import did, per channel: messages read, and how many were new."""

    read: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def line(self) -> str:
        read, stored = sum(self.read.values()), sum(self.stored.values())
        return (
            f"Imported {stored:,} new message(s) of {read:,} read, into {len(self.read)} channel(s); "
            f"{read - stored:,} were stored already; {len(self.skipped)} skipped."
        )


def import_export(
    export: SlackExport,
    team_id: str,
    agent_for: Callable[[ChannelKey], Agent],
    storage: Executor,
    channels: Collection[str] | None = None,
    progress: Callable[[int], None] = lambda _: None,
) -> ImportSummary:
    """Store the export's messages (of `channels`, or all) in their channels' memories; `progress`
    is told how many messages each batch handled. Pixeltable work runs on `storage`."""
    summary = ImportSummary()
    for channel_id, batch in _batches(export.messages(channels)):
        agent = agent_for(ChannelKey(team_id, channel_id))
        stored = storage.submit(agent.absorb, [_context(message) for message in batch]).result()
        summary.read[channel_id] = summary.read.get(channel_id, 0) + len(batch)
        summary.stored[channel_id] = summary.stored.get(channel_id, 0) + stored
        progress(len(batch))
    summary.skipped = list(export.skipped)
    return summary


def _batches(messages: Iterator[ExportedMessage]) -> Iterator[tuple[str, list[ExportedMessage]]]:
    for channel_id, of_channel in itertools.groupby(messages, key=lambda message: message.channel_id):
        iterator = iter(of_channel)
        while batch := list(itertools.islice(iterator, BATCH)):
            yield channel_id, batch


def _context(message: ExportedMessage) -> ChannelMessage:
    return ChannelMessage(
        message.ts, message.text, message.user, message.at, message.thread_ts, "imported", message.user_name
    )
