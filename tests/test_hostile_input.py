"""Hostile and malformed requests at the Slack endpoint (issue #10), over real HTTP.

Whatever arrives, the bot answers no 5xx for it, logs one line at most and never the body, stores and
answers nothing it can't use, and goes on answering everyone else. The Home tab's and the assistant's
events and the clicks on buttons (`block_actions`) pass the edge with only the fields the bot reads.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httpx
import pytest
from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_bolt.middleware.assistant import Assistant
from slack_bolt.request.payload_utils import (
    is_assistant_event,
    is_bot_message_event_in_assistant_thread,
    is_other_message_sub_event_in_assistant_thread,
    is_user_message_event_in_assistant_thread,
)
from slack_sdk import WebClient
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.acknowledgements import STORAGE_SLOW
from bot.arrivals import Arrivals
from bot.edge import COMMAND_REFUSED, Admitted, Edge, Refused, Verdict
from bot.inbox import Status
from bot.replies import EXPORT_STARTED, NOT_ADMIN
from bot.server import ScreenedSocketModeHandler
from tests.conftest import RunningBot, stalled_insert, wait_until
from tests.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack
from tests.slack_requests import (
    CHANNEL_ID,
    SIGNING_SECRET,
    SLACK_USER_AGENT,
    USER_ID,
    AppResponse,
    SlackRequest,
    SlackSender,
    app_home_opened,
    assistant_thread_context_changed,
    assistant_thread_started,
    block_action,
    interactive,
    mention,
    message,
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


# -- the Home tab, the assistant and interactivity: only what the bot reads gets past the edge ---------------
EDGE = Edge(SIGNING_SECRET)
PROBE = "pixelbot_test_probe"  # an action ID of the test's own listener, which no listener of the bot's takes
MARKER = "POISONVALUE"
RESPONSE_URL = "https://hooks.slack.com/actions/T0001/1234567890/abcdef"
MESSAGE_TS = "1700000000.000100"
THREAD_TS = "1700000000.000050"


def screened(request: SlackRequest) -> Verdict:
    """The edge's verdict on `request` as the HTTP endpoint asks for it (header names lowercase)."""
    return EDGE.screen(request.body, {name.lower(): value for name, value in request.headers.items()})


def admitted(request: SlackRequest) -> dict[str, Any]:
    verdict = screened(request)
    assert isinstance(verdict, Admitted), verdict
    return verdict.payload


def edited(payload: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `payload` with the fields at dotted paths (`actions.0.value`) set, or removed when `...`."""
    result = copy.deepcopy(dict(payload))
    for path, value in changes.items():
        *parents, last = path.split(".")
        target: Any = result
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        key: Any = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return result


def event_edited(request: SlackRequest, changes: Mapping[str, Any]) -> SlackRequest:
    return signed(json.dumps(edited(request.payload, changes)).encode())


def click_edited(request: SlackRequest, changes: Mapping[str, Any]) -> SlackRequest:
    return interactive(edited(request.payload, changes))


def probe_click(response_url: str = RESPONSE_URL, **options: Any) -> SlackRequest:
    return block_action(PROBE, "yes", message_ts=MESSAGE_TS, response_url=response_url, **options)


def test_home_and_assistant_events_are_admitted_with_only_the_fields_the_bot_reads() -> None:
    home, messages_tab = app_home_opened(user="U0ADMIN"), app_home_opened(tab="messages")
    started = assistant_thread_started(thread_ts=THREAD_TS)
    changed_context = assistant_thread_context_changed(thread_ts=THREAD_TS, context_channel="C0002")
    context = edited(changed_context.payload, {"event.assistant_thread.context.thread_entry_point": "app_home"})
    context = edited(context, {"event.assistant_thread.context.force_search": False})
    assert "view" in home.payload["event"], "sent with the view published last, as Slack does"

    def wrapped(request: SlackRequest, event: dict[str, Any]) -> dict[str, Any]:
        authorized = [{"is_enterprise_install": False, "team_id": TEAM_ID, "user_id": BOT_USER_ID}]
        return {"type": "event_callback", "team_id": TEAM_ID, "event_id": event_id(request), "event": event,
                "authorizations": authorized}  # fmt: skip

    def thread(context: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": USER_ID, "channel_id": "D0001", "thread_ts": THREAD_TS, "context": context}

    home_ts, started_ts = home.payload["event"]["event_ts"], started.payload["event"]["event_ts"]
    assert admitted(home) == wrapped(
        home, {"type": "app_home_opened", "user": "U0ADMIN", "channel": "D0ADMIN", "tab": "home", "event_ts": home_ts}
    )
    assert admitted(messages_tab)["event"]["tab"] == "messages"
    assert admitted(started) == wrapped(
        started, {"type": "assistant_thread_started", "assistant_thread": thread({}), "event_ts": started_ts}
    )
    full_context = {
        "channel_id": "C0002",
        "team_id": TEAM_ID,
        "enterprise_id": None,
        "thread_entry_point": "app_home",
        "force_search": False,
    }
    assert admitted(signed(json.dumps(context).encode()))["event"]["assistant_thread"] == thread(full_context)


def test_block_actions_are_admitted_with_only_the_fields_the_bot_reads_over_http_and_socket_mode() -> None:
    metadata = {"event_type": "pixelbot_answer", "event_payload": {"request_id": "Ev0123", "kind": "mention"}}
    click = probe_click(thread_ts=THREAD_TS, metadata=metadata)
    feedback = block_action(
        "pixelbot_feedback", "good Ev0123", message_ts=MESSAGE_TS, response_url=RESPONSE_URL,
        element_type="feedback_buttons",
    )  # fmt: skip
    action = click.payload["actions"][0]
    expected = {
        "type": "block_actions",
        "user": {"id": USER_ID, "team_id": TEAM_ID, "name": "alice"},
        "team": {"id": TEAM_ID},
        "container": {
            "type": "message",
            "message_ts": MESSAGE_TS,
            "channel_id": CHANNEL_ID,
            "is_ephemeral": False,
            "thread_ts": THREAD_TS,
        },
        "actions": [
            {
                "action_id": PROBE,
                "block_id": "pixelbot_actions",
                "type": "button",
                "value": "yes",
                "action_ts": action["action_ts"],
            },
        ],
        "response_url": RESPONSE_URL,
        "trigger_id": click.payload["trigger_id"],
        "api_app_id": "A0001",
        "channel": {"id": CHANNEL_ID},
        "message": {"ts": MESSAGE_TS, "thread_ts": THREAD_TS, "metadata": metadata},
        "is_enterprise_install": False,  # which installation answers (Bolt finds an org-wide one by it)
    }

    assert admitted(click) == expected
    assert Edge.screen_payload(click.payload) == Admitted(expected), "Socket Mode: the same, from the parsed payload"
    [vote] = admitted(feedback)["actions"]
    assert (vote["type"], vote["value"]) == ("feedback_buttons", "good Ev0123"), "the chosen button's value"
    org_wide = admitted(click_edited(click, {"team": None}))
    assert org_wide["team"] is None and org_wide["user"]["team_id"] == TEAM_ID, "Bolt reads the team from the user"
    assert "message" not in admitted(click_edited(click, {"message": ..., "container.is_ephemeral": True}))


def test_dm_messages_of_assistant_threads_keep_what_bolts_assistant_reads() -> None:
    """The assistant's threads are DMs; Bolt's Assistant tells its events apart by these predicates."""
    user_message = message("hi", channel="D0001", channel_type="im", thread_ts=THREAD_TS)
    bot_message = message("hello", channel="D0001", channel_type="im", thread_ts=THREAD_TS, extra={"bot_id": "BBOT"})
    changed_message = message(
        "", channel="D0001", channel_type="im",
        extra={"subtype": "message_changed", "message": {"ts": MESSAGE_TS, "text": "hi!", "thread_ts": THREAD_TS}},
    )  # fmt: skip
    deleted_message = message(
        "", channel="D0001", channel_type="im",
        extra={"subtype": "message_deleted", "deleted_ts": MESSAGE_TS,
               "previous_message": {"ts": MESSAGE_TS, "user": USER_ID, "text": "hi", "thread_ts": THREAD_TS}},
    )  # fmt: skip
    predicates = (
        is_assistant_event,
        is_user_message_event_in_assistant_thread,
        is_bot_message_event_in_assistant_thread,
        is_other_message_sub_event_in_assistant_thread,
    )
    for request in (user_message, bot_message, changed_message, deleted_message):
        clean = admitted(request)
        assert [test(clean) for test in predicates] == [test(request.payload) for test in predicates]
        for name in ("channel", "thread_ts", "bot_id", "subtype", "channel_type"):
            assert clean["event"].get(name) == request.payload["event"].get(name)
    assert "text" not in admitted(deleted_message)["event"]["previous_message"], "only its thread and subtype"


class RecordingSocketClient:
    """What Bolt's `send_response` needs of a Socket Mode client: a logger and somewhere for the acks."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("tests.socket_mode")
        self.acks: list[SocketModeResponse] = []

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        self.acks.append(response)


def test_bolt_routes_what_the_edge_admits_to_its_listeners(slack: FakeSlack) -> None:
    """A real Bolt app gets the admitted payloads (over HTTP and over Socket Mode) and routes them:
    clicks to `app.action`, the assistant's events to its `Assistant`, the Home tab to `app.event`."""
    app = App(
        client=WebClient(token="xoxb-test-token", base_url=slack.base_url),
        signing_secret=SIGNING_SECRET,
        process_before_response=True,
    )
    seen: list[tuple[str, dict[str, Any]]] = []
    assistant = Assistant()
    assistant.thread_started(lambda payload: seen.append(("started", payload)))
    assistant.thread_context_changed(lambda payload: seen.append(("context", payload)))
    assistant.user_message(lambda payload: seen.append(("message", payload)))
    app.assistant(assistant)

    @app.action(PROBE)
    def on_click(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        seen.append(("click", body))

    @app.event("app_home_opened")
    def on_home(ack: Ack, event: dict[str, Any]) -> None:
        ack()
        seen.append(("home", event))

    click, home = probe_click(), app_home_opened()
    started, changed_context = assistant_thread_started(), assistant_thread_context_changed(context_channel="C0002")
    dm = message("hi", channel="D0001", channel_type="im", thread_ts=THREAD_TS)
    for request in (click, home, started, changed_context, dm):
        response = app.dispatch(BoltRequest(body=admitted(request), mode="socket_mode"))
        assert response.status == 200, response.body

    assert seen == [
        ("click", admitted(click)),
        ("home", admitted(home)["event"]),
        ("started", admitted(started)["event"]),
        ("context", admitted(changed_context)["event"]),
        ("message", admitted(dm)["event"]),
    ]

    socket_mode, handler = RecordingSocketClient(), ScreenedSocketModeHandler(app, "xapp-1-A0001-1-test", Arrivals())
    try:
        client = cast(SocketModeClient, socket_mode)
        handler.handle(client, SocketModeRequest("interactive", "envelope-1", copy.deepcopy(click.payload)))
        bad = edited(click.payload, {"actions.0.value": MARKER * 200})
        handler.handle(client, SocketModeRequest("interactive", "envelope-2", bad))
    finally:
        handler.client.close()
    assert seen[-1] == ("click", admitted(click)), "the Socket Mode click, screened, reached the listener"
    assert len([kind for kind, _ in seen if kind == "click"]) == 2, "and the refused one did not"
    assert [ack.envelope_id for ack in socket_mode.acks] == ["envelope-1", "envelope-2"], "both acknowledged"


def hostile_home_and_assistant_events() -> dict[str, SlackRequest]:
    home, started = app_home_opened(), assistant_thread_started(context_channel="C0002")
    in_thread = "event.assistant_thread."
    return {
        "home: no user": changed(home, {"user": ...}),
        "home: user lowercase": changed(home, {"user": "u0001"}),
        "home: user a number": changed(home, {"user": 1}),
        "home: channel not a DM": changed(home, {"channel": "C0001"}),
        "home: channel a path": changed(home, {"channel": "../../x"}),
        "home: tab unknown": changed(home, {"tab": "about"}),
        "home: tab a list": changed(home, {"tab": ["home"]}),
        "home: no event_ts": changed(home, {"event_ts": ...}),
        "assistant: no thread": changed(started, {"assistant_thread": ...}),
        "assistant: thread a string": changed(started, {"assistant_thread": "D0001"}),
        "assistant: user_id a path": event_edited(started, {f"{in_thread}user_id": "../x"}),
        "assistant: channel_id a number": event_edited(started, {f"{in_thread}channel_id": 42}),
        "assistant: thread_ts a word": event_edited(started, {f"{in_thread}thread_ts": "yesterday"}),
        "assistant: no context": event_edited(started, {f"{in_thread}context": ...}),
        "assistant: context a list": event_edited(started, {f"{in_thread}context": []}),
        "assistant: context channel bad": event_edited(started, {f"{in_thread}context.channel_id": "C1;DROP"}),
        "assistant: enterprise lowercase": event_edited(started, {f"{in_thread}context.enterprise_id": "e01"}),
        "assistant: force_search a string": event_edited(started, {f"{in_thread}context.force_search": "yes"}),
        "context changed: no event_ts": changed(assistant_thread_context_changed(), {"event_ts": ...}),
    }


def hostile_clicks(click: SlackRequest) -> dict[str, SlackRequest]:
    action = click.payload["actions"][0]
    edits: dict[str, dict[str, Any]] = {
        "no actions": {"actions": ...},
        "no action": {"actions": []},
        "six actions": {"actions": [action] * 6},
        "actions an object": {"actions": {"0": action}},
        "action a string": {"actions": [PROBE]},
        "action_id a number": {"actions.0.action_id": 42},
        "action_id empty": {"actions.0.action_id": ""},
        "action_id oversize": {"actions.0.action_id": MARKER * 26},
        "block_id missing": {"actions.0.block_id": ...},
        "value oversize": {"actions.0.value": MARKER * 200},
        "value null": {"actions.0.value": None},
        "action type a path": {"actions.0.type": "../button"},
        "action_ts a word": {"actions.0.action_ts": "now"},
        "no user": {"user": ...},
        "user a string": {"user": USER_ID},
        "user id bad": {"user.id": "U0001; rm"},
        "user name oversize": {"user.name": MARKER * 26},
        "team null, no user team": {"team": None, "user.team_id": ...},
        "team a string": {"team": TEAM_ID},
        "team id lowercase": {"team.id": "t0001"},
        "response_url javascript": {"response_url": "javascript:alert(1)"},
        "no response_url": {"response_url": ...},
        "no trigger_id": {"trigger_id": ...},
        "api_app_id bad": {"api_app_id": "app"},
        "container a list": {"container": []},
        "container message_ts a word": {"container.message_ts": "latest"},
        "is_ephemeral a string": {"container.is_ephemeral": "false"},
        "channel id a name": {"channel.id": "general"},
        "message without ts": {"message.ts": ...},
        "metadata nested": {"message.metadata": {"event_type": "x", "event_payload": {"a": {"b": MARKER}}}},
        "metadata type bad": {"message.metadata": {"event_type": "a b", "event_payload": {}}},
    }
    requests = {f"click: {name}": click_edited(click, changes) for name, changes in edits.items()}
    return requests | {
        "click: view_submission": interactive({"type": "view_submission", "view": {"id": "V1", "state": {}}}),
        "click: message_action": interactive({"type": "message_action", "callback_id": MARKER}),
        "click: no type": interactive({"actions": [action]}),
        "click: type a number": interactive({"type": 7, "actions": [action]}),
        "form: neither command nor payload": signed(b"text=" + MARKER.encode(), FORM),
    }


FORM = "application/x-www-form-urlencoded"


def unreadable_clicks() -> dict[str, SlackRequest]:
    """Signed now: a signature made at import would be stale (5 minutes) when a long run gets here."""
    return {
        "click: payload not JSON": signed(b"payload=%7Bnot+json", FORM),
        "click: payload a JSON list": signed(b"payload=%5B1%2C2%5D", FORM),
        "click: payload a JSON string": signed(b"payload=%22block_actions%22", FORM),
        "click: payload not UTF-8": signed(b"payload=%7B%22type%22%3A%22\xff%22%7D", FORM),
    }


def test_hostile_home_assistant_and_interactive_requests_are_refused_and_reach_no_listener(
    running_bot: RunningBot,
    slack: FakeSlack,
    channel_id: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    app = running_bot.bot.app
    dispatched: list[dict[str, Any]] = []
    dispatch = app.dispatch

    def spy(request: BoltRequest) -> BoltResponse:
        dispatched.append(request.body)
        return dispatch(request)

    monkeypatch.setattr(app, "dispatch", spy)
    clicks: list[dict[str, Any]] = []

    @app.action(PROBE)
    def on_probe(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        clicks.append(body)

    click = probe_click(slack.response_url("probe"))
    refused = {name: (request, 200) for name, request in hostile_home_and_assistant_events().items()}
    refused |= {name: (request, 200) for name, request in hostile_clicks(click).items()}
    refused |= {name: (request, 400) for name, request in unreadable_clicks().items()}

    statuses = {name: running_bot.send(request).status for name, (request, _) in refused.items()}

    assert statuses == {name: status for name, (_, status) in refused.items()}
    assert dispatched == [] and clicks == [], "Bolt never saw them"
    assert len(edge_warnings(caplog)) == len(refused), "one warning per refused request"
    assert MARKER not in logged(caplog) and "Traceback" not in caplog.text
    assert slack.calls("views.publish") == [] and slack.responses("probe") == []
    assert answered_only(running_bot, slack, channel_id) == ["echo: sentinel"]

    response = running_bot.send(click)
    assert response.status == 200 and clicks == [admitted(click)], "the well-formed click, and only what it needs"


def test_hostile_interactive_payloads_over_socket_mode_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    click = probe_click()
    payloads = {name: request.payload for name, request in hostile_clicks(click).items() if request.payload}

    verdicts = {name: Edge.screen_payload(payload) for name, payload in payloads.items()}

    assert {name: type(verdict) for name, verdict in verdicts.items()} == dict.fromkeys(payloads, Refused)
    assert {verdict.status for verdict in verdicts.values() if isinstance(verdict, Refused)} == {200}
    assert len(edge_warnings(caplog)) == len(payloads) and MARKER not in logged(caplog)


def test_an_events_authorization_is_kept_checked_and_a_forged_one_refused() -> None:
    """`authorizations[0]` says whose token answers (Bolt reads it first): kept, in Slack's formats only."""
    request = mention("hi")
    assert admitted(request)["authorizations"] == [
        {"is_enterprise_install": False, "team_id": TEAM_ID, "user_id": BOT_USER_ID}
    ]
    for forged, reason in (
        ({"authorizations": "T0001"}, "authorizations is not a list of objects"),
        ({"authorizations": [{"team_id": "../T0001", "is_enterprise_install": False}]}, "authorizations[0].team_id"),
    ):
        verdict = screened(signed(json.dumps(request.payload | forged).encode()))
        assert not isinstance(verdict, Admitted) and reason in str(verdict), verdict


def test_the_bot_keeps_serving_with_more_than_1024_files_open(running_bot: RunningBot) -> None:
    """Slack opens as many connections as it needs; waitress's default select(2) takes no file
    descriptor above 1023, and its loop stopped the server once the process held that many."""
    port = httpx.URL(running_bot.root_url).port
    with contextlib.ExitStack() as held:
        for _ in range(1100):  # the server's end of each connection is a descriptor of this process too
            held.enter_context(socket.create_connection(("127.0.0.1", port)))
        assert httpx.get(f"{running_bot.root_url}/healthz", timeout=10).status_code == 200
        response = running_bot.send(mention("still there?"))
    assert response.status == 200
