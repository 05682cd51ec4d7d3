"""The process's event loop for model calls: one daemon thread running asyncio, shared by every agent.

Model calls spend seconds waiting on the network; on an event loop a thousand of them cost one thread.
Pixeltable work stays off this loop (it runs its own loop per thread and would fall back to a slower
path inside a running one), so storage runs on ordinary threads and only awaits here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="pixelbot-loop", daemon=True).start()
            _loop = loop
        return _loop


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the shared loop and wait for its result (for synchronous callers)."""
    return asyncio.run_coroutine_threadsafe(coroutine, background_loop()).result()
