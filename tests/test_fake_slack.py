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
    posted = str(client.chat_postMessage(channel="C1", text="draft")["ts"])
    assert client.chat_update(channel="C1", ts=posted, text="edited")["ts"] == posted
    assert client.chat_postEphemeral(channel="C1", user="U2", text="psst")["message_ts"]
    assert client.chat_delete(channel="C1", ts=posted)["ok"]
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
    "stream-no-recipient": (
        "chat.startStream",
        {"json": {"channel": "C1", "thread_ts": "1.000001", "recipient_team_id": TEAM_ID}},
        "missing_recipient_user_id",
        "recipient_user_id is required when streaming into channel C1",
    ),
    "stream-no-team": (
        "chat.startStream",
        {"json": {"channel": "G1", "recipient_user_id": "U2"}},
        "missing_recipient_team_id",
        "recipient_team_id",
    ),
    "chunks-without-type": (
        "chat.startStream",
        {"json": {"channel": "D1", "chunks": [{"text": "hi"}]}},
        "invalid_chunks",
        "chunks must be objects with a type",
    ),
    "chunks-not-json": ("chat.startStream", {"data": {"channel": "D1", "chunks": "[{"}}, "invalid_chunks", "not JSON"),
    "too-long": (
        "chat.startStream",
        {"json": {"channel": "D1", "markdown_text": "x" * 12_001}},
        "msg_too_long",
        "12001 characters",
    ),
    "append-nothing": ("chat.appendStream", {"json": {"channel": "D1", "ts": "1.000001"}}, BAD, "nothing to append"),
    "stop-without-ts": ("chat.stopStream", {"json": {"channel": "D1"}}, BAD, "param 'ts'"),
    "view-not-home": (
        "views.publish",
        {"json": {"user_id": "U1", "view": {"type": "modal", "blocks": BLOCKS}}},
        BAD,
        "must be 'home'",
    ),
    "view-too-long": (
        "views.publish",
        {"json": {"user_id": "U1", "view": {"type": "home", "blocks": BLOCKS * 101}}},
        BAD,
        "at most 100 blocks",
    ),
    "view-not-json": ("views.publish", {"data": {"user_id": "U1", "view": "{"}}, BAD, "view is not JSON"),
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


# -- what the bot left visible: posted, streamed, updated, deleted messages; Home tabs; memberships --------
ANSWER_METADATA = {"event_type": "pixelbot_answer", "event_payload": {"request_id": "r1"}}


def test_chat_stream_records_the_stream_and_its_message(fake: FakeSlack, client: WebClient) -> None:
    before = time.monotonic()
    streamer = client.chat_stream(
        channel="C1", thread_ts="1.000001", recipient_team_id=TEAM_ID, recipient_user_id="U2", buffer_size=6
    )
    for piece in ("Hello", " wor", "ld, ", "again."):
        streamer.append(markdown_text=piece)
    stopped = streamer.stop(markdown_text=" Bye.", blocks=BLOCKS, metadata=ANSWER_METADATA)

    [stream] = fake.wait_for_stream_stopped()
    assert stream == fake.streams("C1")[0] and fake.streams("C2") == []
    assert (stream.channel, stream.ts, stream.thread_ts) == ("C1", streamer.ts, "1.000001")
    assert (stream.recipient_user_id, stream.recipient_team_id) == ("U2", TEAM_ID)
    assert (stream.text, stream.state) == ("Hello world, again. Bye.", "stopped")
    assert (stream.blocks, stream.metadata) == (BLOCKS, ANSWER_METADATA)
    # ChatStream flushes 6+ characters: the start carries "Hello wor", an append "ld, again.", the stop " Bye."
    assert [text for _, text in stream.appends] == ["Hello wor", "ld, again.", " Bye."]
    times = [at for at, _ in stream.appends]
    assert before <= times[0] <= times[1] <= times[2] <= time.monotonic()
    assert fake.calls("chat.startStream")[0].params["chunks"] == [{"type": "markdown_text", "text": "Hello wor"}]
    assert stopped["message"]["text"] == stream.text and stopped["message"]["blocks"] == BLOCKS
    assert (stopped["channel"], stopped["ts"], stopped["message"]["thread_ts"]) == ("C1", stream.ts, "1.000001")
    [shown] = fake.messages("C1", "1.000001")
    assert (shown["ts"], shown["text"], shown["blocks"], shown["metadata"]) == (
        stream.ts,
        stream.text,
        BLOCKS,
        ANSWER_METADATA,
    )
    assert fake.messages("C1") == [shown] and fake.messages("C1", "2.000002") == [] and fake.messages("C2") == []


def test_streaming_methods_take_markdown_text_and_show_the_text_so_far(fake: FakeSlack, client: WebClient) -> None:
    ts = str(client.chat_startStream(channel="D1", thread_ts="1.000001", markdown_text="Hel")["ts"])
    client.chat_appendStream(channel="D1", ts=ts, markdown_text="lo")

    [streaming] = fake.streams()
    assert (streaming.text, streaming.state, streaming.recipient_user_id) == ("Hello", "streaming", None)
    assert [m["text"] for m in client.conversations_replies(channel="D1", ts="1.000001")["messages"]] == ["Hello"]
    with pytest.raises(AssertionError, match="expected 1 stopped streams"):
        fake.wait_for_stream_stopped(timeout=0.05)

    client.chat_appendStream(channel="D1", ts=ts, chunks=[{"type": "markdown_text", "text": ","}, {"type": "x"}])
    answer = client.chat_stopStream(channel="D1", ts=ts, markdown_text=" world")

    assert answer["message"]["text"] == "Hello, world" == fake.messages("D1", "1.000001")[0]["text"]
    assert [text for _, text in fake.streams("D1")[0].appends] == ["Hel", "lo", ",", " world"]


def test_only_a_streaming_message_takes_appends(fake: FakeSlack, client: WebClient) -> None:
    ts = str(client.chat_startStream(channel="D1", thread_ts="1.000001", markdown_text="done")["ts"])
    client.chat_stopStream(channel="D1", ts=ts)
    posted = str(client.chat_postMessage(channel="D1", text="plain")["ts"])

    for method, target in (
        (client.chat_appendStream, ts),
        (client.chat_stopStream, ts),
        (client.chat_appendStream, posted),
        (client.chat_appendStream, "9.000009"),
    ):
        with pytest.raises(SlackApiError) as refused:
            method(channel="D1", ts=target, markdown_text="more")
        assert refused.value.response["error"] == "message_not_in_streaming_state"
    assert fake.streams("D1")[0].text == "done"


def test_a_streaming_message_is_neither_updated_nor_deleted(fake: FakeSlack, client: WebClient) -> None:
    ts = str(client.chat_startStream(channel="D1", thread_ts="1.000001", markdown_text="half")["ts"])

    for call, error in (
        (lambda: client.chat_update(channel="D1", ts=ts, text="whole"), "streaming_state_conflict"),
        (lambda: client.chat_delete(channel="D1", ts=ts), "cant_delete_message"),
    ):
        with pytest.raises(SlackApiError) as refused:
            call()
        assert refused.value.response["error"] == error

    client.chat_stopStream(channel="D1", ts=ts)
    client.chat_update(channel="D1", ts=ts, text="whole")
    assert fake.messages("D1", "1.000001")[0]["text"] == "whole"
    assert fake.streams()[0].text == "half"  # what was streamed stays on record


def test_update_and_delete_change_what_slack_shows(fake: FakeSlack, client: WebClient) -> None:
    first = str(client.chat_postMessage(channel="C1", text="one", metadata=ANSWER_METADATA)["ts"])
    second = str(client.chat_postMessage(channel="C1", text="two")["ts"])
    client.chat_postMessage(channel="C1", text="in a thread", thread_ts=first)
    client.chat_postMessage(channel="C2", text="elsewhere")

    updated = client.chat_update(channel="C1", ts=first, text="one, edited", blocks=BLOCKS)
    client.chat_delete(channel="C1", ts=second)

    assert updated["message"]["text"] == "one, edited" and updated["message"]["blocks"] == BLOCKS
    assert updated["message"]["metadata"] == ANSWER_METADATA and "ts" not in updated["message"]
    [shown] = client.conversations_history(channel="C1", include_all_metadata=True)["messages"]
    assert (shown["ts"], shown["text"], shown["blocks"], shown["metadata"]) == (
        first,
        "one, edited",
        BLOCKS,
        ANSWER_METADATA,
    )
    thread = client.conversations_replies(channel="C1", ts=first)["messages"]
    assert [m["text"] for m in thread] == ["one, edited", "in a thread"]
    assert "metadata" not in thread[0]  # only with include_all_metadata, as Slack
    for call in (
        lambda: client.chat_update(channel="C1", ts=second, text="gone"),
        lambda: client.chat_delete(channel="C1", ts=second),
        lambda: client.chat_update(channel="C2", ts=first, text="wrong channel"),
    ):
        with pytest.raises(SlackApiError, match="message_not_found"):
            call()


def test_history_is_newest_first_after_oldest(fake: FakeSlack, client: WebClient) -> None:
    ts = [str(client.chat_postMessage(channel="C1", text=f"m{i}")["ts"]) for i in range(4)]
    client.chat_postMessage(channel="C1", text="reply", thread_ts=ts[0])

    def texts(**params: Any) -> list[str]:
        return [m["text"] for m in client.conversations_history(channel="C1", **params)["messages"]]

    assert texts() == ["m3", "m2", "m1", "m0"]
    assert texts(oldest=ts[1]) == ["m3", "m2"]
    assert texts(oldest=ts[1], inclusive=True) == ["m3", "m2", "m1"]
    assert texts(oldest=ts[0], latest=ts[3]) == ["m2", "m1"]
    page = client.conversations_history(channel="C1", limit=3)
    assert page["has_more"] is True and len(page["messages"]) == 3
    rest = client.conversations_history(channel="C1", limit=3, cursor=page["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["m0"] and rest["has_more"] is False


def test_a_restarted_bot_finds_its_streamed_answer(fake: FakeSlack, client: WebClient) -> None:
    """What `bot.replies.already_posted` relies on: the answer's metadata, read back after the fact."""
    streamer = client.chat_stream(channel="D1", thread_ts="1.000001")
    streamer.append(markdown_text="the answer")
    streamer.stop(metadata=ANSWER_METADATA)
    # a top-level stream (no thread_ts, which slack_sdk's chat_startStream insists on but Slack does not)
    started = client.api_call(
        "chat.startStream", json={"channel": "C1", "recipient_team_id": TEAM_ID, "recipient_user_id": "U2"}
    )
    top_level = str(started["ts"])
    client.chat_stopStream(channel="C1", ts=top_level, markdown_text="hi", metadata=ANSWER_METADATA)

    replies = client.conversations_replies(channel="D1", ts="1.000001", include_all_metadata=True)["messages"]
    history = client.conversations_history(channel="C1", oldest="1.000001", include_all_metadata=True)["messages"]

    assert [(m["text"], m["metadata"]) for m in replies] == [("the answer", ANSWER_METADATA)]
    assert [(m["ts"], m["text"], m["metadata"]) for m in history] == [(top_level, "hi", ANSWER_METADATA)]


def test_views_publish_echoes_and_records_the_home_tab(fake: FakeSlack, client: WebClient) -> None:
    view = {"type": "home", "blocks": BLOCKS, "private_metadata": "p"}

    first = client.views_publish(user_id="U1", view=view)["view"]
    second = client.views_publish(user_id="U1", view={"type": "home", "blocks": []}, hash=first["hash"])["view"]
    client.views_publish(user_id="U2", view=view)

    assert (first["type"], first["blocks"], first["team_id"], first["private_metadata"]) == (
        "home",
        BLOCKS,
        TEAM_ID,
        "p",
    )
    assert first["id"].startswith("V") and first["id"] != second["id"] and first["hash"] != second["hash"]
    assert [published.view for published in fake.published_views("U1")] == [view, {"type": "home", "blocks": []}]
    assert [published.user_id for published in fake.published_views()] == ["U1", "U1", "U2"]
    with pytest.raises(SlackApiError, match="hash_conflict"):  # a stale hash: the tab changed since
        client.views_publish(user_id="U1", view=view, hash=first["hash"])
    assert len(fake.published_views("U1")) == 2


def test_users_conversations_pages_through_memberships(fake: FakeSlack, client: WebClient) -> None:
    fake.memberships[BOT_USER_ID] = ["C1", "G2", "C3", "D4", "C5"]
    fake.memberships["U9"] = ["C1"]
    fake.channels["C3"] = {"is_archived": True}

    first = client.users_conversations(limit=2)
    second = client.users_conversations(limit=2, cursor=first["response_metadata"]["next_cursor"])

    assert [c["id"] for c in first["channels"]] == ["C1", "C3"] and first["channels"][0]["is_channel"] is True
    assert first["channels"][0] == client.conversations_info(channel="C1")["channel"]
    assert [c["id"] for c in second["channels"]] == ["C5"] and second["response_metadata"]["next_cursor"] == ""
    every = client.users_conversations(types="public_channel,private_channel,im", exclude_archived=True)
    assert [c["id"] for c in every["channels"]] == ["C1", "G2", "D4", "C5"]
    assert [c["id"] for c in client.users_conversations(user="U9")["channels"]] == ["C1"]
    assert client.users_conversations(user="U0")["channels"] == []
    with pytest.raises(SlackApiError, match="invalid_cursor"):
        client.users_conversations(cursor="not a cursor")


def test_reset_forgets_messages_streams_views_and_memberships(fake: FakeSlack, client: WebClient) -> None:
    fake.memberships[BOT_USER_ID] = ["C1"]
    client.chat_postMessage(channel="C1", text="hi")
    client.chat_startStream(channel="D1", thread_ts="1.000001", markdown_text="x")
    client.views_publish(user_id="U1", view={"type": "home", "blocks": []})

    fake.reset()

    assert (fake.messages("C1"), fake.streams(), fake.published_views(), fake.memberships) == ([], [], [], {})
    assert client.conversations_history(channel="C1")["messages"] == []
    assert client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["ok"]


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
