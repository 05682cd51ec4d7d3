"""The `pixelbot` command line (click): serve the bot, and the admins' storage commands.

Every `PixelbotError` (bad configuration, a tool module that won't load, a token Slack refuses, an
unknown channel) ends a command the same way: one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import PixelbotError
from bot.log_format import configure_logging
from bot.settings import REQUIRED, Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Executor, ThreadPoolExecutor
    from typing import TextIO

    import pixeltable as pxt
    import sqlalchemy as sa

    from agent import Agent
    from agent.agent import Request
    from agent.governance import UserErasure
    from agent.recall import MemoryItem, Recall
    from bot.channel_homes import ChannelHomes
    from bot.channel_settings import ChannelSettings
    from bot.channels import ChannelKey
    from bot.listening import ListeningState

logger = logging.getLogger(__name__)

ERROR_EXIT = 2
CHAT_HELP = "`/tool <request>` lets the agent use its tools; `/quit` or Ctrl-D ends."
CHAT_INDEX_WAIT = 60.0  # seconds a chat waits at its end for recall to index its turns (else: the next start)
_PLAIN_ID = re.compile(r"^[A-Za-z0-9]+$")


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
    configure_logging(log_level, load_settings(required=()).log_format)  # PIXELBOT_LOG_FORMAT: text or json


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
@click.option("--verbose", "-v", is_flag=True, help="Also each channel's settings, listening, and their last change.")
def channels(verbose: bool) -> None:
    """List the channels that have agents, with their message counts and 👍/👎 votes."""
    settings = open_storage()
    from agent.store import existing_memory, feedback_counts
    from bot.channels import channels_with_agents

    click.echo(f"{'TEAM':<14}{'CHANNEL':<14}{'MESSAGES':>10}{'👍':>6}{'👎':>6}")
    keys = channels_with_agents()
    details = _channel_details(settings, keys) if verbose else None
    for key in keys:
        memory = existing_memory(key.agent_name)
        good, bad = feedback_counts(memory) if memory else (0, 0)
        count = memory.count() if memory else 0
        click.echo(f"{key.team_id:<14}{key.channel_id:<14}{count:>10,}{good:>6}{bad:>6}")
        for line in details(key) if details else ():
            click.echo(f"    {line}")


def _channel_details(settings: Settings, keys: list[ChannelKey]) -> Callable[[ChannelKey], list[str]]:
    """How to describe a channel: its settings in words (each with what it falls back to), its
    listening, and their last change."""
    from bot.listening import ListeningChannels

    channel_settings = _channel_settings(settings, _agent_tools(settings))
    with _bookkeeping() as engine:
        listening = ListeningChannels(engine, settings.namespace)
        states = {key: listening.state(key) for key in keys}
    return partial(_described, channel_settings, states)


def _described(
    channel_settings: ChannelSettings, states: dict[ChannelKey, ListeningState | None], key: ChannelKey
) -> list[str]:
    from agent.channel_config import config_history

    history = config_history(key.agent_name, limit=1)
    config = history[0].config if history else channel_settings.config(key, stored=False)
    lines = [f"{name}: {value}" for name, value in channel_settings.with_defaults_named(config).items()]
    state = states.get(key)
    if state is not None and state.on:
        lines.append(f"listening: on (since {state.changed_at:%Y-%m-%d}, by {state.changed_by})")
    else:
        lines.append("listening: off")
    if history:
        last = history[0]
        lines.append(f"changed {last.at:%Y-%m-%d %H:%M} UTC by {last.changed_by}: {', '.join(last.changes)}")
    return lines


def _channel_settings(settings: Settings, tools: pxt.func.Tools) -> ChannelSettings:
    from bot.app import channel_defaults
    from bot.channel_settings import ChannelSettings

    return ChannelSettings(channel_defaults(settings, tools))


@main.command()
@click.option("--channel", "channel_id", required=True, help="Slack channel ID, e.g. C0123ABCD.")
@click.option("--team", "team_id", help="Workspace ID; needed only if several workspaces have that channel.")
@click.option("--format", "export_format", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write ('-' for stdout).")
@click.option("--since", type=click.DateTime(), help="Only messages from this UTC date/time on.")
def export(
    channel_id: str, team_id: str | None, export_format: str, output: Path | None, since: datetime | None
) -> None:
    """Export one channel's memory to a file (recorded in the audit)."""
    settings = open_storage()
    from agent.export import ExportFormat, export_bytes, memory_snapshot
    from agent.store import existing_memory
    from bot.audit import EXPORT, Audit, os_actor

    key = _find_channel(channel_id.upper(), team_id.upper() if team_id else None)
    memory = existing_memory(key.agent_name)
    assert memory is not None
    output = output or Path(f"pixelbot-{key.channel_id}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{export_format}")
    if output != Path("-") and not output.parent.is_dir():
        raise CommandError(f"Cannot write {output}: the directory {output.parent} does not exist.")
    frame = memory_snapshot(memory, since.replace(tzinfo=UTC) if since else None)
    payload = export_bytes(frame, ExportFormat(export_format))
    details = {"format": export_format, "messages": len(frame), "output": str(output), "via": "cli"}
    details["since"] = since.replace(tzinfo=UTC).isoformat() if since else None
    with _bookkeeping() as engine:  # recorded before the data leaves: no export without its entry
        Audit(engine, settings.namespace).record(os_actor(), EXPORT, key, details)
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
    with _offline_recall(settings) as (recall, storage), _bookkeeping() as engine:
        with click.progressbar(length=total, label="Importing", file=sys.stderr) as bar:
            from bot.channel_homes import ChannelHomes

            homes = ChannelHomes(engine, settings.namespace)  # a shared channel's memory is under its home
            agent_for = partial(_context_agent, settings, recall, homes)
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
def _offline_recall(
    settings: Settings, k: int | None = None, start_after: int = 0
) -> Iterator[tuple[Recall | None, ThreadPoolExecutor]]:
    """Recall for a command run beside (or without) the bot (storage opened already): its own storage
    thread, the embedding model probed; (None, storage) when recall is off. Both stop with the block.
    `start_after` 0 (the default) indexes whatever there is; a chat passes the bot's setting."""
    from concurrent.futures import ThreadPoolExecutor

    from agent.loop import background_loop
    from agent.recall import Embedder, Recall, RecallLimits

    storage = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelbot-storage")
    recall: Recall | None = None
    try:
        if settings.recall:
            embedder = Embedder(settings.embeddings)
            embedder.probe()
            limits = RecallLimits(k=k or RecallLimits().k, start_after=start_after)
            recall = Recall(embedder, storage, background_loop(), limits)
        yield recall, storage
    finally:
        if recall is not None:
            recall.close()  # shuts `storage` down too
        else:
            storage.shutdown(wait=True)


def _context_agent(settings: Settings, recall: Recall | None, homes: ChannelHomes, key: ChannelKey) -> Agent:
    from agent import Agent

    home = homes.key(key.team_id, key.channel_id)
    return Agent(home.agent_name, settings.system_prompt, model=settings.model, recall=recall)


def _import_team(team_id: str | None) -> str:
    return _the_team(team_id, "the export does not say which workspace it is of")


def _the_team(team_id: str | None, why: str) -> str:
    """`team_id`, or the one workspace storage has agents of; else a `CommandError` saying `why` it is needed."""
    if team_id:
        return team_id.upper()
    from bot.channels import channels_with_agents

    teams = sorted({key.team_id for key in channels_with_agents()})
    if len(teams) == 1:
        return teams[0]
    known = f" (storage has {', '.join(teams)})" if teams else ""
    raise CommandError(f"Pass --team: {why}{known}.")


@contextlib.contextmanager
def _bookkeeping() -> Iterator[sa.Engine]:
    """An engine on the bot's plain tables (storage opened already), disposed of with the block."""
    from bot.database import bookkeeping_engine

    engine = bookkeeping_engine(pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


@main.command()
@click.option("--channel", "channel_id", required=True, help="Slack channel ID, e.g. C0123ABCD.")
@click.option("--team", "team_id", help="Workspace ID; needed only if several workspaces have that channel.")
def files(channel_id: str, team_id: str | None) -> None:
    """List the files a channel's agent knows: documents (with their pieces) and images."""
    settings = open_storage()
    from agent.knowledge import Knowledge

    key = _find_channel(channel_id.upper(), team_id.upper() if team_id else None)
    known = Knowledge(key.agent_name, settings.kept_files).files()
    if not known:
        click.echo(f"The agent of {key.team_id}/{key.channel_id} knows no files.", err=True)
        return
    click.echo(f"{'SHARED':<18}{'KIND':<10}{'SIZE':>10}{'PIECES':>8}  {'BY':<12}{'FILE':<14}NAME")
    for info in known:
        size = f"{info.size / 1000:,.0f} kB" if info.size >= 1000 else f"{info.size} B"
        pieces = str(info.chunks) if info.kind == "document" else "-"
        click.echo(
            f"{info.shared_at:%Y-%m-%d %H:%M}  {info.kind:<10}{size:>10}{pieces:>8}  {info.user:<12}{info.file_id:<14}"
            f"{info.name}"
        )


# -- chat ----------------------------------------------------------------------------------------------
@main.command()
@click.option("--channel", "channel_id", required=True, help="Slack channel ID, e.g. C0123ABCD.")
@click.option("--team", "team_id", help="Workspace ID; needed only if several workspaces have that channel.")
@click.option("--thread", "thread_ts", default="", help="Continue this thread (its ts); default: the top level.")
@click.option("--create", is_flag=True, help="Start an agent for the channel if it has none yet.")
def chat(channel_id: str, team_id: str | None, thread_ts: str, create: bool) -> None:
    """Talk with a channel's agent in the terminal; what you say is stored in its memory like a DM.

    Needs the model's settings (OPENAI_API_KEY, ...) and storage, not Slack's tokens."""
    settings = load_settings(required=("OPENAI_API_KEY",))
    settings.export_to_environment()
    from agent.runtime import configure_pixeltable

    configure_pixeltable()
    key = _chat_channel(channel_id.upper(), team_id.upper() if team_id else None, create)
    tools = _agent_tools(settings)  # a tool module that won't load ends the command here, before recall
    user = chat_user()
    with _offline_recall(settings, start_after=settings.recall_after) as (recall, storage):
        agent = _chat_agent(settings, recall, tools, key)
        new = "" if agent.exists else " (a new agent: its memory starts with this chat)"
        click.echo(f"Chatting with the agent of {key.team_id}/{key.channel_id} as {user}{new}. {CHAT_HELP}", err=True)
        _converse(agent, storage, user, thread_ts)
        if recall is not None and not recall.indexer.wait_idle(CHAT_INDEX_WAIT):
            click.echo("Recall has not indexed every turn yet; the next start of the bot does.", err=True)


def chat_user() -> str:
    """Who the chat's turns are stored as: "cli:" and the OS user."""
    from bot.audit import os_actor

    return f"cli:{os_actor()}"


def _chat_channel(channel_id: str, team_id: str | None, create: bool) -> ChannelKey:
    """The channel to chat with: one with an agent, or with `create` one without (made with its first turn)."""
    from bot.channels import ChannelKey, channels_with_agents

    in_any_team = [key for key in channels_with_agents() if key.channel_id == channel_id]
    matches = [key for key in in_any_team if team_id is None or key.team_id == team_id]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        teams = ", ".join(key.team_id for key in matches)
        raise CommandError(f"Channel {channel_id} exists in several workspaces ({teams}); pass --team.")
    if not create:
        where = f" in workspace {team_id}" if team_id else ""
        elsewhere = f" (it has one in {', '.join(key.team_id for key in in_any_team)})" if in_any_team else ""
        raise CommandError(f"Channel {channel_id} has no agent{where} yet{elsewhere}. Pass --create to start one.")
    team = _the_team(team_id, "which workspace is the new agent's channel in")
    try:
        return ChannelKey(team, channel_id)
    except ValueError:
        raise CommandError(f"Not a Slack workspace and channel ID: {team}/{channel_id}.") from None


def _agent_tools(settings: Settings) -> pxt.func.Tools:
    import pixeltable as pxt

    from tools import DEFAULT_TOOLS, load_tools

    return pxt.tools(*DEFAULT_TOOLS, *load_tools(settings.tool_modules))


def _chat_agent(settings: Settings, recall: Recall | None, tools: pxt.func.Tools, key: ChannelKey) -> Agent:
    """The channel's agent as the bot makes it, with the channel's settings, except that it reads each
    conversation from storage (the bot may be writing the same memory meanwhile)."""
    from agent import Agent, ContextLimits
    from bot.app import model_client

    agent = Agent(
        key.agent_name,
        settings.system_prompt,
        limits=ContextLimits(max_messages=settings.history),
        model_client=model_client(settings),
        recall=recall,
    )
    return _channel_settings(settings, tools).configure(agent)


def _converse(agent: Agent, storage: Executor, user: str, thread_ts: str) -> None:
    from agent.agent import Request, TurnKind

    for line in _typed_lines():
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        if text == "/help":
            click.echo(CHAT_HELP, err=True)
            continue
        kind = TurnKind.CHAT
        if text == "/tool" or text.startswith("/tool "):
            text, kind = text.removeprefix("/tool").strip(), TurnKind.TOOL
            if not text:
                click.echo("Usage: /tool <request>, for example: /tool what time is it in Tokyo?", err=True)
                continue
        click.echo(_answer(agent, storage, Request(text, kind, user, thread_ts)))
        click.echo()


def _typed_lines() -> Iterator[str]:
    """The lines typed (with line editing and a prompt in a terminal), until EOF or Ctrl-C."""
    stdin = sys.stdin
    interactive = stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    while True:
        try:
            line = input("you> ") if interactive else stdin.readline()
        except (EOFError, KeyboardInterrupt):
            if interactive:
                click.echo()
            return
        if not interactive and not line:
            return
        yield line


def _answer(agent: Agent, storage: Executor, request: Request) -> str:
    """One turn, as the bot runs it: memory read and stored on the storage thread, the model called
    in between. A failure is the bot's friendly message (the question is stored all the same)."""
    from agent import AgentError
    from agent.loop import run_sync
    from bot.replies import friendly_error

    try:
        turn = storage.submit(agent.prepare, request).result()
        outcome = run_sync(agent.think(turn))
        storage.submit(agent.finish, outcome).result()
        return outcome.answer().text
    except AgentError as error:
        return friendly_error(error).replace(":warning:", "⚠")
    except Exception as error:  # storage, say: one line here, the details in the debug log
        logger.debug("chat turn failed", exc_info=True)
        return f"⚠ That turn failed ({type(error).__name__}: {error}); it may not be stored."


# -- governance ----------------------------------------------------------------------------------------
@main.command("delete-user")
@click.argument("user_id")
@click.option("--team", "team_id", help="Only this workspace's channels and inbox rows.")
@click.option("--yes", is_flag=True, help="Delete without asking for confirmation.")
def delete_user(user_id: str, team_id: str | None, yes: bool) -> None:
    """Erase a user: their messages in every channel's memory and recall index, their 👍/👎 votes,
    their words in the model calls stored with other messages, their text in the inbox, and the
    files they shared."""
    settings = open_storage()
    from agent.governance import erase_user
    from agent.knowledge import erase_files
    from bot.audit import DELETE_USER, Audit, os_actor
    from bot.channels import channels_with_agents

    user, team = _user_id(user_id), team_id.upper() if team_id else None
    agents = [key.agent_name for key in channels_with_agents() if team is None or key.team_id == team]
    with _bookkeeping() as engine:
        audit = Audit(engine, settings.namespace)
        found = erase_user(user, agents, engine, team_id=team, dry_run=True)
        shared = sum(erase_files(agent, settings.kept_files, user, dry_run=True) for agent in agents)
        before = audit.entries(limit=1, action=DELETE_USER, details={"user": user})
        where = f" in workspace {team}" if team else ""
        if not found.known and not before and not shared:
            raise CommandError(f"No trace of user {user} in any channel's memory or inbox{where}; check the ID.")
        if found.changes == 0 and shared == 0:
            when = f" (deleted on {before[0].at:%Y-%m-%d %H:%M} UTC by {before[0].actor})" if before else ""
            click.echo(f"Nothing left to delete of {user}{where}{when}: no messages, votes or inbox text.")
            return
        if not yes:
            _print_erasure(found)
            click.confirm(f"Delete all of this of {user}{where}?", abort=True)
        done = erase_user(user, agents, engine, team_id=team)
        _print_erasure(done)
        files = sum(erase_files(agent, settings.kept_files, user) for agent in agents)
        if files:
            click.echo(f"Deleted {files} file(s) {user} shared, with their pieces.")
        audit.record(os_actor(), DELETE_USER, "", _erasure_details(done, team))


def _user_id(raw: str) -> str:
    """A Slack user ID (upper-cased, as Slack writes them) or another stored author ("cli:alice")."""
    user = raw.strip()
    if not user:
        raise CommandError("Give the user's ID, e.g. U0123ABCD.")
    return user.upper() if _PLAIN_ID.match(user) else user


def _print_erasure(erasure: UserErasure) -> None:
    from bot.channels import ChannelKey

    verb = "Found" if erasure.dry_run else "Deleted"
    click.echo(f"{'TEAM':<14}{'CHANNEL':<14}{'MESSAGES':>10}{'RECALL':>8}{'VOTES':>7}{'QUOTED':>8}")
    for agent in erasure.agents:
        if agent.changes:
            key = ChannelKey.from_agent_name(agent.agent)
            counts = f"{agent.messages:>10,}{agent.recall_rows:>8,}{agent.votes:>7,}{agent.scrubbed_rows:>8,}"
            click.echo(f"{key.team_id:<14}{key.channel_id:<14}{counts}")
    for inbox in erasure.inboxes:
        if inbox.blanked:
            click.echo(f"inbox {inbox.table}: {inbox.blanked:,} request text(s)")
    channels = sum(1 for agent in erasure.agents if agent.changes)
    click.echo(
        f"{verb} in {channels} channel(s): {erasure.total('messages'):,} message(s), "
        f"{erasure.total('recall_rows'):,} recall row(s), {erasure.total('votes'):,} vote(s); "
        f"{erasure.total('scrubbed_rows'):,} other row(s) quoting them in stored model calls; "
        f"{sum(inbox.blanked for inbox in erasure.inboxes):,} inbox text(s)"
        + ("." if erasure.dry_run else f"; {erasure.total('kept_versions'):,} row version(s) Pixeltable kept.")
    )


def _erasure_details(erasure: UserErasure, team: str | None) -> dict[str, Any]:
    from bot.channels import ChannelKey

    channels = {
        f"{key.team_id}/{key.channel_id}": {
            "messages": agent.messages,
            "recall_rows": agent.recall_rows,
            "votes": agent.votes,
            "scrubbed_rows": agent.scrubbed_rows,
            "kept_versions": agent.kept_versions,
        }
        for agent in erasure.agents
        if agent.changes
        for key in [ChannelKey.from_agent_name(agent.agent)]
    }
    totals = {name: erasure.total(name) for name in ("messages", "recall_rows", "votes", "scrubbed_rows")}
    inbox = {inbox.table: inbox.blanked for inbox in erasure.inboxes if inbox.blanked}
    return {"user": erasure.user, "team": team, "via": "cli", **totals, "inbox": inbox, "channels": channels}


@main.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1_000_000), help="Entries to show.")
@click.option("--format", "output_format", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--action", help="Only entries of this action, e.g. export or delete-user.")
def audit_command(limit: int, output_format: str, action: str | None) -> None:
    """List the audit trail (exports, deletions, forgetting, retention, settings changes), newest first."""
    settings = open_storage()
    from bot.audit import Audit

    with _bookkeeping() as engine:
        entries = Audit(engine, settings.namespace).entries(limit, action)
    if output_format == "jsonl":
        for entry in entries:
            click.echo(entry.as_json())
        return
    if not entries:
        click.echo("No audit entries yet.", err=True)
        return
    click.echo(f"{'AT (UTC)':<21}{'ACTOR':<16}{'ACTION':<14}{'CHANNEL':<24}DETAILS")
    for entry in entries:
        details = json.dumps(entry.details, ensure_ascii=False, separators=(",", ":"))
        details = details if len(details) <= 100 else details[:99] + "…"
        at = entry.at.astimezone(UTC)
        click.echo(f"{at:%Y-%m-%d %H:%M:%S}  {entry.actor:<16}{entry.action:<14}{entry.channel or '-':<24}{details}")
