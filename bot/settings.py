"""pixelbot's configuration: one object, read once from the environment (and `.env`), validated at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from agent import ConfigError
from agent.agent import DEFAULT_MODEL
from agent.model import DEFAULT_RETRIES, DEFAULT_TIMEOUT
from agent.recall import EmbeddingSettings, RecallLimits
from agent.recall.embeddings import DEFAULT_EMBEDDING_MODEL
from bot.channels import DEFAULT_OPEN_AGENTS
from bot.files import DOWNLOAD_TIMEOUT
from bot.log_format import TEXT, parse_log_format

REQUIRED = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY")
DEFAULT_SYSTEM_PROMPT = (
    "You are pixelbot, a helpful assistant in a Slack channel. Answer concisely in Markdown. "
    "Several people may talk to you; keep track of the conversation."
)
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_HISTORY = 20  # messages of the conversation in each prompt
DEFAULT_PORT = 3000
DEFAULT_WORKERS = 256  # answers in progress at once; a waiting answer costs no thread
DEFAULT_HTTP_THREADS = 32  # each waits ~15 ms for its group commit: 16 capped a burst of listened messages
DEFAULT_NAMESPACE = "pixelbot"
DEFAULT_MAX_FILE_MB = 20
DEFAULT_FILE_TIMEOUT = DOWNLOAD_TIMEOUT  # seconds to download one file
DEFAULT_RECALL_AFTER = RecallLimits().start_after
DEFAULT_GREETING = "Hi! I'm pixelbot. Ask me anything; I remember what we talk about in each thread."
DEFAULT_PROMPTS = (
    "What can you do?",
    "Summarise what this channel discussed this week",
    "What did we decide, and who decided it?",
)
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


@dataclass(frozen=True)
class Settings:
    """Everything the bot reads from its environment; see `.env.example` for each variable."""

    slack_bot_token: str
    slack_signing_secret: str
    openai_api_key: str
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    openai_base_url: str | None = None
    model: str = DEFAULT_MODEL
    models: tuple[str, ...] = (DEFAULT_MODEL,)  # a channel may choose one of these; `model` is always one
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history: int = DEFAULT_HISTORY
    port: int = DEFAULT_PORT
    tool_modules: tuple[str, ...] = ()
    admins: frozenset[str] = field(default_factory=frozenset)
    workers: int = DEFAULT_WORKERS
    http_threads: int = DEFAULT_HTTP_THREADS
    ack_process: bool = True  # over HTTP, Slack's requests acknowledged by a process of their own (`bot.receiver`)
    open_agents: int = DEFAULT_OPEN_AGENTS
    namespace: str = DEFAULT_NAMESPACE
    log_format: str = TEXT  # or "json": one JSON object per log line (`bot.log_format`)
    model_timeout: float = DEFAULT_TIMEOUT
    model_retries: int = DEFAULT_RETRIES
    pixeltable_home: str | None = None
    pixeltable_db_connect_str: str | None = None
    recall: bool = True
    recall_after: int = DEFAULT_RECALL_AFTER
    listen_admins_only: bool = False
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_dimensions: int | None = None
    embedding_base_url: str | None = None
    embedding_api_key: str | None = None
    streaming: bool = True
    thread_followups: bool = True
    assistant_greeting: str = DEFAULT_GREETING
    assistant_prompts: tuple[str, ...] = DEFAULT_PROMPTS
    retention_days: int | None = None  # keep everything
    max_file_mb: int = DEFAULT_MAX_FILE_MB
    vision: bool = True  # the model accepts images
    files_dir: str | None = None  # where shared files are kept (default: beside Pixeltable's data)
    file_timeout: float = DEFAULT_FILE_TIMEOUT
    slack_client_id: str | None = None  # OAuth distribution: these three instead of SLACK_BOT_TOKEN
    slack_client_secret: str | None = None
    slack_state_secret: str | None = None
    on_uninstall: str = "keep"  # or "delete": a workspace's channel memory when it uninstalls the app

    @property
    def oauth(self) -> bool:
        """Whether pixelbot is distributed with OAuth (each workspace its own token)."""
        return self.slack_client_id is not None

    @property
    def kept_files(self) -> Path:
        """Where the files channels shared are kept: `PIXELBOT_FILES_DIR`, else in Pixeltable's home."""
        if self.files_dir:
            return Path(self.files_dir)
        return Path(self.pixeltable_home or Path.home() / ".pixeltable") / "pixelbot-files"

    @property
    def embeddings(self) -> EmbeddingSettings:
        """The embedding model for recall: on the chat model's server and key unless told otherwise."""
        return EmbeddingSettings(
            model=self.embedding_model,
            dimensions=self.embedding_dimensions,
            base_url=self.embedding_base_url or self.openai_base_url,
            api_key=self.embedding_api_key or self.openai_api_key,
        )

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def sole_writer(self) -> bool:
        """Whether this process is the only one writing channel memory: true on the embedded database,
        which belongs to one bot process; with an external PostgreSQL several processes may share it."""
        return self.pixeltable_db_connect_str is None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv_path: Path | None = None,
        required: tuple[str, ...] = REQUIRED,
    ) -> Settings:
        """Read the settings; the process environment wins over `.env`.

        Raises `ConfigError` naming every missing `required` variable (admin commands that only touch
        storage require none).
        """
        values = _merged_environment(environ, dotenv_path)
        oauth = _oauth(values)
        missing = [name for name in required if not values.get(name) and not (oauth and name == "SLACK_BOT_TOKEN")]
        if missing:
            raise ConfigError(
                "Missing required configuration: "
                + ", ".join(missing)
                + ". Set them in the environment or in .env (see .env.example)."
            )
        model = values.get("PIXELBOT_MODEL") or DEFAULT_MODEL
        return cls(
            slack_bot_token=values.get("SLACK_BOT_TOKEN", ""),
            slack_signing_secret=values.get("SLACK_SIGNING_SECRET", ""),
            openai_api_key=values.get("OPENAI_API_KEY", ""),
            slack_app_token=values.get("SLACK_APP_TOKEN") or None,
            slack_api_url=_with_trailing_slash(values.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL),
            openai_base_url=values.get("OPENAI_BASE_URL") or None,
            model=model,
            models=_models(model, values.get("PIXELBOT_MODELS")),
            system_prompt=values.get("PIXELBOT_SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT,
            history=_whole_number(values, "PIXELBOT_HISTORY", DEFAULT_HISTORY),
            port=_whole_number(values, "PORT", DEFAULT_PORT),
            tool_modules=_csv(values.get("PIXELBOT_TOOL_MODULES")),
            admins=frozenset(_csv(values.get("PIXELBOT_ADMINS"))),
            workers=_whole_number(values, "PIXELBOT_WORKERS", DEFAULT_WORKERS),
            http_threads=_whole_number(values, "PIXELBOT_HTTP_THREADS", DEFAULT_HTTP_THREADS),
            # with an external PostgreSQL several processes may share the inbox, and their order needs
            # each request stored in it before its ack (`bot.shared_order`): one process each by default
            ack_process=_flag(values, "PIXELBOT_ACK_PROCESS", not values.get("PIXELTABLE_DB_CONNECT_STR")),
            open_agents=_whole_number(values, "PIXELBOT_OPEN_AGENTS", DEFAULT_OPEN_AGENTS),
            namespace=_namespace(values.get("PIXELBOT_NAMESPACE") or DEFAULT_NAMESPACE),
            log_format=parse_log_format(values.get("PIXELBOT_LOG_FORMAT")),
            model_timeout=float(_whole_number(values, "PIXELBOT_MODEL_TIMEOUT", int(DEFAULT_TIMEOUT))),
            model_retries=_whole_number(values, "PIXELBOT_MODEL_RETRIES", DEFAULT_RETRIES),
            pixeltable_home=values.get("PIXELTABLE_HOME") or None,
            pixeltable_db_connect_str=values.get("PIXELTABLE_DB_CONNECT_STR") or None,
            recall=_flag(values, "PIXELBOT_RECALL", True),
            recall_after=_whole_number(values, "PIXELBOT_RECALL_AFTER", DEFAULT_RECALL_AFTER, minimum=0),
            listen_admins_only=_flag(values, "PIXELBOT_LISTEN_ADMINS_ONLY", False),
            embedding_model=values.get("PIXELBOT_EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL,
            embedding_dimensions=_whole_number(values, "PIXELBOT_EMBEDDING_DIMENSIONS", 0) or None,
            embedding_base_url=values.get("PIXELBOT_EMBEDDING_BASE_URL") or None,
            embedding_api_key=values.get("PIXELBOT_EMBEDDING_API_KEY") or None,
            streaming=_flag(values, "PIXELBOT_STREAMING", True),
            thread_followups=_flag(values, "PIXELBOT_THREAD_FOLLOWUPS", True),
            assistant_greeting=values.get("PIXELBOT_ASSISTANT_GREETING") or DEFAULT_GREETING,
            assistant_prompts=_prompts(values.get("PIXELBOT_ASSISTANT_PROMPTS")),
            retention_days=_whole_number(values, "PIXELBOT_RETENTION_DAYS", 0) or None,
            max_file_mb=_whole_number(values, "PIXELBOT_MAX_FILE_MB", DEFAULT_MAX_FILE_MB),
            vision=_flag(values, "PIXELBOT_VISION", _is_openai(values.get("OPENAI_BASE_URL"))),
            files_dir=values.get("PIXELBOT_FILES_DIR") or None,
            file_timeout=float(_whole_number(values, "PIXELBOT_FILE_TIMEOUT", int(DEFAULT_FILE_TIMEOUT))),
            slack_client_id=values.get("SLACK_CLIENT_ID") if oauth else None,
            slack_client_secret=values.get("SLACK_CLIENT_SECRET") if oauth else None,
            slack_state_secret=values.get("SLACK_STATE_SECRET") if oauth else None,
            on_uninstall=_choice(values, "PIXELBOT_ON_UNINSTALL", ("keep", "delete")),
        )

    def export_to_environment(self) -> None:
        """Hand the settings that Pixeltable and the OpenAI client read from the environment to them."""
        exported = {
            "OPENAI_API_KEY": self.openai_api_key,
            "OPENAI_BASE_URL": self.openai_base_url,
            "PIXELTABLE_HOME": self.pixeltable_home,
            "PIXELTABLE_DB_CONNECT_STR": self.pixeltable_db_connect_str,
        }
        os.environ.update({name: value for name, value in exported.items() if value})


def _merged_environment(environ: Mapping[str, str] | None, dotenv_path: Path | None) -> dict[str, str]:
    path = dotenv_path or Path(".env")
    from_file = dotenv_values(path) if path.exists() else {}
    merged = {name: value for name, value in from_file.items() if value is not None}
    merged.update(os.environ if environ is None else environ)
    return merged


def _whole_number(values: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = values.get(name)
    if not raw:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}.")
    return number


def _flag(values: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (values.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}.")


def _namespace(raw: str) -> str:
    if not _NAMESPACE.match(raw):
        raise ConfigError(
            f"PIXELBOT_NAMESPACE must be lowercase letters, digits and _, starting with a letter; got {raw!r}."
        )
    return raw


def _prompts(raw: str | None) -> tuple[str, ...]:
    """Suggested prompts, separated by `|` (they may hold commas); Slack shows at most 4."""
    if raw is None or not raw.strip():
        return DEFAULT_PROMPTS
    prompts = tuple(part.strip() for part in raw.split("|") if part.strip())
    if len(prompts) > 4:
        raise ConfigError(f"PIXELBOT_ASSISTANT_PROMPTS holds {len(prompts)} prompts; Slack shows at most 4.")
    return prompts


def _models(default: str, raw: str | None) -> tuple[str, ...]:
    """The models a channel may choose: `PIXELBOT_MODELS`, always with the default first."""
    models = [default, *(model for model in _csv(raw) if model != default)]
    if len(models) > 100:
        raise ConfigError(f"PIXELBOT_MODELS lists {len(models)} models; a Slack menu shows at most 100.")
    return tuple(dict.fromkeys(models))


OAUTH = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_STATE_SECRET")


def _oauth(values: Mapping[str, str]) -> bool:
    """Whether the OAuth settings are given (all three, and no bot token beside them)."""
    given = [name for name in OAUTH if values.get(name)]
    if not given:
        return False
    if len(given) < len(OAUTH):
        missing = ", ".join(name for name in OAUTH if name not in given)
        raise ConfigError(f"OAuth distribution needs {', '.join(OAUTH)}; missing: {missing}.")
    if values.get("SLACK_APP_TOKEN"):
        raise ConfigError("OAuth distribution needs the HTTP endpoint; unset SLACK_APP_TOKEN (Socket Mode).")
    if values.get("SLACK_BOT_TOKEN"):
        raise ConfigError(
            "Set either SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and "
            "SLACK_STATE_SECRET (OAuth distribution), not both."
        )
    return True


def _choice(values: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (values.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {raw!r}.")
    return raw


def _is_openai(base_url: str | None) -> bool:
    """Whether the model is OpenAI's (whose chat models see images): vision's default."""
    return not base_url or "api.openai.com" in base_url


def _csv(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def _with_trailing_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"
