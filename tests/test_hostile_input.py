"""Hostile and malformed requests at the Slack endpoint (issue #10), over real HTTP.

Whatever arrives, the bot answers no 5xx for it, logs one line at most and never the body, stores and
answers nothing it can't use, and goes on answering everyone else.
"""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bot.inbox import Status
from bot.replies import COMMAND_REFUSED, EXPORT_STARTED, NOT_ADMIN, STORAGE_SLOW
from tests.conftest import RunningBot, stalled_insert, wait_until
from tests.fake_slack import FakeSlack
from tests.slack_requests import (
    SLACK_USER_AGENT,
    AppResponse,
    SlackRequest,
    SlackSender,
    mention,
    sign,
    slash_command,
    url_verification,
)


def signed(body: bytes, content_type: str = "application/json", **headers: str) -> SlackRequest:
    """`body` exactly as given, signed with the bot's secret (so only the body itself is wrong)."""
    base = {"Content-Type": content_type, "User-Agent": SLACK_USER_AGENT}
    return SlackRequest(body, {**base, **sign(body), **headers}, {})


def unsigned(body: bytes, content_type: str = "application/json", **headers: str) -> SlackRequest:
    return SlackRequest(body, {"Content-Type": content_type, "User-Agent": SLACK_USER_AGENT, **headers}, {})


def changed(request: SlackRequest, in_event: Mapping[str, Any] | None = None, **top: Any) -> SlackRequest:
    """`request`'s payload with fields of its event (`in_event`) and of the payload (`top`) replaced, or
    removed when the value is `...`; signed again."""
    payload = copy.deepcopy(request.payload)
    for fields, target in ((in_event or {}, payload["event"]), (top, payload)):
        for name, value in fields.items():
            if value is ...:
                target.pop(name, None)
            else:
                target[name] = value
    return signed(json.dumps(payload).encode())


def event_id(request: SlackRequest) -> str:
    return str(json.loads(request.body)["event_id"])


def posted_texts(slack: FakeSlack) -> list[str]:
    return [call.params["text"] for call in slack.calls("chat.postMessage")]


def answered_only(running_bot: RunningBot, slack: FakeSlack, channel_id: str) -> list[str]:
    """Send a sentinel mention and wait for it: FIFO per channel, so all earlier work is done too."""
    running_bot.send(mention("sentinel", channel=channel_id))
    slack.wait_for_calls("chat.postMessage", 1)
    assert running_bot.bot.answerer.wait_idle(30)
    return posted_texts(slack)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def edge_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.edge" and r.levelno == logging.WARNING]


# -- 1: poison IDs are refused before anything is stored -------------------------------------------------
def test_requests_with_ids_not_in_slacks_formats_are_acked_and_neither_stored_nor_answered(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = "POISONTEXT"
    no_team = mention(secret, channel=channel_id)
    authorization = {name: value for name, value in no_team.payload["authorizations"][0].items() if name != "team_id"}
    events = {f"channel {bad!r}": mention(secret, channel=bad) for bad in ("c0abc", "../../x", "C1;DROP", "")} | {
        "team ID lowercase": changed(mention(secret, channel=channel_id), team_id="t0001"),
        "team ID missing": changed(no_team, team_id=..., authorizations=[authorization]),
    }
    tool = slash_command("/tool", secret, channel_id="../../x", response_url=slack.response_url("poison"))

    statuses = {name: running_bot.send(request).status for name, request in events.items()}
    tool_ack = running_bot.send(tool)

    assert statuses == dict.fromkeys(events, 200), "acknowledged, so Slack doesn't retry what would fail again"
    assert tool_ack.status == 200 and tool_ack.json() == {"response_type": "ephemeral", "text": COMMAND_REFUSED}
    assert [running_bot.bot.inbox.status(event_id(request)) for request in events.values()] == [None] * len(events)
    assert running_bot.bot.inbox.status(f"cmd:{tool.payload['trigger_id']}") is None
    assert answered_only(running_bot, slack, channel_id) == ["echo: sentinel"]
    assert slack.responses("poison") == []
    assert len(edge_warnings(caplog)) == len(events) + 1, "one warning per refused request"
    assert secret not in logged(caplog), "and never its body"


# -- 5: text nothing can store ------------------------------------------------------------------------------
def test_a_lone_surrogate_is_repaired_or_refused_without_affecting_requests_sent_with_it(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    valid = [mention(f"question {n}", channel=channel_id) for n in range(15)]
    bad_text = mention("broken \ud800 text", channel=channel_id)
    bad_user = mention("from nobody", channel=channel_id, user="U\ud800")
    assert b"\\ud800" in bad_text.body, "sent as Slack would: a JSON escape"

    def send(request: SlackRequest) -> AppResponse:
        with SlackSender() as sender:
            return sender.send(running_bot.events_url, request)

    with ThreadPoolExecutor(len(valid) + 2) as pool:
        responses = list(pool.map(send, [*valid, bad_text, bad_user]))

    assert [response.status for response in responses] == [200] * (len(valid) + 2)
    texts = answered_only(running_bot, slack, channel_id)
    assert sorted(texts[:-1]) == sorted([f"echo: question {n}" for n in range(15)] + ["echo: broken \ufffd text"])
    assert running_bot.bot.inbox.status(event_id(bad_user)) is None


# -- 6: nobody can fill the log --------------------------------------------------------------------------------
def test_refused_bodies_never_reach_the_log_and_huge_ones_are_not_read(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    marker = "FLOODMARKER"
    forged = mention(marker * 10_000, channel=channel_id).signed(signing_secret="not-the-secret")
    no_signature = unsigned(json.dumps({"type": "event_callback", "junk": marker * 10_000}).encode())
    huge = unsigned(marker.encode() * (2 * 1024 * 1024 // len(marker)))

    statuses = [running_bot.send(request).status for request in (forged, no_signature, huge)]

    assert marker not in logged(caplog)
    assert len(logged(caplog)) < 2_000, "a line or so per refused request, not its body"
    assert statuses == [401, 401, 413]
    assert answered_only(running_bot, slack, channel_id) == ["echo: sentinel"]


# -- 8: garbage gets a 4xx, signed nonsense a 200, and nothing a 5xx or a traceback -----------------------------
def test_malformed_requests_get_4xx_or_an_empty_200_and_no_traceback(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sample = mention("malformed", channel=channel_id)
    nested = copy.deepcopy(sample.payload)
    nested["event"]["text"] = "DEEP"
    deep = json.dumps(nested).replace('"DEEP"', "[" * 10_000 + "]" * 10_000).encode()
    stale_format = {"X-Slack-Request-Timestamp": "abc"}
    cases = {
        "unsigned, not JSON": (unsigned(b"{not json"), 401),
        "unsigned, not UTF-8": (unsigned(b'{"type": "\xff\xfe"}'), 401),
        "timestamp header abc": (signed(sample.body, **stale_format), 401),
        "signed, not JSON": (signed(b"{not json"), 400),
        "signed, not UTF-8": (signed(b'{"type": "\xff\xfe"}'), 400),
        "signed, nested 10,000 deep": (signed(deep), 400),
        "signed, a JSON list": (signed(b"[1, 2]"), 400),
        "event null": (changed(sample, event=None), 200),
        "event a string": (changed(sample, event="app_mention"), 200),
        "no channel": (changed(mention("x", channel=channel_id), {"channel": ...}), 200),
        "no ts": (changed(mention("x", channel=channel_id), {"ts": ...}), 200),
        "text a number": (changed(mention("x", channel=channel_id), {"text": 42}), 200),
        "text null": (changed(mention("x", channel=channel_id), {"text": None}), 200),
        "type not a string": (changed(mention("x", channel=channel_id), {"type": ["app_mention"]}), 200),
    }

    statuses = {name: running_bot.send(request).status for name, (request, _) in cases.items()}

    assert statuses == {name: status for name, (_, status) in cases.items()}
    assert len(edge_warnings(caplog)) == len(cases), "one warning per refused request"
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []
    assert "Traceback" not in caplog.text
    assert running_bot.bot.inbox.open_requests()[0] == 0, "nothing stored"
    assert answered_only(running_bot, slack, channel_id) == ["echo: sentinel"]


def test_slacks_handshake_still_passes_the_edge(running_bot: RunningBot) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"

    response = running_bot.send(url_verification(challenge))

    assert response.status == 200 and challenge in response.text


# -- 7: the export is acknowledged before Slack is asked who the user is ------------------------------------------
def test_export_is_acked_while_users_info_is_still_unanswered(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    asked, release, held_too_long = threading.Event(), threading.Event(), threading.Event()

    def slow_users_info(params: Mapping[str, Any]) -> Mapping[str, Any]:
        asked.set()
        if not release.wait(timeout=8):
            held_too_long.set()
        return {"ok": True, "user": {"id": params["user"], "is_admin": False, "is_owner": False}}

    slack.set_handler("users.info", slow_users_info)
    command = slash_command(
        "/export-memory", "csv", user_id="U0NOBODY", channel_id=channel_id, response_url=slack.response_url("e")
    )
    try:
        ack = running_bot.send(command)
        acked_while_held = not release.is_set() and not held_too_long.is_set()
    finally:
        release.set()

    assert ack.status == 200 and ack.json() == {"response_type": "ephemeral", "text": EXPORT_STARTED}
    assert acked_while_held and asked.wait(5), "the ack came back while users.info was still held"
    [refusal] = slack.wait_for_responses(1, name="e", timeout=10)
    assert refusal.payload["text"] == NOT_ADMIN
    assert slack.uploaded_files() == [] and slack.calls("conversations.open") == []


# -- 2: "couldn't save" only when it wasn't saved ---------------------------------------------------------------
def test_a_tool_request_whose_store_timed_out_is_acked_as_slow_then_answered_once(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    command = slash_command("/tool", "what is 2+2?", channel_id=channel_id, response_url=slack.response_url("slow"))
    request_id = f"cmd:{command.payload['trigger_id']}"
    inbox = running_bot.bot.inbox
    with stalled_insert(inbox, request_id, channel_id, "tool"):
        ack = running_bot.send(command)

    assert ack.status == 200 and ack.json() == {"response_type": "ephemeral", "text": STORAGE_SLOW}
    [answer] = slack.wait_for_responses(1, name="slow", timeout=20)
    assert answer.payload["response_type"] == "in_channel" and answer.payload["text"] == "echo: what is 2+2?"
    wait_until(lambda: inbox.status(request_id) is Status.ANSWERED, what="the late request closed")
    assert running_bot.bot.answerer.wait_idle(30)
    assert len(slack.responses("slow")) == 1, "answered once"


def test_a_slash_command_delivered_twice_is_answered_once(
    running_bot: RunningBot, slack: FakeSlack, channel_id: str
) -> None:
    command = slash_command("/tool", "what is 2+2?", channel_id=channel_id, response_url=slack.response_url("twice"))

    first, second = running_bot.send(command), running_bot.send(command.signed())
    slack.wait_for_responses(1, name="twice")
    assert running_bot.bot.answerer.wait_idle(30)

    assert first.status == second.status == 200
    assert len(slack.responses("twice")) == 1
    assert [role for role, _ in running_bot.memory_rows(channel_id)] == ["user", "assistant"], "asked once"


def test_many_open_connections_do_not_lock_out_a_new_request(running_bot: RunningBot) -> None:
    """Waitress serves 100 connections by default and leaves further ones unaccepted until one closes."""
    port = int(running_bot.root_url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]  # kept open, sending nothing
    try:
        response = httpx.get(f"{running_bot.root_url}/healthz", timeout=10)
    finally:
        for connection in idle:
            connection.close()

    assert response.status_code == 200
