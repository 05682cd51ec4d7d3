"""How pixelbot's log lines look (`PIXELBOT_LOG_FORMAT`), and which request a line belongs to.

`text` (the default) is one readable line per record, for a terminal. `json` is one JSON object per
line, for a log pipeline: `time` (ISO 8601, UTC), `level`, `logger`, `message`, the traceback as
`exc_info` when there is one, and, on every line logged while a request is being handled, its
`request_id` and `channel`.

The request is a `contextvars` variable that `request_context` sets around the answer to a request
(and around the taking in of a message that is not one). It follows the answer's coroutine into the
tasks it starts; `loop.run_in_executor` does not carry it into a thread, so the bot's own executor
helpers run their work with `contextvars.copy_context().run`. A context is marked closed when its block
ends, so a task that copied it (a channel queue started by a request, say) does not keep tagging
later lines with a request that is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO, TypeVar

from pythonjsonlogger.json import JsonFormatter

T = TypeVar("T")

TEXT = "text"
JSON = "json"
LOG_FORMATS = (TEXT, JSON)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_log_format(raw: str | None) -> str:
    """The `PIXELBOT_LOG_FORMAT` setting: `text` (also when unset) or `json`; else a `ConfigError`."""
    from agent import ConfigError  # here, not at the top: the receiving process logs without Pixeltable

    value = (raw or TEXT).strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"PIXELBOT_LOG_FORMAT must be text or json, got {raw!r}.")
    return value


@dataclass
class RequestContext:
    """The request being handled: what a log line logged meanwhile names."""

    request_id: str
    channel: str
    open: bool = True


_current: ContextVar[RequestContext | None] = ContextVar("pixelbot_request", default=None)


@contextlib.contextmanager
def request_context(request_id: str, channel: str) -> Iterator[RequestContext]:
    """Within the block (and the tasks and context-carrying executor jobs it starts), log lines name
    `request_id` and `channel`."""
    context = RequestContext(request_id, channel)
    token = _current.set(context)
    try:
        yield context
    finally:
        context.open = False  # for the copies of this context that outlive the block
        _current.reset(token)


def current_request() -> RequestContext | None:
    """The request being handled here, if any."""
    context = _current.get()
    return context if context is not None and context.open else None


class RequestContextFilter(logging.Filter):
    """Adds `request_id` and `channel` to a record logged while a request is being handled (on the
    handler, so that it sees the records of every logger, in the thread that logs them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request()
        if context is not None and not hasattr(record, "request_id"):
            record.request_id = context.request_id
            record.channel = context.channel
        return True


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, message, then whatever else the record carries."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def log_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to `stream` (stderr) in `log_format`, naming the request being handled."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter() if log_format == JSON else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestContextFilter())
    return handler


def configure_logging(level: str, log_format: str) -> None:
    """Log at `level` to stderr in `log_format`; like `logging.basicConfig`, a no-op if logging is set up
    already (a test runner's capture, say). In JSON, Python's warnings are logged too, so that they are
    JSON lines as well."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(log_format)])
    if log_format == JSON:
        logging.captureWarnings(True)


async def in_thread(pool: Executor, function: Callable[[], T]) -> T:
    """`function()` on `pool`, in this coroutine's context (`run_in_executor` alone drops it: log lines
    would not name the request)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, context.run, function)
