"""Reading Slack workspace exports: folders and zips, partly broken files, filters. No Slack, no Pixeltable."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.errors import PixelbotError
from agent.slack_export import ExportedMessage, ExportFormatError, Skipped, SlackExport, open_export

CHANNELS = [{"id": "C0GENERAL", "name": "general"}, {"id": "C0RANDOM", "name": "random"}]
USERS = [
    {"id": "U0ALICE", "name": "alice", "real_name": "Alice Liddell", "profile": {"display_name": "ally"}},
    {"id": "U0BOB", "name": "bob", "profile": {}},
]
GENERAL_DAY_1 = [
    {"type": "message", "ts": "1700000000.000100", "user": "U0ALICE", "text": "hello 👋"},
    {"type": "message", "ts": "1700000005.000200", "user": "U0BOB", "text": "hi alice"},
]
GENERAL_DAY_2 = [
    {"type": "message", "ts": "1700086400.000000", "user": "U0ALICE", "text": "new day"},
]
RANDOM_DAY_1 = [{"type": "message", "ts": "1700000001.000000", "user": "U0BOB", "text": "random thought"}]


def standard_files() -> dict[str, Any]:
    """A small, valid export: relative file name -> JSON content."""
    return {
        "channels.json": CHANNELS,
        "users.json": USERS,
        "general/2023-11-14.json": GENERAL_DAY_1,
        "general/2023-11-15.json": GENERAL_DAY_2,
        "random/2023-11-14.json": RANDOM_DAY_1,
    }


def write_folder(root: Path, files: dict[str, Any]) -> Path:
    """Write `files` under `root`; a str value is written as is (for broken JSON), anything else as JSON."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return root


def write_zip(path: Path, files: dict[str, Any], folder: str = "") -> Path:
    """Write `files` into a zip at `path`, under `folder/` if given."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            data = content if isinstance(content, str) else json.dumps(content)
            archive.writestr(f"{folder}/{name}" if folder else name, data)
    return path


def texts(export: SlackExport, channel_ids: list[str] | None = None) -> list[str]:
    return [m.text for m in export.messages(channel_ids)]


def test_folder_export_yields_every_message_with_channel_user_and_time(tmp_path: Path) -> None:
    export = open_export(write_folder(tmp_path / "export", standard_files()))

    assert export.channels == {"C0GENERAL": "general", "C0RANDOM": "random"}
    messages = list(export.messages())
    assert messages[0] == ExportedMessage(
        channel_id="C0GENERAL",
        channel_name="general",
        ts="1700000000.000100",
        thread_ts="",
        user="U0ALICE",
        user_name="Alice Liddell",
        text="hello 👋",
        at=datetime(2023, 11, 14, 22, 13, 20, 100, tzinfo=UTC),
    )
    assert [(m.channel_name, m.text) for m in messages] == [
        ("general", "hello 👋"),
        ("general", "hi alice"),
        ("general", "new day"),
        ("random", "random thought"),
    ]
    assert export.skipped == []
    assert export.count() == 4


@pytest.mark.parametrize("folder", ["", "slack-export"], ids=["flat", "enclosing-folder"])
def test_zip_export_reads_like_a_folder(tmp_path: Path, folder: str) -> None:
    export = open_export(write_zip(tmp_path / "export.zip", standard_files(), folder))

    assert export.channels == {"C0GENERAL": "general", "C0RANDOM": "random"}
    assert texts(export) == ["hello 👋", "hi alice", "new day", "random thought"]
    assert texts(export) == ["hello 👋", "hi alice", "new day", "random thought"]  # re-readable
    assert export.count() == 4


def test_folder_with_the_export_in_its_only_subfolder(tmp_path: Path) -> None:
    write_folder(tmp_path / "outer" / "slack-export", standard_files())

    assert texts(open_export(tmp_path / "outer"), ["random"]) == ["random thought"]


def test_users_resolve_to_real_name_else_name_else_empty(tmp_path: Path) -> None:
    files = standard_files()
    files["general/2023-11-14.json"] = [
        {"ts": "1700000000.000001", "user": "U0ALICE", "text": "a"},
        {"ts": "1700000000.000002", "user": "U0BOB", "text": "b"},
        {"ts": "1700000000.000003", "user": "U0STRANGER", "text": "c"},
        {"ts": "1700000000.000004", "text": "d"},
    ]
    export = open_export(write_folder(tmp_path, files))

    assert export.users == {"U0ALICE": "Alice Liddell", "U0BOB": "bob"}
    assert [(m.user, m.user_name) for m in export.messages(["general"])][:4] == [
        ("U0ALICE", "Alice Liddell"),
        ("U0BOB", "bob"),
        ("U0STRANGER", ""),
        ("", ""),
    ]


def test_thread_parent_has_empty_thread_ts_and_replies_carry_it(tmp_path: Path) -> None:
    parent = "1700000000.000100"
    files = standard_files()
    files["general/2023-11-14.json"] = [
        {"ts": parent, "thread_ts": parent, "reply_count": 2, "user": "U0ALICE", "text": "question?"},
        {"ts": "1700000010.000000", "thread_ts": parent, "user": "U0BOB", "text": "answer"},
        {
            "ts": "1700000020.000000",
            "thread_ts": parent,
            "subtype": "thread_broadcast",
            "user": "U0BOB",
            "text": "also",
        },
        {"ts": "1700000030.000000", "user": "U0ALICE", "text": "top level"},
    ]
    export = open_export(write_folder(tmp_path, files))

    assert [(m.text, m.thread_ts) for m in export.messages(["general"])][:4] == [
        ("question?", ""),
        ("answer", parent),
        ("also", parent),
        ("top level", ""),
    ]


def test_messages_are_ordered_by_ts_within_a_channel(tmp_path: Path) -> None:
    files = standard_files()
    files["general/2023-11-14.json"] = [
        {"ts": "1700000009.000000", "user": "U0ALICE", "text": "third"},
        {"ts": "999999999.000000", "user": "U0ALICE", "text": "first"},  # fewer digits: not a string sort
        {"ts": "1700000001.000000", "user": "U0ALICE", "text": "second"},
    ]
    del files["general/2023-11-15.json"]

    assert texts(open_export(write_folder(tmp_path, files)), ["general"]) == ["first", "second", "third"]


def test_system_bot_and_empty_messages_are_skipped_silently(tmp_path: Path) -> None:
    files = standard_files()
    files["general/2023-11-14.json"] = [
        {"ts": "1700000000.000001", "subtype": "channel_join", "user": "U0BOB", "text": "<@U0BOB> has joined"},
        {"ts": "1700000000.000002", "subtype": "channel_leave", "user": "U0BOB", "text": "left"},
        {"ts": "1700000000.000003", "subtype": "channel_topic", "user": "U0BOB", "text": "set the topic"},
        {"ts": "1700000000.000004", "subtype": "channel_purpose", "user": "U0BOB", "text": "set the purpose"},
        {"ts": "1700000000.000005", "subtype": "channel_name", "user": "U0BOB", "text": "renamed"},
        {"ts": "1700000000.000006", "subtype": "bot_message", "username": "old-style bot", "text": "beep"},
        {"ts": "1700000000.000007", "bot_id": "B02", "user": "U0BOT", "text": "an app's message"},
        {"ts": "1700000000.000008", "user": "U0ALICE", "text": ""},
        {"ts": "1700000000.000009", "user": "U0ALICE", "text": "   "},
        {"ts": "1700000000.000010", "user": "U0ALICE", "text": "kept plain"},
        {"ts": "1700000000.000011", "subtype": "file_share", "user": "U0ALICE", "text": "kept file", "files": [{}]},
        {"ts": "1700000000.000012", "subtype": "me_message", "user": "U0ALICE", "text": "kept me"},
        {"ts": "1700000000.000013", "user": "U0ALICE", "text": "kept edited", "edited": {"ts": "1700000001.0"}},
    ]
    del files["general/2023-11-15.json"]
    export = open_export(write_folder(tmp_path, files))

    assert texts(export, ["general"]) == ["kept plain", "kept file", "kept me", "kept edited"]
    assert export.skipped == []


def test_broken_daily_files_are_recorded_and_the_rest_imports(tmp_path: Path) -> None:
    files = standard_files()
    files["general/2023-11-13.json"] = '[{"ts": "1699999999.000000", "text": "trunc'
    files["general/2023-11-16.json"] = {"not": "a list"}
    export = open_export(write_folder(tmp_path, files))

    assert texts(export) == ["hello 👋", "hi alice", "new day", "random thought"]
    assert [s.where for s in export.skipped] == ["general/2023-11-13.json", "general/2023-11-16.json"]
    assert export.skipped[0].why.startswith("not valid JSON")
    assert export.skipped[1].why == "not a JSON list of messages"


def test_broken_daily_file_in_a_zip_is_recorded(tmp_path: Path) -> None:
    files = standard_files()
    files["random/2023-11-15.json"] = "{{{"
    export = open_export(write_zip(tmp_path / "export.zip", files, "export"))

    assert texts(export, ["random"]) == ["random thought"]
    assert [s.where for s in export.skipped] == ["random/2023-11-15.json"]


def test_messages_without_a_valid_ts_are_recorded_and_the_rest_imports(tmp_path: Path) -> None:
    files = standard_files()
    files["random/2023-11-14.json"] = [
        {"user": "U0BOB", "text": "no ts"},
        {"ts": "yesterday", "user": "U0BOB", "text": "bad ts"},
        "not an object",
        {"ts": "1700000001.000000", "user": "U0BOB", "text": "fine"},
    ]
    export = open_export(write_folder(tmp_path, files))

    assert texts(export, ["random"]) == ["fine"]
    assert export.skipped == [
        Skipped("random/2023-11-14.json message 1", "no valid ts"),
        Skipped("random/2023-11-14.json message 2", "invalid ts 'yesterday'"),
        Skipped("random/2023-11-14.json message 3", "not a JSON object"),
    ]
    list(export.messages())
    assert len(export.skipped) == 3, "reading again must not record the same problems twice"


def test_channel_filter_accepts_ids_and_names_case_insensitively(tmp_path: Path) -> None:
    export = open_export(write_folder(tmp_path, standard_files()))

    assert texts(export, ["C0RANDOM"]) == ["random thought"]
    assert texts(export, ["c0random"]) == ["random thought"]
    assert texts(export, ["random"]) == ["random thought"]
    assert texts(export, ["#Random"]) == ["random thought"]
    assert texts(export, ["#general", "C0RANDOM"]) == ["hello 👋", "hi alice", "new day", "random thought"]
    assert texts(export, ["nonexistent"]) == []
    assert export.count(["general"]) == 3


def test_private_channels_and_dms_come_from_their_own_lists(tmp_path: Path) -> None:
    files: dict[str, Any] = {
        "groups.json": [{"id": "G0SECRET", "name": "secret"}, {"id": "G0SECRET", "name": "duplicate"}],
        "dms.json": [
            {"id": "D0ALICEBOB", "members": ["U0ALICE", "U0BOB"]},
            {"id": "D0NAMED", "name": "named-dm", "members": ["U0ALICE"]},  # its folder is named by id
        ],
        "mpims.json": [{"id": "G0MPIM", "name": "mpdm-alice--bob--carol-1", "members": ["U0ALICE"]}],
        "users.json": USERS,
        "secret/2023-11-14.json": [{"ts": "1700000000.000000", "user": "U0ALICE", "text": "psst"}],
        "D0ALICEBOB/2023-11-14.json": [{"ts": "1700000000.000000", "user": "U0BOB", "text": "dm"}],
        "D0NAMED/2023-11-14.json": [{"ts": "1700000000.000000", "user": "U0ALICE", "text": "note to self"}],
        "mpdm-alice--bob--carol-1/2023-11-14.json": [{"ts": "1700000000.000000", "user": "U0BOB", "text": "group"}],
    }
    export = open_export(write_folder(tmp_path, files))

    assert [(m.channel_id, m.text) for m in export.messages()] == [
        ("G0SECRET", "psst"),
        ("D0ALICEBOB", "dm"),
        ("D0NAMED", "note to self"),
        ("G0MPIM", "group"),
    ]
    assert export.channels["G0SECRET"] == "secret"
    assert export.skipped == []


def test_missing_path_raises_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.zip"
    with pytest.raises(ExportFormatError, match=r"nowhere\.zip does not exist"):
        open_export(missing)


def test_folder_without_channels_json_is_not_an_export(tmp_path: Path) -> None:
    write_folder(tmp_path, {"users.json": USERS, "general/2023-11-14.json": GENERAL_DAY_1})
    with pytest.raises(ExportFormatError, match=r"is not a Slack export: it has no channels\.json"):
        open_export(tmp_path)


def test_zip_without_channels_json_is_not_an_export(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "foo.zip", {"notes.txt": "hello"}, "stuff")
    with pytest.raises(ExportFormatError, match=r"foo\.zip is not a Slack export: it has no channels\.json"):
        open_export(path)


def test_file_that_is_not_a_zip_is_not_an_export(tmp_path: Path) -> None:
    path = tmp_path / "foo.zip"
    path.write_text("just text", encoding="utf-8")
    with pytest.raises(ExportFormatError, match=r"foo\.zip is not a Slack export: it is neither a folder nor a zip"):
        open_export(path)


def test_unreadable_channels_json_raises_and_is_a_pixelbot_error(tmp_path: Path) -> None:
    write_folder(tmp_path, {"channels.json": "not json", "general/2023-11-14.json": GENERAL_DAY_1})
    with pytest.raises(PixelbotError, match=r"conversation list is unreadable \(channels\.json: not valid JSON"):
        open_export(tmp_path)
