"""What a channel's agent knows from files: documents split into chunks, and images, in its directory.

Layout, beside the agent's memory:
- `<name>.documents`: one row per document (PDF, HTML, Markdown, plain text; Word files and CSVs
  arrive converted to HTML and text), with where it came from: the Slack file, its name, size,
  permalink, who shared it in which message and thread, and when.
- `<name>.chunks`: a Pixeltable view over the documents with its document splitter: one row per
  piece of at most `CHUNK_TOKENS` tokens, cut at headings and pages, with its page (PDF) or heading.
- `<name>.images`: one row per image, with the same provenance.

The files themselves live in `files_dir` (Pixeltable keeps a local file by reference): a
document or image removed from the tables is removed from there too, and what Pixeltable keeps of
the deleted rows for `revert()` is purged, so a removal is one. The tables are made with the first
file: a channel that never shared one costs nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pixeltable as pxt
from pixeltable.functions.document import document_splitter

from agent.store import creating
from agent.tokens import ENCODING_NAME
from agent.versions import purge_all_kept_versions, purge_kept_versions

CHUNK_TOKENS = 200  # a recalled item shows at most 250 tokens
PROVENANCE: dict[str, Any] = {
    "file_id": pxt.Required[pxt.String],
    "name": pxt.String,
    "mimetype": pxt.String,
    "size": pxt.Int,
    "permalink": pxt.String,
    "user": pxt.String,
    "ts": pxt.String,
    "thread_ts": pxt.String,
    "shared_at": pxt.Timestamp,
}


@dataclass(frozen=True)
class FileInfo:
    """A Slack file as the agent keeps it."""

    file_id: str
    name: str
    mimetype: str
    size: int
    permalink: str
    user: str
    ts: str  # the message that shared it
    thread_ts: str
    shared_at: datetime
    kind: str = "document"  # or "image"
    chunks: int = 0

    def row(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "name": self.name,
            "mimetype": self.mimetype,
            "size": self.size,
            "permalink": self.permalink,
            "user": self.user,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "shared_at": self.shared_at,
        }


@dataclass(frozen=True)
class Chunk:
    """One piece of a document: its text, and where in the document it is (page from 1, heading)."""

    file_id: str
    index: int
    text: str
    page: int | None = None
    heading: str = ""

    @property
    def place(self) -> str:
        """Where the piece is, in words: "page 2", "Costs", or ""."""
        if self.page is not None:
            return f"page {self.page}"
        return self.heading


class Knowledge:
    """The files of one agent (`name`), their files kept under `files_dir`."""

    def __init__(self, name: str, files_dir: Path) -> None:
        self.name = name
        self.files_dir = files_dir / name

    # -- adding -----------------------------------------------------------------------------------
    def add_document(self, info: FileInfo, path: Path) -> list[Chunk]:
        """Keep the document at `path` (moved into the agent's files) and split it; its chunks. A file
        kept before (the same Slack file again) is not added twice: its chunks are returned."""
        documents = self._documents()
        if self._has(documents, info.file_id):
            return self.chunks_of(info.file_id)
        kept = self._keep(info, path)
        try:
            documents.insert([info.row() | {"document": str(kept)}])
        except Exception:
            shutil.rmtree(kept.parent, ignore_errors=True)  # nothing half-stored
            raise
        return self.chunks_of(info.file_id)

    def add_image(self, info: FileInfo, path: Path) -> bool:
        """Keep the image at `path`; False if it was kept before."""
        images = self._image_table()
        if self._has(images, info.file_id):
            return False
        kept = self._keep(info, path)
        try:
            images.insert([info.row() | {"image": str(kept)}])
        except Exception:
            shutil.rmtree(kept.parent, ignore_errors=True)
            raise
        return True

    def chunks_of(self, file_id: str) -> list[Chunk]:
        """The document's chunks, in order (none if it is not kept)."""
        chunks = pxt.get_table(f"{self.name}.chunks", if_not_exists="ignore")
        if chunks is None:
            return []
        rows = (
            chunks.where(chunks.file_id == file_id)
            .order_by(chunks.pos)
            .select(chunks.pos, chunks.text, chunks.page, chunks.heading)
            .collect()
        )
        return [_chunk(file_id, row) for row in rows if (row["text"] or "").strip()]

    # -- reading and removing ----------------------------------------------------------------------
    def files(self) -> list[FileInfo]:
        """Every file the agent keeps, newest first, documents with their number of chunks."""
        found: list[FileInfo] = []
        for kind in ("document", "image"):
            table = pxt.get_table(f"{self.name}.{kind}s", if_not_exists="ignore")
            if table is None:
                continue
            for row in table.select(*(getattr(table, column) for column in PROVENANCE)).collect():
                info = FileInfo(**row, kind=kind)
                if kind == "document":
                    info = FileInfo(**row, kind=kind, chunks=len(self.chunks_of(info.file_id)))
                found.append(info)
        return sorted(found, key=lambda info: info.shared_at, reverse=True)

    def find(self, file_id_or_name: str) -> list[FileInfo]:
        """The kept files with this Slack file ID or name (a name may have been shared twice)."""
        wanted = file_id_or_name.strip()
        return [info for info in self.files() if wanted in (info.file_id, info.name)]

    def remove(self, found: list[FileInfo]) -> None:
        """Forget these files: their rows (a document's chunks go with it), the kept row versions,
        the files on disk."""
        for kind in ("document", "image"):
            ids = [info.file_id for info in found if info.kind == kind]
            if not ids:
                continue
            table = _existing(f"{self.name}.{kind}s")
            table.delete(where=table.file_id.isin(ids))
            purge_kept_versions(table, self.name, "file_id", ids)
            if kind == "document":  # their chunks went with them; chunks are never updated
                purge_all_kept_versions(_existing(f"{self.name}.chunks"), self.name)
        for info in found:
            shutil.rmtree(self.files_dir / info.file_id, ignore_errors=True)

    # -- tables -----------------------------------------------------------------------------------
    def _keep(self, info: FileInfo, path: Path) -> Path:
        target = self.files_dir / info.file_id / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        return target

    @staticmethod
    def _has(table: pxt.Table, file_id: str) -> bool:
        return table.where(table.file_id == file_id).count() > 0

    def _documents(self) -> pxt.Table:
        """The documents table, made with its chunks view if need be."""
        documents = pxt.get_table(f"{self.name}.documents", if_not_exists="ignore")
        if documents is not None and pxt.get_table(f"{self.name}.chunks", if_not_exists="ignore") is not None:
            return documents
        with creating():
            pxt.create_dir(self.name, if_exists="ignore", parents=True)
            documents = pxt.create_table(
                f"{self.name}.documents", PROVENANCE | {"document": pxt.Document}, if_exists="ignore"
            )
            splitter = document_splitter(  # typed for a value, called with the column as Pixeltable means it
                documents.document,  # type: ignore[arg-type]
                separators="heading,page,token_limit",
                limit=CHUNK_TOKENS,
                overlap=0,
                metadata="page,heading",
                tiktoken_encoding=ENCODING_NAME,
            )
            pxt.create_view(f"{self.name}.chunks", documents, iterator=splitter, if_exists="ignore")  # type: ignore[arg-type]
        return documents

    def _image_table(self) -> pxt.Table:
        images = pxt.get_table(f"{self.name}.images", if_not_exists="ignore")
        if images is not None:
            return images
        with creating():
            pxt.create_dir(self.name, if_exists="ignore", parents=True)
            return pxt.create_table(f"{self.name}.images", PROVENANCE | {"image": pxt.Image}, if_exists="ignore")


def _existing(path: str) -> pxt.Table:
    table = pxt.get_table(path, if_not_exists="ignore")
    assert table is not None, f"{path} was found a moment ago"
    return table


def _chunk(file_id: str, row: dict[str, Any]) -> Chunk:
    page = row.get("page")
    heading = row.get("heading") or {}
    deepest = next((heading[level] for level in ("h6", "h5", "h4", "h3", "h2", "h1") if heading.get(level)), "")
    number = int(page) + 1 if isinstance(page, int | float) and page == page else None  # NaN: no page
    return Chunk(file_id, int(row["pos"]), str(row["text"]).strip(), number, str(deepest))


def file_keys(chunks: Iterable[Chunk], file_id: str) -> list[str]:
    """The recall keys of a document's pieces."""
    return [f"file:{file_id}:{chunk.index}" for chunk in chunks]


def erase_files(agent_name: str, files_dir: Path, user: str, dry_run: bool = False) -> int:
    """The files `user` shared in one agent's channel, removed with their pieces, recall entries and
    quotations in stored model calls (`pixelbot delete-user`); how many (or would be, `dry_run`)."""
    from agent.agent import Agent
    from agent.recall.table import delete, recall_table_name

    knowledge = Knowledge(agent_name, files_dir)
    found = [info for info in knowledge.files() if info.user == user]
    if dry_run or not found:
        return len(found)
    chunks = [chunk for info in found for chunk in knowledge.chunks_of(info.file_id)]
    knowledge.remove(found)
    recall = pxt.get_table(recall_table_name(agent_name), if_not_exists="ignore")
    if recall is not None:
        delete(recall, [f"file:{chunk.file_id}:{chunk.index}" for chunk in chunks])
    Agent(agent_name, "").scrub_quotes([chunk.text for chunk in chunks])
    return len(found)
