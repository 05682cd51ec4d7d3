"""Files shared in Slack: fetched with the bot token, kept in the channel's knowledge, read by the agent.

`SlackFiles` is the one entry point. For a message to the bot it `attach`es the message's files to
the request: documents (PDF, Word, Markdown, HTML, text, CSV) are kept and split into chunks
(`agent.knowledge`), and their chunks go with the question so that the agent recalls the relevant
ones; images go to the model as image input when it can see them. In a listening channel it
`index`es what anyone shares, the same way, without an answer.

What is fetched, and how: only the file's `url_private_download` (or `url_private`), only from
Slack's own file hosts (`files.slack.com`, or the host of `SLACK_API_URL`), with the bot token,
never following a redirect (Slack answers a refused token with a redirect to its sign-in page; a
redirect elsewhere is refused), at most `PIXELBOT_MAX_FILE_MB` (checked against the size Slack gives
before fetching, and again while fetching). A link to a file in a message's text is never fetched.

Every problem (too big, a type the bot does not read, a password-protected or broken PDF, an empty
file, a failed or slow download, an image for a model that cannot see) becomes one short note for
the user, and the rest of the answer is still given; nothing of a file that failed is kept.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from agent import Agent
from agent.attachments import Attachments, ImageInput
from agent.knowledge import Chunk, FileInfo, Knowledge, file_keys
from agent.recall import MemoryItem
from bot.channels import ChannelAgents, ChannelKey
from bot.file_formats import DOCUMENT_TYPES, IMAGE_TYPES, FileError, image_data_url, readable_document
from bot.inbox import Inbox, InboxItem, Status
from bot.log_format import in_thread
from bot.queues import ChannelQueues

logger = logging.getLogger(__name__)

T = TypeVar("T")
DOWNLOAD_TIMEOUT = 30.0  # seconds for one file (`PIXELBOT_FILE_TIMEOUT`'s default)
SLACK_FILE_HOSTS = frozenset({"files.slack.com", "files-edu.slack.com", "files.slack-gov.com"})
PARALLEL_DOWNLOADS = 4
FILES_CHANNEL = "FILES"  # the channel of a file deletion that does not say where the file was: any


@dataclass(frozen=True)
class SharedFile:
    """A file of a Slack message, as the edge admitted it."""

    id: str
    name: str
    filetype: str = ""
    mimetype: str = ""
    size: int | None = None
    url: str = ""
    permalink: str = ""
    user: str = ""
    mode: str = "hosted"

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> SharedFile:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data.get("title") or data["id"]),
            filetype=str(data.get("filetype") or "").lower(),
            mimetype=str(data.get("mimetype") or ""),
            size=data.get("size") if isinstance(data.get("size"), int) else None,
            url=str(data.get("url_private_download") or data.get("url_private") or ""),
            permalink=str(data.get("permalink") or ""),
            user=str(data.get("user") or ""),
            mode=str(data.get("mode") or "hosted"),
        )

    @property
    def kind(self) -> str | None:
        """ "document", "image", or None for a type the bot does not read."""
        extension = Path(self.name).suffix.lower().lstrip(".")
        if self.filetype in DOCUMENT_TYPES or extension in DOCUMENT_TYPES:
            return "document"
        if self.filetype in IMAGE_TYPES or extension in IMAGE_TYPES:
            return "image"
        return None


@dataclass(frozen=True)
class Where:
    """The message that shared the files."""

    user: str
    ts: str
    thread_ts: str
    at: datetime


class SlackFiles:
    """Fetches, checks, keeps and hands over a message's files."""

    def __init__(
        self,
        token: Callable[[], str | None],
        api_url: str,
        files_dir: Path,
        max_bytes: int,
        vision: bool,
        storage: Executor,
        io_pool: Executor,
        timeout: float = DOWNLOAD_TIMEOUT,
    ) -> None:
        self._token, self.files_dir, self.max_bytes, self.vision = token, files_dir, max_bytes, vision
        self._storage, self._io, self._timeout = storage, io_pool, timeout
        # one client for every download: making one costs ~19 ms (its TLS context); never follows a redirect
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        api_host = self._api_host = urlsplit(api_url).hostname or ""
        self.hosts = SLACK_FILE_HOSTS | ({api_host} if api_host not in ("slack.com", "slack-gov.com") else set())

    def knowledge(self, agent_name: str) -> Knowledge:
        return Knowledge(agent_name, self.files_dir)

    async def attach(self, agent: Agent, item: InboxItem) -> Attachments:
        """Take in the files of a message for the bot: documents kept and chunked, images read; the
        downloads run side by side (at most `PARALLEL_DOWNLOADS`), the results keep the files' order."""
        where, gate = where_shared(item), asyncio.Semaphore(PARALLEL_DOWNLOADS)

        async def one(shared: SharedFile) -> Attachments:
            async with gate:
                return await self._attach_one(agent, shared, where)

        attachments = Attachments()
        for part in await asyncio.gather(*(one(SharedFile.from_event(data)) for data in item.files)):
            attachments.chunks += part.chunks
            attachments.images += part.images
            attachments.notes += part.notes
        return attachments

    async def _attach_one(self, agent: Agent, shared: SharedFile, where: Where) -> Attachments:
        attachments = Attachments()
        try:
            await self._take(agent, shared, where, attachments, answering=True)
        except FileError as problem:
            logger.info("file %s (%s) not read: %s", shared.id, shared.filetype or "?", problem)
            attachments.notes.append(f"{shared.name}: {problem}")
        except Exception:
            logger.exception("file %s could not be taken in", shared.id)
            attachments.notes.append(f"{shared.name}: something went wrong reading it; an admin can see why.")
        return attachments

    async def index(self, agent: Agent, files: Iterable[SharedFile], where: Where) -> int:
        """Keep the documents and images a listening channel shared (no answer); how many were kept."""
        kept = 0
        for shared in files:
            attachments = Attachments()
            try:
                await self._take(agent, shared, where, attachments, answering=False)
                kept += 1
            except FileError as problem:
                logger.info("shared file %s not kept: %s", shared.id, problem)
            except Exception:
                logger.exception("shared file %s could not be kept", shared.id)
        return kept

    def forget(self, agent: Agent, file_id: str) -> FileInfo | None:
        """Remove one file from the agent (see `forget_where`); what was removed, or None."""
        found = self.forget_where(agent, lambda info: info.file_id == file_id)
        return found[0] if found else None

    def forget_where(self, agent: Agent, which: Callable[[FileInfo], bool]) -> list[FileInfo]:
        """Remove the agent's files that `which` selects: their rows and pieces, their recall entries,
        the files on disk, and their quotations in stored model calls. Pixeltable work: on the
        storage thread. What was removed."""
        knowledge = self.knowledge(agent.name)
        found = [info for info in knowledge.files() if which(info)]
        if not found:
            return []
        chunks = {info.file_id: knowledge.chunks_of(info.file_id) for info in found if info.kind == "document"}
        knowledge.remove(found)
        keys = [key for file_id, pieces in chunks.items() for key in file_keys(pieces, file_id)]
        if agent.recall is not None and keys:
            agent.recall.forget(agent.name, keys)
        scrubbed = agent.scrub_quotes([chunk.text for pieces in chunks.values() for chunk in pieces])
        logger.info("forgot %d file(s) of %s (%d quoting row(s) scrubbed)", len(found), agent.name, scrubbed)
        return found

    def forget_before(self, agent: Agent, cutoff: datetime) -> int:
        """Retention: forget every file shared before `cutoff`; how many."""
        return len(self.forget_where(agent, lambda info: info.shared_at < cutoff))

    def forget_thread(self, agent: Agent, thread_ts: str) -> int:
        """The files shared in a thread (or by the message that started it); how many."""
        return len(self.forget_where(agent, lambda info: thread_ts in (info.thread_ts, info.ts)))

    async def _take(
        self, agent: Agent, shared: SharedFile, where: Where, into: Attachments, *, answering: bool
    ) -> None:
        kind = _checked(shared, self.max_bytes)
        if kind == "image" and answering and not self.vision:
            raise FileError("this model can't see images, so I could not look at it.")
        path = await in_thread(self._io, lambda: self._download(shared))
        try:
            info = _file_info(shared, where, path)
            knowledge = self.knowledge(agent.name)
            if kind == "image":
                data_url = await in_thread(self._io, lambda: image_data_url(path, shared.name, shared.mimetype))
                await in_thread(self._storage, lambda: knowledge.add_image(info, path))
                if answering:
                    into.images.append(ImageInput(shared.name, data_url))
                return
            document = await in_thread(self._io, lambda: readable_document(path, shared.filetype))
            chunks = await in_thread(self._storage, lambda: knowledge.add_document(info, document))
        finally:
            _remove_download(path)
        if not chunks:  # kept as a document, but there is nothing to read in it: not kept at all
            await in_thread(self._storage, lambda: knowledge.remove([info]))
            raise FileError("I found no text in it (a scan or an empty document?).")
        items = [chunk_item(chunk, info) for chunk in chunks]
        if answering:
            into.chunks.extend(items)
        if agent.recall is not None and not answering:
            agent.recall.remember(agent.name, items)

    # -- fetching ---------------------------------------------------------------------------------
    def _download(self, shared: SharedFile) -> Path:
        """The file, in a new temporary directory under its own name; raises `FileError`."""
        url = shared.url
        parts = urlsplit(url)
        plain_ok = parts.hostname == self._api_host  # a test or local Slack; Slack's own hosts: https only
        if (
            not url
            or parts.hostname not in self.hosts
            or parts.scheme not in (("https", "http") if plain_ok else ("https",))
        ):
            logger.warning("file %s is not on Slack's file hosts; not fetched", shared.id)
            raise FileError("it is not stored on Slack, so I can't open it.")
        token = self._token()
        if not token:
            raise FileError("I have no token for this workspace, so I can't download it.")
        headers = {"Authorization": f"Bearer {token}"}
        path = Path(tempfile.mkdtemp(prefix="pixelbot-file-")) / _safe_name(shared.name)
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                if response.is_redirect:
                    logger.warning("file %s: Slack redirected the download (token refused?)", shared.id)
                    raise FileError("Slack would not let me download it (does the app have files:read?).")
                if response.status_code != 200:
                    logger.warning("file %s: download answered HTTP %d", shared.id, response.status_code)
                    raise FileError(f"the download failed (HTTP {response.status_code}).")
                _write_bounded(response.iter_bytes(), path, self.max_bytes, time.monotonic() + self._timeout)
        except httpx.TimeoutException:
            _remove_download(path)
            raise FileError("the download took too long.") from None
        except httpx.HTTPError as error:
            _remove_download(path)
            logger.warning("file %s: download failed: %s", shared.id, type(error).__name__)
            raise FileError("the download failed.") from None
        except FileError:
            _remove_download(path)
            raise
        if path.stat().st_size == 0:
            _remove_download(path)
            raise FileError("it is empty.")
        return path


class FileIntake:
    """Takes inbox items about files into the agents: a file deleted in Slack (forgotten in every
    channel that kept it), and a listening channel's shared files (kept as knowledge, not answered).
    Each runs in the channel's storage queue, after what the channel was storing, so that an answer
    quoting a file is stored before the file's deletion scrubs it; the inbox row is closed after."""

    def __init__(
        self, files: SlackFiles, agents: ChannelAgents, storage_queues: ChannelQueues, inbox: Inbox,
        storage: Executor, io_pool: Executor,
    ) -> None:  # fmt: skip
        self._files, self._agents, self._storage_queues, self._inbox = files, agents, storage_queues, inbox
        self._storage, self._io = storage, io_pool

    async def take_in(self, item: InboxItem) -> None:
        """A `FILE_DELETED` item: forget the file wherever it was kept (the channels whose messages
        shared it, from the inbox, when Slack does not say); never raises."""
        file_id, status = item.text, Status.ANSWERED
        try:
            channels = [item.channel]
            if item.channel_id == FILES_CHANNEL:
                channels = await in_thread(self._io, partial(self._inbox.channels_with_file, item.team_id, file_id))
            for key in channels:
                self._storage_queues.submit(key, partial(self._forget, key, file_id))
        except Exception:
            logger.exception("could not look up where file %s was shared", file_id)
            status = Status.FAILED
        await in_thread(self._io, partial(self._inbox.close, item.request_id, status))

    async def _forget(self, key: ChannelKey, file_id: str) -> None:
        try:
            agent = await in_thread(self._storage, partial(self._agents.get, key))
            await in_thread(self._storage, partial(self._files.forget, agent, file_id))
        except Exception:
            logger.exception("could not forget file %s in %s", file_id, key.channel_id)

    def index_later(self, agent: Agent, item: InboxItem) -> None:
        """Keep a listened message's files, in the channel's storage queue; its inbox row is closed
        once they are kept (a crash before that takes the message in again)."""
        self._storage_queues.submit(item.channel, partial(self._index, agent, item))

    async def _index(self, agent: Agent, item: InboxItem) -> None:
        files = [SharedFile.from_event(data) for data in item.files]
        status = Status.ANSWERED
        try:
            kept = await self._files.index(agent, files, where_shared(item))
            logger.info("kept %d of %d file(s) shared in %s", kept, len(files), item.channel_id)
        except Exception:
            logger.exception("could not keep the files shared in %s", item.channel_id)
            status = Status.FAILED
        await in_thread(self._io, partial(self._inbox.close, item.request_id, status))


def shared_question(item: InboxItem) -> str:
    """What a message that is only files asks: about them."""
    names = [str(data.get("name") or "a file") for data in item.files]
    return f"(shared {', '.join(names)})" if names else ""


def where_shared(item: InboxItem) -> Where:
    """The message of `item`, where its files were shared."""
    at = datetime.fromtimestamp(float(item.ts), UTC) if item.ts else item.received_at
    return Where(item.user, item.ts, item.thread_ts, at)


def chunk_item(chunk: Chunk, info: FileInfo) -> MemoryItem:
    """A piece of a document as recall keeps and shows it."""
    return MemoryItem(
        key=f"file:{info.file_id}:{chunk.index}",
        text=chunk.text,
        role="file",
        user=info.user,
        at=info.shared_at,
        ts=info.ts,
        thread_ts=info.thread_ts,
        user_name=info.name,
        link=info.permalink,
        place=chunk.place,
    )


def _checked(shared: SharedFile, max_bytes: int) -> str:
    """The file's kind, if the bot reads it and may fetch it; else `FileError` says why not."""
    if shared.mode in ("tombstone", "external") or not shared.url:
        raise FileError("it is not stored on Slack, so I can't open it.")
    kind = shared.kind
    if kind is None:
        raise FileError(
            "I can read PDF, Word (.docx), Markdown, HTML, text and CSV files and PNG, JPEG, GIF and WebP images, "
            f"not {shared.filetype or 'this type'}."
        )
    if shared.size is not None and shared.size > max_bytes:
        raise FileError(f"it is {shared.size / 1_000_000:.1f} MB; I only read files up to {_mb(max_bytes)} MB.")
    if shared.size == 0:
        raise FileError("it is empty.")
    return kind


def _write_bounded(chunks: Iterable[bytes], path: Path, max_bytes: int, deadline: float) -> None:
    """Write the download, refusing one over `max_bytes` or still trickling in at `deadline` (httpx's
    timeout bounds each read, not the whole)."""
    written = 0
    with path.open("wb") as out:
        for chunk in chunks:
            if time.monotonic() > deadline:
                raise FileError("the download took too long.")
            written += len(chunk)
            if written > max_bytes:
                raise FileError(f"it is larger than {_mb(max_bytes)} MB, the most I read.")
            out.write(chunk)


def _file_info(shared: SharedFile, where: Where, path: Path) -> FileInfo:
    return FileInfo(
        file_id=shared.id,
        name=shared.name,
        mimetype=shared.mimetype,
        size=path.stat().st_size,
        permalink=shared.permalink,
        user=shared.user or where.user,
        ts=where.ts,
        thread_ts=where.thread_ts,
        shared_at=where.at.astimezone(UTC),
    )


def _safe_name(name: str) -> str:
    """The file's name without directories or characters a file system may refuse."""
    cleaned = "".join(c if c.isalnum() or c in "._- " else "_" for c in Path(name).name).strip(" .")
    return cleaned[:120] or "file"


def _remove_download(path: Path) -> None:
    """Remove a download's temporary directory (what `Knowledge` keeps was moved out of it)."""
    import shutil

    shutil.rmtree(path.parent, ignore_errors=True)


def _mb(size: int) -> str:
    return f"{size / 1_000_000:g}"
