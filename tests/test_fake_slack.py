"""Self-tests of the Slack test doubles: the real slack_sdk and slack-bolt against them, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import jsonschema
import pytest
from slack_bolt import Ack, App, Respond, Say
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from tests.fake_slack import BOT_ID, BOT_USER_ID, TEAM_ID, ApiReply, FakeSlack, rate_limited
from tests.slack_requests import (
    SIGNING_SECRET,
    SlackSender,
    event_callback,
    mention,
    message,
    slash_command,
    url_verification,
)

WRAPPER_SCHEMA = Path("/work/shared/specs/slack/slack_common_event_wrapper_schema.json")
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server
        assert server.spec_errors == []


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url)


def raw_call(fake: FakeSlack, method: str, **kwargs: Any) -> dict[str, Any]:
    """A Web API call bypassing slack_sdk, to send what slack_sdk would refuse to build."""
    kwargs.setdefault("headers", {"Authorization": "Bearer xoxb-test"})
    response = httpx.post(fake.base_url + method, **kwargs)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


# -- the Web API ---------------------------------------------------------------------------------------
def test_auth_test_identifies_the_bot(fake: FakeSlack, client: WebClient) -> None:
    identity = client.auth_test()

    assert (identity["user_id"], identity["bot_id"], identity["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)
    assert fake.calls("auth.test")[0].token == "xoxb-test"


def test_post_message_records_params_and_answers_increasing_ts(fake: FakeSlack, client: WebClient) -> None:
    first = client.chat_postMessage(channel="C1", text="hello", blocks=BLOCKS, thread_ts="1.000001")
    second = client.chat_postMessage(channel="C1", text="again")

    call = fake.wait_for_calls("chat.postMessage", 2)[0]
    assert call.params["text"] == "hello" and call.json_param("blocks") == BLOCKS
    assert call.headers["content-type"].startswith("application/json")
    assert first["message"]["blocks"] == BLOCKS and first["message"]["thread_ts"] == "1.000001"
    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])


def test_everyday_bot_methods_answer_realistically(fake: FakeSlack, client: WebClient) -> None:
    fake.users["UADMIN"] = {"is_admin": True}

    assert client.users_info(user="UADMIN")["user"]["is_admin"] is True
    assert client.users_info(user="U2")["user"]["is_admin"] is False
    assert client.conversations_open(users="U2")["channel"]["id"] == "DU2"
    assert client.conversations_info(channel="C1")["channel"]["is_channel"] is True
    assert client.reactions_add(channel="C1", name="eyes", timestamp="1.000001")["ok"]
    assert client.reactions_remove(channel="C1", name="eyes", timestamp="1.000001")["ok"]
    assert client.chat_update(channel="C1", ts="1.000001", text="edited")["ts"] == "1.000001"
    assert client.chat_postEphemeral(channel="C1", user="U2", text="psst")["message_ts"]
    assert client.chat_delete(channel="C1", ts="1.000001")["ok"]
    assert client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.000001", status="is thinking...")["ok"]
    assert client.conversations_replies(channel="C1", ts="1.000001")["messages"] == []
    assert [call.method for call in fake.calls()][:3] == ["users.info", "users.info", "conversations.open"]


def test_query_string_params_are_validated_too(fake: FakeSlack) -> None:
    response = httpx.get(fake.base_url + "users.info", params={"token": "xoxb-test", "user": "U9"})

    assert response.json()["user"]["id"] == "U9"
    assert fake.calls("users.info")[0].http_method == "GET"


def test_files_upload_v2_stores_the_uploaded_file(fake: FakeSlack, client: WebClient) -> None:
    response = client.files_upload_v2(
        channel="C1", content="a,b\n1,2\n", filename="t.csv", initial_comment="here", thread_ts="1.000001"
    )

    [uploaded] = fake.uploaded_files()
    assert response["file"]["id"] == uploaded.file_id
    assert (uploaded.filename, uploaded.title, uploaded.content) == ("t.csv", "t.csv", b"a,b\n1,2\n")
    assert (uploaded.channel_id, uploaded.initial_comment, uploaded.thread_ts) == ("C1", "here", "1.000001")


def test_upload_url_accepts_multipart(fake: FakeSlack, client: WebClient) -> None:
    started = client.files_getUploadURLExternal(filename="img.png", length=3)
    httpx.post(str(started["upload_url"]), files={"file": ("img.png", b"PNG")}).raise_for_status()
    client.files_completeUploadExternal(files=[{"id": str(started["file_id"]), "title": "Pic"}], channel_id="C2")

    assert [(f.title, f.content) for f in fake.uploaded_files()] == [("Pic", b"PNG")]


def test_completing_an_upload_that_never_happened_fails(fake: FakeSlack, client: WebClient) -> None:
    started = client.files_getUploadURLExternal(filename="x.txt", length=1)

    with pytest.raises(SlackApiError, match="file_not_found"):
        client.files_completeUploadExternal(files=[{"id": str(started["file_id"])}])


# -- scripting -----------------------------------------------------------------------------------------
def test_rate_limit_is_retried_by_slack_sdk(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", rate_limited(retry_after=0))
    client = WebClient(
        token="xoxb-test",
        base_url=fake.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )

    assert client.chat_postMessage(channel="C1", text="hi")["ok"]
    assert [call.status for call in fake.calls("chat.postMessage")] == [429, 200]


def test_scripted_failures_are_consumed_in_order(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", "not_in_channel", 500, ApiReply(200, {"ok": False, "error": "is_archived"}))

    for expected in ("not_in_channel", "fatal_error", "is_archived"):
        with pytest.raises(SlackApiError) as failure:
            client.chat_postMessage(channel="C1", text="hi")
        assert failure.value.response["error"] == expected
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]


def test_handler_overrides_the_builtin_answer(fake: FakeSlack, client: WebClient) -> None:
    fake.set_handler("conversations.info", lambda p: {"ok": True, "channel": {"id": p["channel"], "name": "x"}})
    assert client.conversations_info(channel="C7")["channel"]["name"] == "x"

    fake.set_handler("conversations.info", None)
    assert client.conversations_info(channel="C7")["channel"]["name"] == "channel-c7"


def test_delay_makes_slack_slow(fake: FakeSlack) -> None:
    fake.set_delay(0.5, "auth.test")

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(fake.base_url + "auth.test", headers={"Authorization": "Bearer x"}, timeout=0.1)


def test_scripting_an_unknown_method_is_refused(fake: FakeSlack) -> None:
    with pytest.raises(ValueError, match=r"chat\.postMessages"):
        fake.fail_next("chat.postMessages", "ratelimited")


def test_waiting_too_long_reports_what_arrived(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="only one")

    with pytest.raises(AssertionError, match=r"expected 2 chat.postMessage calls.*only one"):
        fake.wait_for_calls("chat.postMessage", 2, timeout=0.1)


# -- validation ----------------------------------------------------------------------------------------
BAD = "invalid_arguments"
INVALID_CALLS = {
    "missing-param": ("chat.postMessage", {"data": {"text": "hi"}}, BAD, "param 'channel'"),
    "unknown-method": ("chat.postMessages", {"data": {"channel": "C1"}}, "unknown_method", "no such method"),
    "no-token": ("chat.postMessage", {"data": {"channel": "C1"}, "headers": {}}, "not_authed", "no token"),
    "json-to-form-only": ("dnd.setSnooze", {"json": {"num_minutes": 5}}, BAD, "JSON body"),
    "bad-integer": ("users.list", {"data": {"limit": "ten"}}, BAD, "'limit'='ten' is not integer"),
    "upload-without-length": ("files.getUploadURLExternal", {"data": {"filename": "a"}}, BAD, "'length'"),
    "files-not-refs": ("files.completeUploadExternal", {"data": {"files": "[1]"}}, BAD, "{id, title}"),
    "no-thread_ts": ("assistant.threads.setStatus", {"json": {"channel_id": "D1"}}, BAD, "thread_ts"),
}


@pytest.mark.parametrize(
    ("method", "request_kwargs", "error", "detail"), INVALID_CALLS.values(), ids=list(INVALID_CALLS)
)
def test_invalid_calls_land_in_spec_errors(
    fake: FakeSlack, method: str, request_kwargs: dict[str, Any], error: str, detail: str
) -> None:
    assert raw_call(fake, method, **request_kwargs) == {"ok": False, "error": error}

    assert len(fake.spec_errors) >= 1 and detail in fake.spec_errors[0]
    fake.spec_errors.clear()


def test_response_url_records_posts(fake: FakeSlack) -> None:
    httpx.post(fake.response_url("cmd 1"), json={"text": "done", "response_type": "ephemeral"}).raise_for_status()

    assert [post.payload["text"] for post in fake.wait_for_responses(1, name="cmd 1")] == ["done"]
    assert fake.responses("other") == []


# -- requests from Slack -------------------------------------------------------------------------------
def test_event_bodies_match_the_wrapper_schema_and_are_signed() -> None:
    schema = json.loads(WRAPPER_SCHEMA.read_text())
    verifier = SignatureVerifier(SIGNING_SECRET)
    requests = [
        mention("hi"),
        message("yo", channel_type="im"),
        event_callback({"type": "x", "event_ts": "1.2"}),
    ]

    for request in requests:
        jsonschema.validate(json.loads(request.body), schema)
        assert verifier.is_valid_request(request.body, dict(request.headers))
    assert len({r.payload["event_id"] for r in requests}) == 3
    assert requests[0].payload["event"]["ts"] < requests[1].payload["event"]["ts"]
    assert requests[0].payload["event"]["text"] == f"<@{BOT_USER_ID}> hi"


def test_retry_resends_the_same_event_with_retry_headers() -> None:
    original = mention("hi", event_id="Ev1", thread_ts="1.000001")
    retried = original.retry(2, "http_error")

    assert retried.body == original.body and retried.payload["event"]["thread_ts"] == "1.000001"
    assert (retried.headers["X-Slack-Retry-Num"], retried.headers["X-Slack-Retry-Reason"]) == (
        "2",
        "http_error",
    )
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(retried.body, dict(retried.headers))
    stale = original.signed(timestamp=int(time.time()) - 600)
    assert not SignatureVerifier(SIGNING_SECRET).is_valid_request(stale.body, dict(stale.headers))


def test_slash_command_is_a_signed_form() -> None:
    request = slash_command("/pixel", "status now", response_url="http://x/response/a")

    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(request.body.decode()))
    assert form["command"] == "/pixel" and form["text"] == "status now" and form["trigger_id"]
    expected = {"token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name"}
    assert expected | {"api_app_id", "response_url"} <= form.keys()
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(request.body, dict(request.headers))


# -- all together: Bolt served over HTTP, driven by SlackSender, talking to FakeSlack -------------------
class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def bolt_url(fake: FakeSlack) -> Iterator[str]:
    app = App(signing_secret=SIGNING_SECRET, client=WebClient(token="xoxb-test", base_url=fake.base_url))

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], say: Say) -> None:
        say(text=f"you said: {event['text']}", thread_ts=event["ts"])

    @app.command("/pixel")
    def on_command(ack: Ack, respond: Respond, command: dict[str, Any]) -> None:
        ack()
        respond(f"done: {command['text']}")

    server: WSGIServer = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/slack/events"
    server.shutdown()
    server.server_close()


def test_bolt_end_to_end(fake: FakeSlack, bolt_url: str) -> None:
    with SlackSender() as slack:
        challenge = url_verification("abc")
        assert slack.send(bolt_url, challenge).json() == {"challenge": "abc"}

        request = mention("hello")
        assert slack.send(bolt_url, request).status == 200
        [reply] = fake.wait_for_calls("chat.postMessage")
        assert reply.params["text"] == f"you said: <@{BOT_USER_ID}> hello"
        assert reply.params["thread_ts"] == request.payload["event"]["ts"]

        command = slash_command("/pixel", "it", response_url=fake.response_url("pixel"))
        status, _ = slack.send(bolt_url, command)[:2]
        assert status == 200
        assert fake.wait_for_responses(1, name="pixel")[0].payload["text"] == "done: it"

        forged = mention("hello").signed(signing_secret="wrong")
        assert slack.send(bolt_url, forged).status == 401
