"""`/export-memory`: an admin gets the channel's memory as a file in a direct message.

Admins are the user IDs in `PIXELBOT_ADMINS` plus the workspace's admins and owners as `users.info`
reports them; the check runs on the server for every request. The file goes to the admin's DM, never
to the channel. Exports run on their own thread, beside the answering workers, so they never hold up
an answer.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from agent.export import ExportFormat, export_bytes, memory_snapshot
from agent.store import existing_memory
from bot.channels import ChannelKey

logger = logging.getLogger(__name__)

EXPORT_USAGE = "Usage: `/export-memory [jsonl|csv|parquet]` (default: jsonl). Admins only."
NOT_ADMIN = "Sorry, only pixelbot admins can export a channel's memory."


@dataclass(frozen=True)
class ExportRequest:
    channel: ChannelKey
    user: str
    export_format: ExportFormat
    response_url: str


def parse_format(text: str) -> ExportFormat | None:
    """The requested format (`jsonl` when none is given), or None if it isn't one we write."""
    word = text.strip().lower() or ExportFormat.JSONL.value
    try:
        return ExportFormat(word)
    except ValueError:
        return None


def is_admin(client: WebClient, admins: frozenset[str], user: str) -> bool:
    """Listed in PIXELBOT_ADMINS, or a workspace admin or owner according to Slack."""
    if user in admins:
        return True
    try:
        profile = client.users_info(user=user)["user"]
    except SlackApiError as error:
        logger.warning("users.info failed for %s: %s", user, error.response.get("error"))
        return False
    return bool(profile.get("is_admin") or profile.get("is_owner") or profile.get("is_primary_owner"))


class Exporter:
    """Runs exports after the acknowledgement and delivers the file to the admin's DM."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelbot-export")

    def submit(self, request: ExportRequest) -> None:
        self._pool.submit(self.export, request)

    def export(self, request: ExportRequest) -> None:
        try:
            note = self._deliver(request)
        except Exception:
            logger.exception("export of %s failed", request.channel.agent_name)
            note = ":warning: The export failed; an admin can find the details in the logs."
        WebhookClient(request.response_url).send(response_type="ephemeral", text=note)

    def _deliver(self, request: ExportRequest) -> str:
        memory = existing_memory(request.channel.agent_name)
        if memory is None:
            return "This channel has no memory yet: nothing to export."
        frame = memory_snapshot(memory)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        filename = f"pixelbot-{request.channel.channel_id}-{stamp}.{request.export_format.value}"
        dm = self.client.conversations_open(users=request.user)["channel"]["id"]
        self.client.files_upload_v2(
            channel=dm,
            content=export_bytes(frame, request.export_format),
            filename=filename,
            title=f"Memory of <#{request.channel.channel_id}> ({len(frame)} messages)",
            initial_comment=f"Export of <#{request.channel.channel_id}>: {len(frame)} messages.",
        )
        return f"Sent `{filename}` ({len(frame)} messages) to your direct messages with me."

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
