"""Reading a Slack workspace export (a folder, or a .zip of it), so a channel's history can seed its agent.

Slack's standard export holds `channels.json` (and, for private channels and DMs, `groups.json`, `dms.json`,
`mpims.json`), `users.json`, and one folder per conversation of daily files `YYYY-MM-DD.json`, each a JSON
list of messages. Real exports are often a little broken (a truncated file, a message without `ts`), so
this module imports whatever is valid and records the rest in `SlackExport.skipped` instead of failing;
only something that is not an export at all raises `ExportFormatError`. Messages that are not people
talking (joins, topic changes, bots) are dropped silently: they would only add noise to an agent's memory.

Files are read lazily, one conversation at a time, so a large export is never all in memory at once.
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from agent.errors import PixelbotError

CONVERSATION_FILES = ("channels.json", "groups.json", "dms.json", "mpims.json")
USERS_FILE = "users.json"

# Subtypes that are not human conversation: membership, channel settings, bots, deleted-message stubs.
SYSTEM_SUBTYPES = frozenset(
    {
        "bot_message",
        "channel_join",
        "channel_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "channel_archive",
        "channel_unarchive",
        "group_join",
        "group_leave",
        "group_topic",
        "group_purpose",
        "group_name",
        "group_archive",
        "group_unarchive",
        "tombstone",
    }
)

_TS = re.compile(r"\d{1,12}(?:\.\d{1,9})?")


class ExportFormatError(PixelbotError):
    """The path is not a readable Slack export at all (missing, not a zip, no conversation list)."""


class _MissingFileError(ExportFormatError):
    """An optional file of the export is absent."""


@dataclass(frozen=True)
class ExportedMessage:
    """One human message of the export."""

    channel_id: str  # the conversation's id from channels.json (or groups/dms/mpims.json)
    channel_name: str
    ts: str
    thread_ts: str  # "" for top-level messages and thread parents; the parent's ts for replies
    user: str  # Slack user id, "" if none
    user_name: str  # real name (or name) from users.json, "" if unknown
    text: str
    at: datetime  # UTC, from ts


@dataclass(frozen=True)
class Skipped:
    """Something of the export that could not be imported, and why."""

    where: str  # e.g. "general/2024-01-02.json" or "general/2024-01-02.json message 3" (counted from 1)
    why: str


class _Tree(Protocol):
    """Read access to an export's files by their '/'-separated names relative to the export's root."""

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None if there is no such file; raises OSError if it cannot be read."""
        ...

    def json_files(self, folder: str) -> list[str]:
        """Names of the `.json` files directly in `folder`, sorted; [] if there is no such folder."""
        ...


class _DirTree:
    """An export unpacked into a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None if it is not a file."""
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def json_files(self, folder: str) -> list[str]:
        """The `.json` files of the folder, sorted by name (so by day)."""
        path = self.root / folder
        if not path.is_dir():
            return []
        return sorted(f"{folder}/{p.name}" for p in path.iterdir() if p.suffix == ".json" and p.is_file())


class _ZipTree:
    """An export in an open zip, possibly all under one top-level folder (`prefix`)."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        self.archive = archive
        self.prefix = prefix
        self.names = {info.filename: info for info in archive.infolist() if not info.is_dir()}

    def read(self, name: str) -> bytes | None:
        """The member's bytes, or None if the zip has no such member."""
        info = self.names.get(self.prefix + name)
        if info is None:
            return None
        try:
            return self.archive.read(info)
        except (zipfile.BadZipFile, EOFError, ValueError) as error:  # corrupt member, bad CRC
            raise OSError(str(error)) from error

    def json_files(self, folder: str) -> list[str]:
        """The `.json` members directly in the folder, sorted by name."""
        start = f"{self.prefix}{folder}/"
        found = [n[len(self.prefix) :] for n in self.names if n.startswith(start) and n.endswith(".json")]
        return sorted(n for n in found if "/" not in n[len(folder) + 1 :])


_Opener = Callable[[], contextlib.AbstractContextManager[_Tree]]


@dataclass
class SlackExport:
    """An opened export: its conversations and users are read; messages are read on demand."""

    channels: dict[str, str]  # id -> name
    users: dict[str, str]  # id -> display name
    skipped: list[Skipped]
    _folders: dict[str, str] = field(default_factory=dict, repr=False)  # id -> folder name
    _open: _Opener | None = field(default=None, repr=False)

    def messages(self, channel_ids: Collection[str] | None = None) -> Iterator[ExportedMessage]:
        """The human messages of the chosen conversations (all by default), ordered by ts within each.

        `channel_ids` may hold ids or names, case-insensitively, with or without a leading '#'. Broken
        files and messages are added to `skipped` as they are met.
        """
        chosen = self._chosen(channel_ids)
        if not chosen or self._open is None:
            return
        with self._open() as tree:
            for channel_id in chosen:
                yield from self._channel_messages(tree, channel_id)

    def count(self, channel_ids: Collection[str] | None = None) -> int:
        """How many entries the chosen conversations' daily files hold: an upper bound of `messages()`.

        Meant as a progress bar's total; it reads (and parses) the files but builds no messages.
        """
        chosen = self._chosen(channel_ids)
        if not chosen or self._open is None:
            return 0
        total = 0
        with self._open() as tree:
            for channel_id in chosen:
                for name in tree.json_files(self._folders[channel_id]):
                    entries = self._load_list(tree, name)
                    total += len(entries) if entries is not None else 0
        return total

    def _chosen(self, channel_ids: Collection[str] | None) -> list[str]:
        """The ids of the conversations `channel_ids` names, in the export's order."""
        if channel_ids is None:
            return list(self.channels)
        if isinstance(channel_ids, str):
            channel_ids = [channel_ids]
        wanted = {key.strip().lstrip("#").lower() for key in channel_ids}
        return [cid for cid, name in self.channels.items() if cid.lower() in wanted or name.lower() in wanted]

    def _skip(self, where: str, why: str) -> None:
        """Record a problem once, however many times the files are read."""
        entry = Skipped(where, why)
        if entry not in self.skipped:
            self.skipped.append(entry)

    def _load_list(self, tree: _Tree, name: str) -> list[Any] | None:
        """A daily file's list of messages, or None (recorded in `skipped`) if it is unreadable."""
        try:
            data = _load_json(tree, name)
        except ExportFormatError as error:
            self._skip(name, str(error))
            return None
        if not isinstance(data, list):
            self._skip(name, "not a JSON list of messages")
            return None
        return data

    def _channel_messages(self, tree: _Tree, channel_id: str) -> list[ExportedMessage]:
        """One conversation's messages from all its daily files, sorted by ts (stable for equal ts)."""
        found: list[ExportedMessage] = []
        for name in tree.json_files(self._folders[channel_id]):
            for index, raw in enumerate(self._load_list(tree, name) or [], start=1):
                message = self._message(channel_id, raw, f"{name} message {index}")
                if message is not None:
                    found.append(message)
        found.sort(key=lambda m: _ts_key(m.ts))
        return found

    def _message(self, channel_id: str, raw: object, where: str) -> ExportedMessage | None:
        """The message `raw` stands for; None if it is not human conversation or is broken (then recorded)."""
        if not isinstance(raw, dict):
            self._skip(where, "not a JSON object")
            return None
        ts = raw.get("ts")
        at = _parse_ts(ts)
        if not isinstance(ts, str) or at is None:
            self._skip(where, "no valid ts" if ts is None else f"invalid ts {str(ts)[:40]!r}")
            return None
        if raw.get("subtype") in SYSTEM_SUBTYPES or raw.get("bot_id"):
            return None
        text = raw.get("text", "")
        if not isinstance(text, str):
            self._skip(where, "text is not a string")
            return None
        if not text.strip():
            return None
        thread_ts = raw.get("thread_ts")
        user = raw.get("user")
        user = user if isinstance(user, str) else ""
        return ExportedMessage(
            channel_id=channel_id,
            channel_name=self.channels[channel_id],
            ts=ts,
            thread_ts=thread_ts if isinstance(thread_ts, str) and thread_ts != ts else "",
            user=user,
            user_name=self.users.get(user, ""),
            text=text,
            at=at,
        )


def open_export(path: Path) -> SlackExport:
    """Open the export at `path` (a folder or a .zip) and read its conversations and users.

    Raises `ExportFormatError` if the path is missing, is not a folder or a zip, or holds no conversation
    list (`channels.json`, `groups.json`, `dms.json` or `mpims.json`), neither at its top nor in its only
    top-level folder.
    """
    opener = _opener(path)
    export = SlackExport(channels={}, users={}, skipped=[], _open=opener)
    with opener() as tree:
        _read_conversations(export, tree, path)
        _read_users(export, tree)
    return export


def _opener(path: Path) -> _Opener:
    """A function that opens the export's files for reading, checked once now."""
    if not path.exists():
        raise ExportFormatError(f"{path} does not exist")
    if path.is_dir():
        root = _find_root_dir(path)

        @contextlib.contextmanager
        def open_dir() -> Iterator[_Tree]:
            yield _DirTree(root)

        return open_dir
    if not zipfile.is_zipfile(path):
        raise ExportFormatError(f"{path} is not a Slack export: it is neither a folder nor a zip file")
    prefix = _find_zip_prefix(path)

    @contextlib.contextmanager
    def open_zip() -> Iterator[_Tree]:
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as error:
            raise ExportFormatError(f"{path} cannot be read as a zip file: {error}") from error
        with archive:
            yield _ZipTree(archive, prefix)

    return open_zip


def _find_root_dir(path: Path) -> Path:
    """The folder holding the conversation lists: `path` itself or its only subfolder."""
    if any((path / name).is_file() for name in CONVERSATION_FILES):
        return path
    subfolders = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
    if len(subfolders) == 1 and any((subfolders[0] / name).is_file() for name in CONVERSATION_FILES):
        return subfolders[0]
    raise ExportFormatError(f"{path} is not a Slack export: it has no channels.json")


def _find_zip_prefix(path: Path) -> str:
    """The zip's folder holding the conversation lists: "" for its top, else "<only top-level folder>/"."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n for n in archive.namelist() if not n.startswith("__MACOSX/")}
    except (OSError, zipfile.BadZipFile) as error:
        raise ExportFormatError(f"{path} cannot be read as a zip file: {error}") from error
    if any(name in names for name in CONVERSATION_FILES):
        return ""
    tops = {name.split("/", 1)[0] for name in names if "/" in name}
    if len(tops) == 1:
        prefix = f"{tops.pop()}/"
        if any(prefix + name in names for name in CONVERSATION_FILES):
            return prefix
    raise ExportFormatError(f"{path} is not a Slack export: it has no channels.json")


def _load_json(tree: _Tree, name: str) -> object:
    """The parsed file; ExportFormatError (with a short reason) if it is missing, unreadable or not JSON."""
    try:
        data = tree.read(name)
    except OSError as error:
        raise ExportFormatError(f"cannot be read: {error}") from error
    if data is None:
        raise _MissingFileError("missing")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ExportFormatError(f"not valid JSON: {str(error)[:80]}") from error


def _load_top_list(export: SlackExport, tree: _Tree, name: str, what: str) -> list[Any] | None:
    """A top-level list file (conversations, users); None if absent, or if broken (then recorded)."""
    try:
        data = _load_json(tree, name)
    except _MissingFileError:
        return None
    except ExportFormatError as error:
        export._skip(name, str(error))
        return None
    if not isinstance(data, list):
        export._skip(name, f"not a JSON list of {what}")
        return None
    return data


def _read_conversations(export: SlackExport, tree: _Tree, path: Path) -> None:
    """Fill `export.channels` and its folders from every conversation list present."""
    readable = False
    for list_name in CONVERSATION_FILES:
        entries = _load_top_list(export, tree, list_name, "conversations")
        if entries is None:
            continue
        readable = True
        for index, entry in enumerate(entries, start=1):
            _add_conversation(export, tree, entry, f"{list_name} entry {index}")
    if not readable:
        problems = "; ".join(f"{s.where}: {s.why}" for s in export.skipped)
        raise ExportFormatError(f"{path} is not a Slack export: its conversation list is unreadable ({problems})")


def _add_conversation(export: SlackExport, tree: _Tree, entry: object, where: str) -> None:
    """Add one conversation; its folder is named after it or (DMs) after its id, whichever has files."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        export._skip(where, "no conversation id")
        return
    channel_id: str = entry["id"]
    if channel_id in export.channels:
        return
    name = entry.get("name")
    name = name if isinstance(name, str) and name else channel_id
    candidates = [folder for folder in (name, channel_id) if _safe_folder(folder)]
    if not candidates:
        export._skip(where, f"unusable folder name {name[:40]!r}")
        return
    export.channels[channel_id] = name
    export._folders[channel_id] = next((f for f in candidates if tree.json_files(f)), candidates[0])


def _safe_folder(name: str) -> bool:
    """Whether `name` can only mean a folder directly under the export's root."""
    return bool(name) and name not in {".", ".."} and "/" not in name and "\\" not in name and "\0" not in name


def _read_users(export: SlackExport, tree: _Tree) -> None:
    """Fill `export.users`; a missing users.json only leaves names unknown, a broken one is recorded."""
    for entry in _load_top_list(export, tree, USERS_FILE, "users") or []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            export.users[entry["id"]] = _display_name(entry)


def _display_name(user: dict[str, Any]) -> str:
    """The user's real name, else their profile's real or display name, else their handle; "" if none."""
    profile = user.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    for candidate in (user.get("real_name"), profile.get("real_name"), profile.get("display_name"), user.get("name")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return ""


def _parse_ts(ts: object) -> datetime | None:
    """The UTC time a Slack ts ("1700000000.000100") stands for, or None if it is not a valid ts."""
    if not isinstance(ts, str) or not _TS.fullmatch(ts):
        return None
    seconds, _, fraction = ts.partition(".")
    try:
        start = datetime.fromtimestamp(int(seconds), UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return start + timedelta(microseconds=int(fraction.ljust(6, "0")[:6]))


def _ts_key(ts: str) -> tuple[int, int]:
    """A sort key for a valid ts, exact (no float rounding)."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds), int(fraction.ljust(9, "0"))
