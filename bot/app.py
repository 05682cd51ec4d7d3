"""The composition root: builds pixelbot from its settings and owns every part it builds.

Each part gets only what it uses: the listeners an inbox and a way to submit, the answerer its
agents, queues, inbox and executors, the caretaker the inbox and the submit function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa
from slack_bolt import App
from slack_bolt.error import BoltError
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from agent import Agent, ConfigError, ContextLimits
from agent.loop import background_loop
from agent.model import ModelClient, ModelSettings
from agent.recall import Embedder, Recall, RecallLimits
from agent.runtime import configure_pixeltable, warm_up
from agent.toolbox import Toolbox
from bot.answering import Answerer
from bot.arrivals import Arrivals
from bot.assistant import AssistantPanel, ThreadContexts, register_assistant
from bot.audit import UNINSTALL, Audit
from bot.channel_commands import ChannelCommands
from bot.channel_homes import ChannelHomes
from bot.channel_settings import ChannelSettings, Defaults
from bot.channels import ChannelAgents, ChannelKey, channels_with_agents
from bot.database import bookkeeping_engine
from bot.directory import UserDirectory
from bot.exports import Exporter
from bot.feedback import FeedbackIntake
from bot.files import FileIntake, SlackFiles
from bot.followups import Followups
from bot.forgetting import Forgetting, register_forgetting
from bot.home import HomeTab, register_home
from bot.inbox import Caretaker, Inbox, RequestKind
from bot.listeners import register_listeners
from bot.listening import ContextIntake, ListeningChannels
from bot.lull import Lull
from bot.membership import Memberships
from bot.metrics import Metrics
from bot.queues import ChannelQueues
from bot.retention import Retention
from bot.settings import Settings
from bot.settings_modal import SettingsModal, register_settings
from bot.shared_order import ChannelLeases, SharedOrder
from bot.sources import SourceLinks
from bot.workspaces import (
    ContextExecutor,
    WorkspaceClient,
    WorkspaceTokens,
    cached_authorize,
    current_workspace,
    installation_store,
    oauth_settings,
    register_uninstall,
    workspace_middleware,
)
from tools import DEFAULT_TOOLS, load_tools

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 30.0  # seconds to finish the answers in progress at shutdown
STUCK_AFTER = 15 * 60.0  # seconds an open request may wait before health reports the inbox stuck
HEALTH_TIMEOUT = 2.0
RECALL_GRACE = 10.0  # seconds to finish indexing at shutdown (what is left is caught up at the next start)


@dataclass
class PixelBot:
    """A configured bot: the Bolt app to serve and the machinery behind it."""

    settings: Settings
    app: App
    answerer: Answerer
    inbox: Inbox
    exporter: Exporter
    caretaker: Caretaker
    storage: ThreadPoolExecutor
    catalog: ThreadPoolExecutor
    io: ThreadPoolExecutor
    recall: Recall | None = None
    contexts: ThreadContexts | None = None
    retention: Retention | None = None
    channel_settings: ChannelSettings | None = None
    arrivals: Arrivals = field(default_factory=Arrivals)  # the Slack requests being acknowledged (`bot.server`)
    # more parts that must be alive for the bot to answer, and what they report, added by how it is
    # served (`bot.server`)
    serving_checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    serving_details: list[Callable[[], dict[str, Any]]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def agents(self) -> ChannelAgents:
        return self.answerer.agents

    @property
    def metrics(self) -> Metrics:
        """What `GET /metrics` serves (`bot.metrics`)."""
        return self.answerer.metrics

    def resume_orphans(self) -> int:
        """Answer the requests that dead workers (this one's previous run, say) left unanswered."""
        orphans = self.inbox.take_over_orphans()
        for item in orphans:
            self.answerer.submit(item, resume=True)
        if orphans:
            logger.info("resuming %d unanswered request(s) of stopped workers", len(orphans))
        self.answerer.upkeep()
        return len(orphans)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the bot can answer: storage reachable, answering machinery alive, inbox moving."""
        details: dict[str, Any] = {"channels": len(self.agents), "in_progress": self.answerer.pending()}
        checks = {
            "storage": self._storage_answers,
            "answering": lambda: background_loop().is_running() and self._storage_thread_answers(),
            "caretaker": self.caretaker.alive,
            **self.serving_checks,
        }
        for name, check in checks.items():
            try:
                details[name] = "ok" if check() else "failing"
            except Exception as error:
                details[name] = f"failing: {type(error).__name__}"
        try:
            open_count, oldest = self.inbox.open_requests()
            details |= {"open_requests": open_count, "oldest_open_seconds": round(oldest, 1)}
            details["inbox"] = "stuck" if oldest > STUCK_AFTER else "ok"
        except Exception as error:
            details["inbox"] = f"failing: {type(error).__name__}"
        for more in self.serving_details:
            try:
                details |= more()
            except Exception as error:
                logger.warning("a health detail failed: %s", type(error).__name__)
        healthy = all(details[name] == "ok" for name in (*checks, "inbox"))
        return healthy, details

    def _storage_answers(self) -> bool:
        with self.inbox.engine.connect() as connection:
            return connection.execute(sa.text("SELECT 1")).scalar() == 1

    def _storage_thread_answers(self) -> bool:
        return self.storage.submit(lambda: True).result(timeout=HEALTH_TIMEOUT)

    def shutdown(self) -> None:
        """Finish the answers in progress (up to `SHUTDOWN_GRACE`), then stop every part."""
        self.caretaker.stop()
        if self.answerer.order is not None:  # other processes take the channels' next requests
            self.answerer.order.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.channel_settings is not None:
            self.channel_settings.stop()
        if not self.answerer.wait_idle(SHUTDOWN_GRACE):
            logger.warning("%d answer(s) unfinished at shutdown; the next start resumes them", self.answerer.pending())
        self.exporter.shutdown()
        if self.recall is not None:
            if not self.recall.indexer.wait_idle(RECALL_GRACE):
                logger.warning("recall indexing unfinished at shutdown; the next start catches up")
            self.recall.close()
        for pool in (self.io, self.catalog, self.storage):
            pool.shutdown(wait=True)
        if self.contexts is not None:
            self.contexts.close()
        self.inbox.shutdown()
        self.inbox.engine.dispose()  # the bookkeeping engine is this bot's (`create_bot` made it)


def slack_client(settings: Settings, tokens: WorkspaceTokens | None = None) -> WebClient:
    """A Web API client that retries rate limits, server errors and dropped connections a bounded number
    of times; with OAuth (`tokens`), one that speaks for the workspace its work is for."""
    retries = [
        ConnectionErrorRetryHandler(max_retry_count=2),
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
    ]
    if tokens is not None:
        return WorkspaceClient(tokens, base_url=settings.slack_api_url, retry_handlers=retries)
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, retry_handlers=retries)


def model_client(settings: Settings) -> ModelClient:
    return ModelClient(
        ModelSettings(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=settings.model_timeout,
            retries=settings.model_retries,
        )
    )


def open_channel_agent(
    settings: Settings, channels: ChannelSettings, client: ModelClient, recall: Recall | None, name: str
) -> Agent:
    """A channel's agent with the bot's configuration, narrowed or extended by the channel's own."""
    agent = Agent(
        name,
        channels.defaults.system_prompt,
        model=channels.defaults.model,
        limits=ContextLimits(max_messages=settings.history),
        model_client=client,
        sole_writer=settings.sole_writer,
        recall=recall,
    )
    return channels.configure(agent)


def channel_defaults(settings: Settings, tools: pxt.func.Tools) -> Defaults:
    return Defaults(settings.system_prompt, settings.model, settings.models, Toolbox(tools), settings.retention_days)


def channel_recall(settings: Settings, client: WebClient) -> Recall | None:
    """Recall over every channel's history, with the embedding model probed now (a wrong setting
    fails the start, not the first answer); None when `PIXELBOT_RECALL=false`.

    Its Pixeltable work runs on two threads of its own with warm catalogs, one for searches and one
    for creating tables and writing the index, so that a search never queues behind a write, and
    neither behind (or ahead of) the storing of turns on the storage thread."""
    if not settings.recall:
        return None
    embedder = Embedder(settings.embeddings)
    embedder.probe()
    writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelbot-recall-writes")
    reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelbot-recall-reads")
    for thread in (writes, reads):
        thread.submit(warm_up)  # each thread's first task, before any search or write; the start need not wait
    limits = RecallLimits(start_after=settings.recall_after)
    return Recall(embedder, writes, background_loop(), limits, names=UserDirectory(client).name_in, reads=reads)


def slack_files(
    settings: Settings, client: WebClient, storage: ThreadPoolExecutor, io: ThreadPoolExecutor
) -> SlackFiles:
    return SlackFiles(
        lambda: client.token,  # the current workspace's
        settings.slack_api_url,
        settings.kept_files,
        settings.max_file_mb * 1_000_000,
        settings.vision,
        storage,
        io,
        settings.file_timeout,
    )


def shared_order(
    settings: Settings, inbox: Inbox, queues: ChannelQueues, storage_queues: ChannelQueues, io: ThreadPoolExecutor
) -> SharedOrder | None:
    """With other processes on the database, each channel answered by the one holding its lease, in
    arrival order (`bot.shared_order`); alone on the embedded database, the local queues keep it."""
    if settings.sole_writer:
        return None
    return SharedOrder(ChannelLeases(inbox), inbox, queues, storage_queues, io)


def _adopt_channels(homes: ChannelHomes, agents: ChannelAgents, storage: ThreadPoolExecutor) -> None:
    """Give every existing agent's channel its home, and merge a channel kept under two workspaces
    (by a version before homes) into one memory, before any request is answered."""
    for stray, home in homes.adopt(storage.submit(channels_with_agents).result()):
        moved = storage.submit(_merge, agents, stray, home).result()
        logger.info("merged %s into %s: %d message(s) moved", stray.agent_name, home.agent_name, moved)


def _merge(agents: ChannelAgents, stray: ChannelKey, home: ChannelKey) -> int:
    return agents.get(home).take_memory_of(stray.agent_name)


def _forget_workspace(
    agents: ChannelAgents, files: SlackFiles, inbox: Inbox, storage: ThreadPoolExecutor, audit: Audit, team_id: str
) -> None:
    """`PIXELBOT_ON_UNINSTALL=delete`: the memory, files and inbox rows of every channel of a workspace
    that uninstalled pixelbot go, on the storage thread (after the acknowledgement)."""

    def forget() -> None:
        deleted = 0
        for key in channels_with_agents():
            if key.team_id != team_id:
                continue
            agent = agents.get(key)
            deleted += agent.forget_everything() + len(files.forget_where(agent, lambda _: True))
            inbox.purge_before(datetime.now(UTC), channel=key)
        audit.record("slack", UNINSTALL, "", {"team": team_id, "deleted": deleted})
        logger.info("deleted %d item(s) of workspace %s, which uninstalled pixelbot", deleted, team_id)

    storage.submit(forget)


def slack_app(
    settings: Settings, client: WebClient, oauth: OAuthSettings | None = None, tokens: WorkspaceTokens | None = None
) -> App:
    """The Bolt app; with one token Bolt checks it with `auth.test` here, and a refused one is a
    `ConfigError`; with `oauth`, it serves the install flow and finds each workspace's installation."""
    try:
        app = App(
            client=client,
            signing_secret=settings.slack_signing_secret,
            process_before_response=True,
            logger=logging.getLogger("slack_bolt"),
            oauth_settings=oauth,
            authorize=cached_authorize(oauth, client) if oauth is not None else None,  # type: ignore[arg-type]  # an Authorize is callable
        )
    except BoltError as error:
        raise ConfigError(f"cannot start: {error}. Check SLACK_BOT_TOKEN and SLACK_API_URL.") from None
    app.use(workspace_middleware(tokens))
    return app


def workspace_url(client: WebClient) -> Callable[[], str]:
    """The current workspace's URL (for permalinks), from `auth.test` once per workspace."""
    known: dict[str | None, str] = {}

    def url() -> str:
        team = current_workspace()
        if team not in known:
            known[team] = str(client.auth_test().get("url") or "https://slack.com/")
        return known[team]

    return url


def create_bot(settings: Settings) -> PixelBot:
    """Build the bot; verifies the Slack token (`auth.test`) and loads the tools, so bad config fails here."""
    settings.export_to_environment()
    configure_pixeltable()
    tools = pxt.tools(*DEFAULT_TOOLS, *load_tools(settings.tool_modules))
    engine = bookkeeping_engine()
    store, oauth, tokens = None, None, None
    if settings.oauth:
        assert settings.slack_client_id and settings.slack_client_secret and settings.slack_state_secret
        store = installation_store(settings.slack_client_id, engine, settings.namespace)
        tokens = WorkspaceTokens(store, engine, settings.namespace)
        oauth = oauth_settings(
            settings.slack_client_id, settings.slack_client_secret, settings.slack_state_secret, store, engine,
            settings.namespace,
        )  # fmt: skip
    client = slack_client(settings, tokens)
    # process_before_response: listeners only validate, store and queue, so they run in the request
    # thread before Bolt answers Slack, instead of Bolt polling every 10 ms for their ack
    app = slack_app(settings, client, oauth, tokens)
    storage = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelbot-storage")
    catalog = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelbot-catalog")
    io = ContextExecutor(max_workers=32, thread_name_prefix="pixelbot-io")  # jobs keep their workspace
    storage.submit(warm_up).result()  # the tokenizer and this thread's Pixeltable catalog
    inbox = Inbox(engine, settings.namespace)
    recall = channel_recall(settings, client)
    audit = Audit(inbox.engine, settings.namespace)
    channel_settings = ChannelSettings(channel_defaults(settings, tools), audit)
    agents = ChannelAgents(
        partial(open_channel_agent, settings, channel_settings, model_client(settings), recall), settings.open_agents
    )
    queues = ChannelQueues(background_loop(), settings.workers)
    storage_queues = ChannelQueues(background_loop(), settings.workers)
    links = SourceLinks(workspace_url(client)) if recall else None
    files = slack_files(settings, client, storage, io)
    file_intake = FileIntake(files, agents, storage_queues, inbox, storage, io)
    intake = ContextIntake(agents, storage_queues, inbox, storage, io, file_intake)
    feedback = FeedbackIntake(agents, client, inbox, storage_queues, storage, io)
    intakes = {
        RequestKind.LISTENED: intake.take_in,
        RequestKind.EDITED: intake.take_in,
        RequestKind.DELETED: intake.take_in,
        RequestKind.FEEDBACK: feedback.take_in,
        RequestKind.FILE_DELETED: file_intake.take_in,
    }
    homes = ChannelHomes(inbox.engine, settings.namespace)
    contexts = ThreadContexts(inbox.engine, settings.namespace, homes)
    viewed = contexts.viewed_by_member(Memberships(client)) if recall else None
    metrics = Metrics()  # this bot's own registry
    order = shared_order(settings, inbox, queues, storage_queues, io)
    arrivals = Arrivals()
    answerer = Answerer(
        agents, client, queues, storage_queues, inbox, storage, catalog, io, links, intakes, settings.streaming, viewed,
        metrics, files, order, Lull(arrivals=arrivals),
    )  # fmt: skip
    metrics.watch(inbox.open_requests, answerer.pending, agents.__len__)
    inbox.on_late_arrival = answerer.late_arrival
    exporter = Exporter(client, audit)
    listening = ListeningChannels(inbox.engine, settings.namespace)
    forgetting = Forgetting(client, agents, storage_queues, storage, settings.admins, audit, files)
    modal = SettingsModal(
        client, channel_settings, listening, agents, settings.admins, settings.listen_admins_only, storage
    )
    commands = ChannelCommands(client, listening, settings.admins, settings.listen_admins_only, io, forgetting, modal)
    followups = Followups(inbox) if settings.thread_followups else None
    panel = AssistantPanel(client, contexts, settings.assistant_greeting, settings.assistant_prompts, io)
    store_message = register_listeners(
        app, inbox, answerer, exporter, settings.admins, listening, commands, homes, followups
    )
    register_assistant(app, panel, store_message, answerer)
    home = HomeTab(client, settings.admins, channels_with_agents, catalog, io)
    register_home(app, home)
    register_forgetting(app, forgetting, homes, io)
    register_settings(app, modal, io)
    caretaker = Caretaker(inbox, partial(answerer.submit, resume=True), answerer.upkeep)
    retention = Retention(
        settings.retention_days, channel_settings.retention_days, agents, channels_with_agents, inbox, storage, audit,
        files=files,
    )  # fmt: skip
    bot = PixelBot(
        settings, app, answerer, inbox, exporter, caretaker, storage, catalog, io, recall, contexts, retention,
        channel_settings, arrivals,
    )  # fmt: skip
    _adopt_channels(homes, agents, storage)
    bot.resume_orphans()
    caretaker.start()
    if store is not None and tokens is not None:
        forget = (
            partial(_forget_workspace, agents, files, inbox, storage, audit)
            if settings.on_uninstall == "delete"
            else None
        )
        register_uninstall(app, store, tokens, forget)
    retention.start()
    if not settings.sole_writer:  # other processes may change a channel's settings
        channel_settings.follow(agents, storage)
    return bot
