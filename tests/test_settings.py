"""Settings: read once from the environment and `.env`, validated with clear messages (unit tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import ConfigError
from bot.settings import DEFAULT_SLACK_API_URL, Settings

REQUIRED = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "secret", "OPENAI_API_KEY": "sk-1"}
NO_DOTENV = Path("/nonexistent/.env")


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({}, dotenv_path=NO_DOTENV)

    assert "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, OPENAI_API_KEY" in str(raised.value)


def test_defaults() -> None:
    settings = Settings.from_env(REQUIRED, dotenv_path=NO_DOTENV)

    assert settings.slack_api_url == DEFAULT_SLACK_API_URL and settings.model == "gpt-4o-mini"
    assert (settings.history, settings.port, settings.workers) == (20, 3000, 256)
    assert (settings.namespace, settings.open_agents, settings.http_threads) == ("pixelbot", 500, 32)
    assert settings.socket_mode is False and settings.admins == frozenset()


def test_acks_come_from_a_process_of_their_own_unless_the_database_may_be_shared() -> None:
    """With an external PostgreSQL several processes may share the inbox; their order needs each
    request stored there before its ack, so each runs as one process unless told otherwise."""
    external = {**REQUIRED, "PIXELTABLE_DB_CONNECT_STR": "postgresql://db/pixeltable"}

    assert Settings.from_env(REQUIRED, dotenv_path=NO_DOTENV).ack_process is True
    assert Settings.from_env(external, dotenv_path=NO_DOTENV).ack_process is False
    assert Settings.from_env({**external, "PIXELBOT_ACK_PROCESS": "true"}, dotenv_path=NO_DOTENV).ack_process
    assert not Settings.from_env({**REQUIRED, "PIXELBOT_ACK_PROCESS": "off"}, dotenv_path=NO_DOTENV).ack_process


def test_values_are_parsed() -> None:
    environ = {
        **REQUIRED,
        "SLACK_API_URL": "http://127.0.0.1:9/api",
        "SLACK_APP_TOKEN": "xapp-1",
        "PIXELBOT_ADMINS": " U1, U2 ,,",
        "PIXELBOT_TOOL_MODULES": "a.tools, b.tools",
        "PIXELBOT_HISTORY": "5",
    }

    settings = Settings.from_env(environ, dotenv_path=NO_DOTENV)

    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.socket_mode and settings.admins == {"U1", "U2"}
    assert settings.tool_modules == ("a.tools", "b.tools") and settings.history == 5


@pytest.mark.parametrize(("name", "value"), [("PORT", "abc"), ("PIXELBOT_HISTORY", "0"), ("PIXELBOT_WORKERS", "-2")])
def test_invalid_numbers_are_refused_clearly(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**REQUIRED, name: value}, dotenv_path=NO_DOTENV)


def test_dotenv_fills_in_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SLACK_BOT_TOKEN=xoxb-from-file\nSLACK_SIGNING_SECRET=file-secret\nPIXELBOT_MODEL=from-file\n")

    settings = Settings.from_env({"OPENAI_API_KEY": "sk-env", "PIXELBOT_MODEL": "from-env"}, dotenv_path=dotenv)

    assert settings.slack_bot_token == "xoxb-from-file" and settings.model == "from-env"


def test_storage_commands_need_no_slack_variables() -> None:
    assert Settings.from_env({}, dotenv_path=NO_DOTENV, required=()).slack_bot_token == ""


def test_a_namespace_that_is_not_a_plain_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="PIXELBOT_NAMESPACE"):
        Settings.from_env({**REQUIRED, "PIXELBOT_NAMESPACE": "a-b; drop"}, dotenv_path=NO_DOTENV)
