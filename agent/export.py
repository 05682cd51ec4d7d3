"""Exporting an agent's memory: one consistent snapshot, written as JSON Lines, CSV or Parquet.

The snapshot is a single query, which Pixeltable runs in one repeatable-read transaction: messages
stored while it runs are either wholly in it or not at all, and Postgres's MVCC lets the bot keep
writing meanwhile. pandas (with pyarrow for Parquet) writes the formats, so standard readers read
Unicode, newlines, commas and quotes back unchanged.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from enum import StrEnum

import pandas as pd
import pixeltable as pxt

EXPORT_COLUMNS = ("timestamp", "role", "content", "user", "thread_ts", "kind", "request_id", "feedback")


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"

    @property
    def mime_type(self) -> str:
        return {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}[self]


def memory_snapshot(memory: pxt.Table, since: datetime | None = None) -> pd.DataFrame:
    """Every message of the memory (from `since` on, if given), oldest first, as one snapshot."""
    present = set(memory.columns())  # an agent of an older version, not opened since, lacks `feedback`
    query = memory.select(*(getattr(memory, name) for name in EXPORT_COLUMNS if name in present))
    if since is not None:
        query = query.where(memory.timestamp >= since)
    frame = query.order_by(memory.timestamp).collect().to_pandas().reindex(columns=list(EXPORT_COLUMNS))
    # 👍/👎 by user, as JSON text: one column type for every format (Parquet can't take maps of any keys)
    frame["feedback"] = frame["feedback"].map(lambda votes: json.dumps(votes, sort_keys=True) if votes else None)
    return frame


def export_bytes(frame: pd.DataFrame, export_format: ExportFormat) -> bytes:
    """The snapshot encoded in `export_format` (UTF-8 for the text formats)."""
    if export_format is ExportFormat.PARQUET:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False, engine="pyarrow")
        return buffer.getvalue()
    text = frame.assign(timestamp=frame["timestamp"].map(_iso))
    if export_format is ExportFormat.JSONL and frame.empty:
        return b""  # pandas writes one blank line for no records
    if export_format is ExportFormat.CSV:
        encoded: str = text.to_csv(index=False)
    else:
        encoded = text.to_json(orient="records", lines=True, force_ascii=False)
    return encoded.encode()


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
