"""The `pixelbot` command line (click): serve the bot, and the admins' storage commands.

Every `PixelbotError` (bad configuration, a tool module that won't load, a token Slack refuses, an
unknown channel) ends a command the same way: one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import PixelbotError
from bot.settings import REQUIRED, Settings

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from concurrent.futures import ThreadPoolExecutor
    from typing import TextIO

    from agent import Agent
    from agent.recall import MemoryItem, Recall
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


def open_storage() -> Settings:
    """Point Pixeltable at the configured storage, for commands that don't talk to Slack; the settings."""
    from agent.runtime import configure_pixeltable

    settings = load_settings(required=())
    settings.export_to_environment()
    configure_pixeltable()
    return settings


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
    """List the channels that have agents, with their message counts and 👍/👎 votes."""
    open_storage()
    from agent.store import existing_memory, feedback_counts
    from bot.channels import channels_with_agents

    click.echo(f"{'TEAM':<14}{'CHANNEL':<14}{'MESSAGES':>10}{'👍':>6}{'👎':>6}")
    for key in channels_with_agents():
        memory = existing_memory(key.agent_name)
        good, bad = feedback_counts(memory) if memory else (0, 0)
        count = memory.count() if memory else 0
        click.echo(f"{key.team_id:<14}{key.channel_id:<14}{count:>10,}{good:>6}{bad:>6}")


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


@main.command("import")
@click.option("--from", "source", required=True, type=click.Path(path_type=Path), help="Slack export: folder or .zip.")
@click.option("--channel", "channels", multiple=True, help="Only this channel (ID or name); repeatable.")
@click.option("--team", "team_id", help="Workspace ID the export is of; needed unless storage knows one only.")
def import_command(source: Path, channels: tuple[str, ...], team_id: str | None) -> None:
    """Import a Slack workspace export into the channels' memories (each message once)."""
    from agent.slack_export import open_export
    from bot.importing import import_export

    export = open_export(source)  # a bad path or a folder that is no export ends here, before storage
    settings = open_storage()
    team = _import_team(team_id)
    total = export.count(channels or None)
    with _offline_recall(settings) as (recall, storage):
        with click.progressbar(length=total, label="Importing", file=sys.stderr) as bar:
            agent_for = partial(_context_agent, settings, recall)
            summary = import_export(export, team, agent_for, storage, channels or None, bar.update)
        if recall is not None:
            click.echo("Indexing for recall…", err=True)
            recall.indexer.wait_idle(3_600)
    for skipped in summary.skipped[:20]:
        click.echo(f"skipped {skipped.where}: {skipped.why}", err=True)
    if len(summary.skipped) > 20:
        click.echo(f"… and {len(summary.skipped) - 20} more skipped", err=True)
    click.echo(summary.line())


@main.command()
@click.option("--channel", "channel_id", required=True, help="Slack channel ID, e.g. C0123ABCD.")
@click.option("--team", "team_id", help="Workspace ID; needed only if several workspaces have that channel.")
@click.option("--query", help="One question.")
@click.option("--queries", type=click.File("r"), help='File of JSON lines {"query": ...} ("-" for stdin).')
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 100), help="Results per query.")
@click.option("--format", "output_format", type=click.Choice(["jsonl", "table"]), default="jsonl", show_default=True)
def recall(
    channel_id: str, team_id: str | None, query: str | None, queries: TextIO | None, k: int, output_format: str
) -> None:
    """Print what the channel's agent would recall for each query, best first."""
    if query is not None and queries is None:
        questions = [query]
    elif queries is not None and query is None:
        questions = _read_queries(queries)
    else:
        raise CommandError("Give exactly one of --query TEXT and --queries FILE.")
    settings = open_storage()
    if not settings.recall:
        raise CommandError("Recall is off (PIXELBOT_RECALL=false).")
    key = _find_channel(channel_id.upper(), team_id.upper() if team_id else None)
    from agent.loop import run_sync

    with _offline_recall(settings, k=k) as (engine, storage):
        assert engine is not None
        storage.submit(engine.table, key.agent_name).result()  # an agent from before recall is indexed first
        engine.indexer.wait_idle(3_600)
        vectors = run_sync(engine.embedder.embed(questions)) if questions else []
        for question, vector in zip(questions, vectors, strict=True):
            items = storage.submit(engine.search, key.agent_name, question, vector, set()).result()
            _print_recalled(question, items, output_format)


def _read_queries(lines: Iterable[str]) -> list[str]:
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            questions.append(str(record["query"]))
        except (ValueError, KeyError, TypeError):
            raise CommandError(f'--queries line {number} is not a JSON object with a "query".') from None
    return questions


def _print_recalled(question: str, items: list[MemoryItem], output_format: str) -> None:
    results = [
        {"ts": i.ts, "thread_ts": i.thread_ts, "user": i.user, "role": i.role, "text": i.text, "score": i.score}
        for i in items
    ]
    if output_format == "jsonl":
        click.echo(json.dumps({"query": question, "results": results}, ensure_ascii=False))
        return
    click.echo(f"# {question}")
    for rank, result in enumerate(results, start=1):
        text = " ".join(str(result["text"]).split())[:100]
        click.echo(f"{rank:>3}  {result['score']:.3f}  {result['ts'] or '-':<18} {result['user'] or '-':<12} {text}")


@contextlib.contextmanager
def _offline_recall(settings: Settings, k: int | None = None) -> Iterator[tuple[Recall | None, ThreadPoolExecutor]]:
    """Recall for a command run beside (or without) the bot (storage opened already): its own storage
    thread, the embedding model probed; (None, storage) when recall is off. Both stop with the block."""
    from concurrent.futures import ThreadPoolExecutor

    from agent.loop import background_loop
    from agent.recall import Embedder, Recall, RecallLimits

    storage = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelbot-storage")
    recall: Recall | None = None
    try:
        if settings.recall:
            embedder = Embedder(settings.embeddings)
            embedder.probe()
            limits = RecallLimits(k=k or RecallLimits().k, start_after=0)  # asked for: index whatever there is
            recall = Recall(embedder, storage, background_loop(), limits)
        yield recall, storage
    finally:
        if recall is not None:
            recall.close()  # shuts `storage` down too
        else:
            storage.shutdown(wait=True)


def _context_agent(settings: Settings, recall: Recall | None, key: ChannelKey) -> Agent:
    from agent import Agent

    return Agent(key.agent_name, settings.system_prompt, model=settings.model, recall=recall)


def _import_team(team_id: str | None) -> str:
    if team_id:
        return team_id.upper()
    from bot.channels import channels_with_agents

    teams = sorted({key.team_id for key in channels_with_agents()})
    if len(teams) == 1:
        return teams[0]
    known = f" (storage has {', '.join(teams)})" if teams else ""
    raise CommandError(f"Pass --team: the export does not say which workspace it is of{known}.")
