"""`/export-memory`: an admin gets the channel's memory as a file in a direct message.

Admins are the user IDs in `PIXELBOT_ADMINS` plus the workspace's admins and owners as `users.info`
reports them; the check runs on the server for every request. It runs after the acknowledgement, with
the export, on the exporter's own thread: `users.info` can take longer than the 3 s Slack waits for an
ack, and the answer (file or refusal) goes through the command's `response_url` either way. The file
goes to the admin's DM, never to the channel. Exports never hold up an answer. Every export is
recorded in the audit (`bot.audit`) before the file leaves; an export that can't be recorded fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from agent.export import ExportFormat, export_bytes, memory_snapshot
from agent.store import existing_memory
from bot.audit import EXPORT, Audit
from bot.channels import ChannelKey
from bot.replies import EXPORT_FAILED, EXPORT_SENT, NOT_ADMIN, NOTHING_TO_EXPORT
from bot.workspaces import ContextExecutor

logger = logging.getLogger(__name__)


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


def is_admin(client: WebClient, admins: frozenset[str], user: str, channel: ChannelKey) -> bool:
    """Listed in PIXELBOT_ADMINS, or an admin or owner, according to Slack, of the organisation the
    channel's memory belongs to (its home workspace, `bot.channel_homes`): in a channel shared with
    another organisation, that organisation's admins are admins there, not here."""
    if user in admins:
        return True
    try:
        profile = client.users_info(user=user)["user"]
    except SlackApiError as error:
        logger.warning("users.info failed for %s: %s", user, error.response.get("error"))
        return False
    if not _of_organisation(profile, channel.team_id):
        logger.warning("%s is not of %s, the organisation of %s", user, channel.team_id, channel.channel_id)
        return False
    return bool(profile.get("is_admin") or profile.get("is_owner") or profile.get("is_primary_owner"))


def _of_organisation(profile: dict[str, Any], team_id: str) -> bool:
    """Whether a user belongs to workspace `team_id` (directly, or as an Enterprise Grid member of it)."""
    if profile.get("team_id") == team_id:
        return True
    return team_id in ((profile.get("enterprise_user") or {}).get("teams") or ())


class Exporter:
    """Checks export rights and runs exports after the acknowledgement; the file goes to the admin's DM."""

    def __init__(self, client: WebClient, audit: Audit | None = None) -> None:
        """`audit`: where exports are recorded (without one, they are only logged)."""
        self.client = client
        self.audit = audit
        self._pool = ContextExecutor(max_workers=1, thread_name_prefix="pixelbot-export")  # in its workspace

    def submit(self, request: ExportRequest, admins: frozenset[str]) -> None:
        self._pool.submit(self.export, request, admins)

    def export(self, request: ExportRequest, admins: frozenset[str]) -> None:
        """Export if `request.user` is an admin; either way the user hears back through the response_url."""
        try:
            note = self._deliver(request) if self._may_export(request, admins) else NOT_ADMIN
        except Exception:
            logger.exception("export of %s failed", request.channel.agent_name)
            note = EXPORT_FAILED
        WebhookClient(request.response_url).send(response_type="ephemeral", text=note)

    def _may_export(self, request: ExportRequest, admins: frozenset[str]) -> bool:
        if is_admin(self.client, admins, request.user, request.channel):
            return True
        logger.warning("export refused: %s is not an admin", request.user)
        return False

    def _deliver(self, request: ExportRequest) -> str:
        memory = existing_memory(request.channel.agent_name)
        if memory is None:
            return NOTHING_TO_EXPORT
        frame = memory_snapshot(memory)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        filename = f"pixelbot-{request.channel.channel_id}-{stamp}.{request.export_format.value}"
        self._record(request, filename, len(frame))
        dm = self.client.conversations_open(users=request.user)["channel"]["id"]
        self.client.files_upload_v2(
            channel=dm,
            content=export_bytes(frame, request.export_format),
            filename=filename,
            title=f"Memory of <#{request.channel.channel_id}> ({len(frame)} messages)",
            initial_comment=f"Export of <#{request.channel.channel_id}>: {len(frame)} messages.",
        )
        return EXPORT_SENT.format(filename=filename, count=len(frame))

    def _record(self, request: ExportRequest, filename: str, count: int) -> None:
        details = {"format": request.export_format.value, "messages": count, "filename": filename, "via": "slack"}
        if self.audit is None:
            logger.warning("export of %s by %s is not audited (no audit table given)", request.channel, request.user)
            return
        self.audit.record(request.user, EXPORT, request.channel, details)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
