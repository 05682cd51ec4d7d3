"""The baseline for pixelbot's latency: a minimal Slack bot with no storage, served like pixelbot.

A Bolt app with the same signing secret and an `app_mention` listener that asks the model with the real
`openai` client (system prompt + the message, no memory) and posts the answer in the mention's thread
with `chat.postMessage`. It is served by waitress with pixelbot's thread count, plus `GET /healthz`.
Everything pixelbot does beyond this (the inbox, the agent's tables and memory, the progress reaction,
mrkdwn rendering) is pixelbot's overhead.

    python -m benchmarks.baseline_bot   # reads SLACK_*, OPENAI_*, PORT like pixelbot; serves until killed
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import openai
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress.server import create_server

from bot.server import CONNECTION_LIMIT, EVENTS_PATH, StartResponse, WSGIApp
from bot.settings import DEFAULT_SYSTEM_PROMPT

MODEL = "gpt-4o-mini"
THREADS = 8  # as `bot.server.http_server`


def create_app(environ: dict[str, str]) -> App:
    """The Bolt app: one listener, model call and post, nothing stored."""
    client = WebClient(token=environ["SLACK_BOT_TOKEN"], base_url=environ["SLACK_API_URL"])
    app = App(client=client, signing_secret=environ["SLACK_SIGNING_SECRET"])
    model = openai.OpenAI(api_key=environ["OPENAI_API_KEY"], base_url=environ["OPENAI_BASE_URL"])

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], client: WebClient) -> None:
        messages: Any = [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": event.get("text", "")},
        ]
        completion = model.chat.completions.create(model=MODEL, messages=messages)
        text = completion.choices[0].message.content or ""
        client.chat_postMessage(channel=event["channel"], thread_ts=event.get("thread_ts") or event["ts"], text=text)

    return app


def wsgi_app(app: App) -> WSGIApp:
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"ok": true}']
        return slack(environ, start_response)

    return application


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    environ = dict(os.environ)
    server: Any = create_server(
        wsgi_app(create_app(environ)),
        host="127.0.0.1",
        port=int(environ["PORT"]),
        threads=THREADS,
        connection_limit=CONNECTION_LIMIT,  # as pixelbot, so waitress's default of 100 holds up neither bot
    )
    server.run()


if __name__ == "__main__":
    main()
