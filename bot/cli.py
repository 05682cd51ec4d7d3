"""The `pixelbot` command line (click): serve the bot, and the admins' storage commands.

Every `PixelbotError` (bad configuration, a tool module that won't load, a token Slack refuses, an
unknown channel) ends a command the same way: one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import PixelbotError
from bot.settings import REQUIRED, Settings

if TYPE_CHECKING:
    from bot.channels import ChannelKey

ERROR_EXIT = 2


class CommandError(PixelbotError):
    """A command can't do what was asked (unknown channel, unwritable output); the message says why."""


class _Commands(click.Group):
    """Click group that turns the project's exceptions into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PixelbotError as error:
            click.echo(f"pixelbot: {error}", err=True)
            ctx.exit(ERROR_EXIT)


def load_settings(required: tuple[str, ...] = REQUIRED) -> Settings:
    """Settings from the environment (raises `ConfigError`, which ends the command with status 2)."""
    return Settings.from_env(required=required)


def open_storage() -> None:
    """Point Pixeltable at the configured storage, for commands that don't talk to Slack."""
    from agent.runtime import configure_pixeltable

    load_settings(required=()).export_to_environment()
    configure_pixeltable()


@click.group(cls=_Commands)
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def main(log_level: str) -> None:
    """pixelbot: a Slack bot where every channel has its own Pixeltable agent."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
def serve() -> None:
    """Run the bot: HTTP on $PORT, or Socket Mode when SLACK_APP_TOKEN is set."""
    settings = load_settings()
    from bot.app import create_bot
    from bot.server import serve_http, serve_socket_mode

    bot = create_bot(settings)
    if settings.socket_mode:
        serve_socket_mode(bot)
    else:
        serve_http(bot)


@main.command()
def channels() -> None:
    """List the channels that have agents, with their message counts."""
    open_storage()
    from agent.store import existing_memory
    from bot.channels import channels_with_agents

    click.echo(f"{'TEAM':<14}{'CHANNEL':<14}{'MESSAGES':>10}")
    for key in channels_with_agents():
        memory = existing_memory(key.agent_name)
        click.echo(f"{key.team_id:<14}{key.channel_id:<14}{memory.count() if memory else 0:>10,}")


@main.command()
@click.option("--channel", "channel_id", required=True, help="Slack channel ID, e.g. C0123ABCD.")
@click.option("--team", "team_id", help="Workspace ID; needed only if several workspaces have that channel.")
@click.option("--format", "export_format", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write ('-' for stdout).")
@click.option("--since", type=click.DateTime(), help="Only messages from this UTC date/time on.")
def export(
    channel_id: str, team_id: str | None, export_format: str, output: Path | None, since: datetime | None
) -> None:
    """Export one channel's memory to a file."""
    open_storage()
    from agent.export import ExportFormat, export_bytes, memory_snapshot
    from agent.store import existing_memory

    key = _find_channel(channel_id.upper(), team_id.upper() if team_id else None)
    memory = existing_memory(key.agent_name)
    assert memory is not None
    output = output or Path(f"pixelbot-{key.channel_id}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{export_format}")
    if output != Path("-") and not output.parent.is_dir():
        raise CommandError(f"Cannot write {output}: the directory {output.parent} does not exist.")
    frame = memory_snapshot(memory, since.replace(tzinfo=UTC) if since else None)
    payload = export_bytes(frame, ExportFormat(export_format))
    if output == Path("-"):
        sys.stdout.buffer.write(payload)
        return
    try:
        output.write_bytes(payload)
    except OSError as error:
        raise CommandError(f"Cannot write {output}: {error.strerror}.") from None
    click.echo(f"Wrote {len(frame):,} messages of {key.team_id}/{key.channel_id} to {output}", err=True)


def _find_channel(channel_id: str, team_id: str | None) -> ChannelKey:
    from bot.channels import channels_with_agents

    in_any_team = [key for key in channels_with_agents() if key.channel_id == channel_id]
    matches = [key for key in in_any_team if team_id is None or key.team_id == team_id]
    if not matches and in_any_team:
        teams = ", ".join(key.team_id for key in in_any_team)
        raise CommandError(f"Channel {channel_id} has no agent in workspace {team_id}; it has one in {teams}.")
    if not matches:
        raise CommandError(f"No agent for channel {channel_id}. `pixelbot channels` lists them.")
    if len(matches) > 1:
        teams = ", ".join(key.team_id for key in matches)
        raise CommandError(f"Channel {channel_id} exists in several workspaces ({teams}); pass --team.")
    return matches[0]
