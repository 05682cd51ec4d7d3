"""The `pixelbot` command line (click): serve the bot, and admin commands."""

from __future__ import annotations

import logging
import sys

import click

from agent import ConfigError
from bot.settings import Settings


def load_settings() -> Settings:
    """Settings from the environment, or a clear message and exit status 2."""
    try:
        return Settings.from_env()
    except ConfigError as error:
        click.echo(f"pixelbot: {error}", err=True)
        sys.exit(2)


@click.group()
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
