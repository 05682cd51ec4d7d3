"""Which workspace a piece of work is for, and the bot token that speaks to it.

With one `SLACK_BOT_TOKEN` every call uses it and nothing here matters. With OAuth distribution
(`SLACK_CLIENT_ID`, …) each workspace that installed pixelbot has its own bot token, kept by
slack_sdk's `SQLAlchemyInstallationStore` in the bot's database. Rather than hand every part of the
bot a client per workspace, the work itself carries its workspace: a context variable set where work
for a workspace begins (Bolt's middleware for each request from Slack, the answerer for each inbox
item, also after a restart) and carried into the pools (`ContextExecutor`, `log_format.in_thread`).
`WorkspaceClient` reads it for every Web API call, so a call is always made with the token of the
workspace it is for; one for a workspace without a token (or outside any) is refused before it leaves.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from slack_bolt import App, BoltContext
from slack_bolt.authorization.authorize import InstallationStoreAuthorize
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.oauth.installation_store import InstallationStore
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from slack_sdk.web import SlackResponse
from sqlalchemy.dialects import postgresql

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_workspace: ContextVar[str | None] = ContextVar("pixelbot_workspace", default=None)


@contextlib.contextmanager
def in_workspace(team_id: str | None) -> Iterator[None]:
    """Within the block (and the jobs it hands to context-carrying pools), Slack calls are for `team_id`."""
    token = _workspace.set(team_id or None)
    try:
        yield
    finally:
        _workspace.reset(token)


def current_workspace() -> str | None:
    return _workspace.get()


def workspace_middleware(tokens: WorkspaceTokens | None = None) -> Callable[..., None]:
    """Bolt middleware: the listeners of a request run in its workspace: the installation's, or for an
    org-wide install (whose authorization names no workspace) the one the request came from, which
    `tokens` then learns belongs to the organisation."""

    def in_its_workspace(context: BoltContext, body: dict[str, Any], next: Callable[[], None]) -> None:
        team = context.team_id or _request_team(body)
        if tokens is not None and team and context.is_enterprise_install and context.enterprise_id:
            tokens.learn(team, context.enterprise_id)
        with in_workspace(team):
            next()

    return in_its_workspace


def _request_team(body: dict[str, Any]) -> str | None:
    """The workspace a request came from, as its envelope (or a click's `user.team_id`) says."""
    team = body.get("team_id") or (body.get("user") or {}).get("team_id")
    return team if isinstance(team, str) else None


class ContextExecutor(ThreadPoolExecutor):
    """A thread pool whose jobs run in the submitter's context: its workspace, its request's log tags."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)  # type: ignore[arg-type]


class WorkspaceTokens:
    """The bot token of each workspace that installed the app, or whose Enterprise Grid organisation
    installed it org-wide, from the installation store, cached until `forget` (an uninstall, a
    revocation). Which organisation a workspace belongs to is learned from its requests and kept in
    `<namespace>_org_workspaces`, so that work resumed after a restart finds the token too."""

    def __init__(self, store: InstallationStore, engine: sa.Engine | None = None, namespace: str = "pixelbot") -> None:
        self._store = store
        self._engine = engine
        self._tokens: dict[str, str | None] = {}
        self._orgs: dict[str, str] = {}
        self._lock = threading.Lock()
        metadata = sa.MetaData()
        self._org_table = sa.Table(
            f"{namespace}_org_workspaces",
            metadata,
            sa.Column("team_id", sa.Text, primary_key=True),
            sa.Column("enterprise_id", sa.Text, nullable=False),
        )
        if engine is not None:
            _create(metadata, engine)

    def token(self, team_id: str) -> str | None:
        with self._lock:
            if team_id in self._tokens:
                return self._tokens[team_id]
        bot = self._store.find_bot(enterprise_id=None, team_id=team_id)
        org = self._org_of(team_id) if bot is None else None
        if org is not None:
            bot = self._store.find_bot(enterprise_id=org, team_id=None, is_enterprise_install=True)
        token = bot.bot_token if bot is not None else None
        with self._lock:
            self._tokens[team_id] = token
        return token

    def learn(self, team_id: str, enterprise_id: str) -> None:
        """`team_id` belongs to `enterprise_id`, which installed the app org-wide."""
        with self._lock:
            if self._orgs.get(team_id) == enterprise_id:
                return
            self._orgs[team_id] = enterprise_id
            self._tokens.pop(team_id, None)
        if self._engine is not None:
            statement = postgresql.insert(self._org_table).values(team_id=team_id, enterprise_id=enterprise_id)
            statement = statement.on_conflict_do_update(
                index_elements=["team_id"], set_={"enterprise_id": enterprise_id}
            )
            with self._engine.begin() as connection:
                connection.execute(statement)

    def forget(self, team_id: str) -> None:
        with self._lock:
            self._tokens.pop(team_id, None)

    def forget_org(self, enterprise_id: str) -> None:
        """An org-wide installation is gone: none of its workspaces has its token any more."""
        with self._lock:
            for team, org in self._orgs.items():
                if org == enterprise_id:
                    self._tokens.pop(team, None)

    def _org_of(self, team_id: str) -> str | None:
        with self._lock:
            if team_id in self._orgs:
                return self._orgs[team_id]
        if self._engine is None:
            return None
        query = sa.select(self._org_table.c.enterprise_id).where(self._org_table.c.team_id == team_id)
        with self._engine.connect() as connection:
            org = connection.execute(query).scalar()
        if org is not None:
            with self._lock:
                self._orgs[team_id] = org
        return org


class WorkspaceClient(WebClient):
    """A Web API client whose token is the current workspace's (see the module's docstring)."""

    def __init__(self, tokens: WorkspaceTokens, **kwargs: Any) -> None:
        self._workspace_tokens = tokens
        super().__init__(**kwargs)

    @property
    def token(self) -> str | None:
        team = current_workspace()
        if team is None:  # e.g. oauth.v2.access, which authenticates with the app's credentials
            return None
        token = self._workspace_tokens.token(team)
        if token is None:
            logger.warning("no installation for workspace %s; the Slack call is sent without a token", team)
        return token

    @token.setter
    def token(self, value: str | None) -> None:
        """WebClient's constructor sets a token; this client has none of its own."""

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        """A call with no token for its workspace (uninstalled, revoked, or outside any) is answered
        here as Slack would answer it, `not_authed`, instead of being sent."""
        if self.token is None and not api_method.startswith("oauth.") and "token" not in (kwargs.get("params") or {}):
            refused = SlackResponse(
                client=self, http_verb="POST", api_url=api_method, req_args={},
                data={"ok": False, "error": "not_authed"}, headers={}, status_code=200,
            )  # fmt: skip
            refused.validate()  # type: ignore[no-untyped-call]  # raises SlackApiError, as for Slack's own answer
        return super().api_call(api_method, **kwargs)


# -- OAuth distribution --------------------------------------------------------------------------------
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_SECONDS = 600  # an install link is good for ten minutes
BOT_SCOPES = (  # as manifest.yml asks
    "app_mentions:read", "assistant:write", "chat:write", "channels:read", "groups:read", "mpim:read", "im:read",
    "commands",
    "reactions:write", "users:read", "im:write", "files:write", "files:read", "channels:history", "groups:history",
    "mpim:history", "im:history",
)  # fmt: skip


class SignedStateStore(SQLAlchemyOAuthStateStore):
    """OAuth state kept in the database (one use, ten minutes), and signed with `SLACK_STATE_SECRET`,
    so that a state this app did not issue is refused before the database is asked."""

    def __init__(self, secret: str, engine: sa.Engine, table_name: str) -> None:
        super().__init__(expiration_seconds=STATE_SECONDS, engine=engine, table_name=table_name)
        self._secret = secret.encode()

    def issue(self, *args: Any, **kwargs: Any) -> str:
        state = super().issue(*args, **kwargs)
        return f"{state}.{self._signature(state)}"

    def consume(self, state: str) -> bool:
        value, _, signature = state.rpartition(".")
        if not value or not hmac.compare_digest(signature, self._signature(value)):
            logger.warning("an OAuth redirect with a state this app did not sign; refused")
            return False
        return bool(super().consume(value))

    def _signature(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]


def installation_store(client_id: str, engine: sa.Engine, namespace: str) -> SQLAlchemyInstallationStore:
    """Installations and bot tokens in the bot's database, in tables of this namespace."""
    store = SQLAlchemyInstallationStore(
        client_id=client_id,
        engine=engine,
        bots_table_name=f"{namespace}_slack_bots",
        installations_table_name=f"{namespace}_slack_installations",
    )
    _create(store.metadata, engine)
    return store


def oauth_settings(
    client_id: str, client_secret: str, state_secret: str, store: InstallationStore, engine: sa.Engine, namespace: str
) -> OAuthSettings:
    """Bolt's OAuth flow: `/slack/install` and `/slack/oauth_redirect`, installations in `store`."""
    state_store = SignedStateStore(state_secret, engine, f"{namespace}_slack_oauth_states")
    _create(state_store.metadata, engine)
    return OAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        installation_store=store,
        state_store=state_store,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store_bot_only=True,
    )


def cached_authorize(oauth: OAuthSettings, client: WebClient) -> InstallationStoreAuthorize:
    """Bolt's authorization from the installation store, with its `auth.test` made once per token
    instead of once per request (it would sit on every acknowledgement's path)."""
    return InstallationStoreAuthorize(
        installation_store=oauth.installation_store,
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        logger=logger,
        bot_only=True,
        cache_enabled=True,
        client=client,
    )


def _create(metadata: sa.MetaData, engine: sa.Engine) -> None:
    from bot.database import create_tables

    create_tables(engine, metadata)


def _uninstalled_org(store: InstallationStore, tokens: WorkspaceTokens, enterprise_id: str) -> None:
    """An org-wide installation removed: its token goes (the memory of its workspaces' channels is kept)."""
    store.delete_installation(enterprise_id=enterprise_id, team_id=None)
    store.delete_bot(enterprise_id=enterprise_id, team_id=None)
    tokens.forget_org(enterprise_id)
    logger.info("pixelbot was uninstalled from organisation %s; its tokens are deleted", enterprise_id)


def register_uninstall(
    app: App, store: InstallationStore, tokens: WorkspaceTokens, forget: Callable[[str], None] | None
) -> None:
    """`app_uninstalled` and `tokens_revoked`: the workspace's installation and tokens are deleted,
    so that nothing more is sent in its name; with `forget` (`PIXELBOT_ON_UNINSTALL=delete`) its
    channels' memory goes too, after the acknowledgement."""

    @app.event("app_uninstalled")
    def on_uninstalled(context: BoltContext) -> None:
        if context.is_enterprise_install and context.enterprise_id:
            _uninstalled_org(store, tokens, context.enterprise_id)
            return
        team = context.team_id
        if not team:
            return
        store.delete_installation(enterprise_id=None, team_id=team)
        store.delete_bot(enterprise_id=None, team_id=team)
        tokens.forget(team)
        logger.info("pixelbot was uninstalled from %s; its tokens are deleted", team)
        if forget is not None:
            forget(team)

    @app.event("tokens_revoked")
    def on_revoked(context: BoltContext, event: dict[str, Any]) -> None:
        team = context.team_id
        revoked = (event.get("tokens") or {}).get("bot") or []
        if team and revoked:
            store.delete_bot(enterprise_id=None, team_id=team)
            tokens.forget(team)
            logger.info("the bot token of %s was revoked; deleted", team)
