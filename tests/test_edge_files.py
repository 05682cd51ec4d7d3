"""Files at the edge: a message's `files` and `file_deleted` events pass with only the fields the bot reads.

A file object from Slack carries some 150 fields (thumbnails, previews, shares, a canvas's template...);
the edge keeps what identifies a file and fetches it, checks each, and refuses the whole event over one
that is wrong, naming the field's path in the log line and never its value.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from slack_bolt import Ack, App, BoltRequest
from slack_sdk import WebClient

from bot.edge import MAX_CHANNEL_IDS, MAX_FILES, Admitted, Edge, Refused, Verdict
from tests.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack
from tests.slack_requests import (
    CHANNEL_ID,
    SIGNING_SECRET,
    USER_ID,
    SlackRequest,
    event_callback,
    mention,
    message,
    next_ts,
)
from tests.specs import SLACK_SPECS_DIR

MARKER = "POISONVALUE"  # in every value that must not reach the bot, nor its log
FILE_ID = "F0FILE0001"
URL_PRIVATE = "https://files.slack.com/files-pri/T0001-F0FILE0001/report.pdf"
URL_DOWNLOAD = "https://files.slack.com/files-pri/T0001-F0FILE0001/download/report.pdf"
PERMALINK = "https://pixelbot-test.slack.com/files/U0001/F0FILE0001/report.pdf"
KEPT = {
    "id": FILE_ID,
    "name": "report.pdf",
    "title": "Quarterly report",
    "mimetype": "application/pdf",
    "filetype": "pdf",
    "size": 43518,
    "mode": "hosted",
    "user": USER_ID,
    "url_private": URL_PRIVATE,
    "url_private_download": URL_DOWNLOAD,
    "permalink": PERMALINK,
    "is_external": False,
}
TOMBSTONE = {"id": "F0GONE0001", "mode": "tombstone"}


def sample(name: str) -> dict[str, Any]:
    """One of Slack's sample payloads (every string in it empty, every number 123)."""
    payload: dict[str, Any] = json.loads((SLACK_SPECS_DIR / "samples" / "events" / name).read_text())
    return payload


def poisoned(value: Any) -> Any:
    """`value` with every string in it replaced by `MARKER`: what the edge must drop, made visible."""
    if isinstance(value, str):
        return MARKER
    if isinstance(value, dict):
        return {name: poisoned(item) for name, item in value.items()}
    if isinstance(value, list):
        return [poisoned(item) for item in value]
    return value


def slack_file(**fields: Any) -> dict[str, Any]:
    """A file object in the shape of the sample's, its kept fields valid and all the others poisoned;
    a field set to `...` is removed."""
    file = poisoned(sample("MessageFileSharePayload.json")["event"]["files"][0]) | KEPT | fields
    return {name: value for name, value in file.items() if value is not ...}


def file_share(files: Any, **event: Any) -> SlackRequest:
    """A `file_share` message as the sample has it (blocks, attachments and all), carrying `files`."""
    shape = sample("MessageFileSharePayload.json")["event"]
    ts = next_ts()
    base = poisoned(shape) | {
        "type": "message",
        "subtype": "file_share",
        "text": "here it is",
        "files": files,
        "upload": False,
        "display_as_bot": False,
        "user": USER_ID,
        "ts": ts,
        "channel": CHANNEL_ID,
        "event_ts": ts,
        "channel_type": "channel",
    }
    for name in ("thread_ts", "parent_user_id"):
        del base[name]
    return event_callback(base | event)


def file_deleted(**event: Any) -> SlackRequest:
    base = {"type": "file_deleted", "file_id": FILE_ID, "event_ts": next_ts()} | event
    return event_callback({name: value for name, value in base.items() if value is not ...})


def screened(request: SlackRequest) -> Verdict:
    """The edge's verdict over HTTP (header names lowercase), checked to be Socket Mode's as well."""
    verdict = Edge(SIGNING_SECRET).screen(
        request.body, {name.lower(): value for name, value in request.headers.items()}
    )
    assert Edge.screen_payload(copy.deepcopy(request.payload)) == verdict, "Socket Mode: the same verdict"
    return verdict


def admitted(request: SlackRequest) -> dict[str, Any]:
    verdict = screened(request)
    assert isinstance(verdict, Admitted), verdict
    return verdict.payload


def refusal(request: SlackRequest) -> str:
    """Why the edge refused `request`, after checking it was acknowledged (so Slack won't retry it)."""
    verdict = screened(request)
    assert isinstance(verdict, Refused), verdict
    assert (verdict.status, verdict.body) == (200, "")
    assert MARKER not in verdict.reason, "the reason names the field, never its value"
    return verdict.reason


def test_a_file_share_message_keeps_exactly_the_file_fields_the_bot_reads() -> None:
    request = file_share([slack_file()])

    event = admitted(request)["event"]

    assert event == {
        "type": "message",
        "channel": CHANNEL_ID,
        "ts": request.payload["event"]["ts"],
        "text": "here it is",
        "user": USER_ID,
        "subtype": "file_share",
        "channel_type": "channel",
        "files": [KEPT],
    }, "the blocks, attachments, `upload` and `display_as_bot`, and all the file's other fields, dropped"


def test_a_mention_keeps_its_files_and_a_deleted_file_passes_as_a_tombstone() -> None:
    request = mention("what's in these?", extra={"files": [slack_file(), TOMBSTONE]})

    files = admitted(request)["event"]["files"]

    assert files == [KEPT, {"id": "F0GONE0001", "name": "", "mode": "tombstone"}], "a missing name is empty"


def test_an_edited_message_keeps_the_files_of_its_new_version() -> None:
    ts = next_ts()
    edit = {"ts": ts, "text": "edited", "user": USER_ID, "files": [slack_file(), TOMBSTONE]}
    request = message("", extra={"subtype": "message_changed", "message": edit})

    new_version = admitted(request)["event"]["message"]

    assert new_version == {
        "ts": ts,
        "text": "edited",
        "user": USER_ID,
        "files": [KEPT, {"id": "F0GONE0001", "name": "", "mode": "tombstone"}],
    }


def test_a_file_keeps_only_the_fields_present_and_repairs_its_name() -> None:
    minimal = {"id": FILE_ID, "name": "caf\ud800.txt", "title": None, "size": 0, "is_external": None}
    external = {"id": "F0EXT0001", "title": "", "mimetype": "", "mode": "external", "is_external": True}

    files = admitted(mention("files", extra={"files": [minimal, external]}))["event"]["files"]

    assert files == [
        {"id": FILE_ID, "name": "caf\ufffd.txt", "size": 0},
        {"id": "F0EXT0001", "name": "", "title": "", "mimetype": "", "mode": "external", "is_external": True},
    ], "a lone surrogate replaced, a null field taken as absent, empty titles and MIME types kept"


def test_a_message_of_at_most_max_files_files_is_admitted_and_one_more_is_refused() -> None:
    files = [slack_file(id=f"F{index:09d}") for index in range(MAX_FILES + 1)]

    assert len(admitted(file_share(files[:MAX_FILES]))["event"]["files"]) == MAX_FILES
    assert f"event.files is not a list of at most {MAX_FILES} files" in refusal(file_share(files))
    assert "event.files is not a list" in refusal(file_share({"0": slack_file()}))


HOSTILE_FILES: dict[str, tuple[dict[str, Any], str]] = {
    "id lowercase": ({"id": f"f{MARKER}"}, "event.files[1].id is missing or not in Slack's format"),
    "id a path": ({"id": f"F../{MARKER}"}, "event.files[1].id is missing"),
    "id missing": ({"id": ...}, "event.files[1].id is missing"),
    "id a number": ({"id": 42}, "event.files[1].id is missing"),
    "download a javascript URL": (
        {"url_private_download": f"javascript:alert('{MARKER}')"},
        "event.files[1].url_private_download is not an http(s) URL",
    ),
    "download not a URL": ({"url_private_download": MARKER}, "event.files[1].url_private_download is not an http"),
    "download a number": ({"url_private_download": 1}, "event.files[1].url_private_download is not a string"),
    "url_private with a newline": ({"url_private": f"{URL_PRIVATE}\n{MARKER}"}, "event.files[1].url_private is not"),
    "url_private oversize": ({"url_private": URL_PRIVATE + MARKER * 200}, "event.files[1].url_private is not"),
    "permalink ftp": ({"permalink": f"ftp://{MARKER}/x"}, "event.files[1].permalink is not an http(s) URL"),
    "size negative": ({"size": -1}, "event.files[1].size is not a number of bytes"),
    "size a boolean": ({"size": True}, "event.files[1].size is not a number of bytes"),
    "size a string": ({"size": MARKER}, "event.files[1].size is not a number of bytes"),
    "size a float": ({"size": 1.5}, "event.files[1].size is not a number of bytes"),
    "size too large": ({"size": 2**63}, "event.files[1].size is not a number of bytes"),
    "name oversize": ({"name": MARKER * 91}, "event.files[1].name is missing, empty or over 1000 characters"),
    "name a list": ({"name": [MARKER]}, "event.files[1].name is not a string"),
    "title oversize": ({"title": MARKER * 91}, "event.files[1].title is missing, empty or over 1000 characters"),
    "mimetype not ASCII": ({"mimetype": f"image/{MARKER}é"}, "event.files[1].mimetype is not printable ASCII"),
    "mimetype a control": ({"mimetype": f"text/{MARKER}\r\n"}, "event.files[1].mimetype is not printable ASCII"),
    "mimetype oversize": ({"mimetype": MARKER * 24}, "event.files[1].mimetype is not printable ASCII"),
    "filetype a path": ({"filetype": f"../{MARKER}"}, "event.files[1].filetype is missing or not in Slack's format"),
    "filetype empty": ({"filetype": ""}, "event.files[1].filetype is missing or not in Slack's format"),
    "mode uppercase": ({"mode": MARKER}, "event.files[1].mode is missing or not in Slack's format"),
    "user a bot id": ({"user": f"B{MARKER}"}, "event.files[1].user is missing or not in Slack's format"),
    "is_external a string": ({"is_external": "false"}, "event.files[1].is_external is not a boolean"),
}


@pytest.mark.parametrize("fields, reason", HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
def test_a_message_with_one_file_the_bot_cant_use_is_refused_naming_the_field(
    fields: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The file is the second one, so the path names which; the whole event is refused, its text too."""
    caplog.set_level(logging.INFO)

    why = refusal(file_share([slack_file(), slack_file(**fields)]))

    assert reason in why
    warnings = [record.getMessage() for record in caplog.records if record.name == "bot.edge"]
    assert len(warnings) == 2 and all(reason in line and MARKER not in line for line in warnings), "HTTP, Socket Mode"


def test_the_file_checks_apply_to_mentions_and_edited_messages_too() -> None:
    bad = slack_file(size=-1)
    edit = {"ts": next_ts(), "text": "edited", "files": [bad]}

    assert "event.files[0].size is not" in refusal(mention("look", extra={"files": [bad]}))
    assert "event.files[0] is not an object" in refusal(mention("look", extra={"files": [FILE_ID]}))
    assert "event.files is not a list" in refusal(mention("look", extra={"files": None}))
    changed = message("", extra={"subtype": "message_changed", "message": edit})
    assert "event.message.files[0].size is not" in refusal(changed)


def test_file_deleted_is_admitted_with_its_file_and_channels() -> None:
    plain = file_deleted()
    with_channels = file_deleted(channel_ids=[CHANNEL_ID, "G0PRIVATE1", "D0001"], team=TEAM_ID, extra=MARKER)
    no_channels = file_deleted(channel_ids=[])

    assert admitted(plain) == {
        "type": "event_callback",
        "team_id": TEAM_ID,
        "event_id": plain.payload["event_id"],
        "event": {"type": "file_deleted", "file_id": FILE_ID, "event_ts": plain.payload["event"]["event_ts"]},
        "authorizations": [{"is_enterprise_install": False, "team_id": TEAM_ID, "user_id": BOT_USER_ID}],
    }
    assert admitted(with_channels)["event"] == {
        "type": "file_deleted",
        "file_id": FILE_ID,
        "event_ts": with_channels.payload["event"]["event_ts"],
        "channel_ids": [CHANNEL_ID, "G0PRIVATE1", "D0001"],
    }, "and nothing else"
    assert admitted(no_channels)["event"]["channel_ids"] == []


HOSTILE_DELETIONS: dict[str, tuple[dict[str, Any], str]] = {
    "file_id lowercase": ({"file_id": f"f{MARKER}"}, "event.file_id is missing or not in Slack's format"),
    "file_id a path": ({"file_id": f"F0001/../{MARKER}"}, "event.file_id is missing or not in Slack's format"),
    "file_id missing": ({"file_id": ...}, "event.file_id is missing or not in Slack's format"),
    "file_id an object": ({"file_id": {"id": FILE_ID}}, "event.file_id is missing or not in Slack's format"),
    "event_ts missing": ({"event_ts": ...}, "event.event_ts is missing or not in Slack's format"),
    "channel_ids a string": ({"channel_ids": CHANNEL_ID}, "event.channel_ids is not a list"),
    "channel_ids too many": ({"channel_ids": [CHANNEL_ID] * (MAX_CHANNEL_IDS + 1)}, "event.channel_ids is not a list"),
    "channel_ids a bad one": ({"channel_ids": [CHANNEL_ID, f"C;{MARKER}"]}, "event.channel_ids has a channel not in"),
    "channel_ids a number": ({"channel_ids": [1]}, "event.channel_ids has a channel not in Slack's format"),
}


@pytest.mark.parametrize("fields, reason", HOSTILE_DELETIONS.values(), ids=HOSTILE_DELETIONS.keys())
def test_a_file_deleted_event_the_bot_cant_use_is_refused_naming_the_field(fields: dict[str, Any], reason: str) -> None:
    assert reason in refusal(file_deleted(**fields))


def test_bolt_routes_the_admitted_file_events_to_their_listeners(slack: FakeSlack) -> None:
    """A real Bolt app takes the normalised payloads: a `file_share` message to `app.message` (whose
    default subtypes include it), a mention with files to `app_mention`, `file_deleted` to `app.event`."""
    app = App(
        client=WebClient(token="xoxb-test-token", base_url=slack.base_url),
        signing_secret=SIGNING_SECRET,
        process_before_response=True,
    )
    seen: list[tuple[str, dict[str, Any]]] = []

    @app.message()
    def on_message(event: dict[str, Any]) -> None:
        seen.append(("message", event))

    @app.event("app_mention")
    def on_mention(ack: Ack, event: dict[str, Any]) -> None:
        ack()
        seen.append(("mention", event))

    @app.event("file_deleted")
    def on_deleted(ack: Ack, event: dict[str, Any]) -> None:
        ack()
        seen.append(("deleted", event))

    shared = file_share([slack_file()])
    mentioned = mention("look", extra={"files": [slack_file()]})
    deleted = file_deleted(channel_ids=[CHANNEL_ID])
    for request in (shared, mentioned, deleted):
        response = app.dispatch(BoltRequest(body=admitted(request), mode="socket_mode"))
        assert response.status == 200, response.body

    assert seen == [
        ("message", admitted(shared)["event"]),
        ("mention", admitted(mentioned)["event"]),
        ("deleted", admitted(deleted)["event"]),
    ]
