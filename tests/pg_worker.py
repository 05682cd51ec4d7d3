"""A Pixeltable client process for tests/test_postgres_storage.py, driven by one JSON command per stdin line.

A process of its own because Pixeltable picks its database once per process, at first use, from
`PIXELTABLE_DB_CONNECT_STR`. Each command gets one answer line, `@@ ` and a JSON object, on stdout. A
failure is an answer too (the exception and its causes, outermost first): what Pixeltable raises when its
database goes away is what the tests observe.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pixeltable as pxt

ANSWER_MARK = "@@ "


def get(table: str) -> pxt.Table:
    found = pxt.get_table(table)
    assert found is not None
    return found


def create(table: str) -> dict[str, Any]:
    pxt.create_table(table, {"key": pxt.Int, "text": pxt.String}, primary_key="key", if_exists="ignore")
    return {}


def insert(table: str, start: int, count: int) -> dict[str, Any]:
    """One row per insert, each its own transaction, so that two processes' inserts interleave."""
    rows = get(table)
    started = time.time()
    for key in range(start, start + count):
        rows.insert([{"key": key, "text": f"row {key}"}])
    return {"started": started, "finished": time.time()}


def keys(table: str) -> dict[str, Any]:
    rows = get(table)
    return {"keys": [row["key"] for row in rows.select(rows.key).collect()]}


def texts(table: str) -> dict[str, Any]:
    rows = get(table)
    return {"texts": {row["key"]: row["text"] for row in rows.collect()}}


def open_agent(name: str, start_at: float = 0.0) -> dict[str, Any]:
    """Open (creating it if missing) an agent's tables, as the bot does for a channel's first answer;
    from `start_at` (a wall-clock time) on, so that several processes start at the same moment."""
    from agent.store import open_agent_tables

    while time.time() < start_at:
        pass
    open_agent_tables(name)
    return {"dirs": pxt.list_dirs(name.rsplit(".", 1)[0])}


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "create": create,
    "insert": insert,
    "keys": keys,
    "texts": texts,
    "open_agent": open_agent,
}


def describe(error: BaseException) -> list[dict[str, str]]:
    """The exception and its chain of causes, as `module.Type` and message."""
    chain: list[dict[str, str]] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 6:
        kind = type(current)
        chain.append({"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(current)[:300]})
        current = current.__cause__ or current.__context__
    return chain


def answer(command: list[Any]) -> dict[str, Any]:
    name, *arguments = command
    try:
        return {"ok": True, **COMMANDS[name](*arguments)}
    except Exception as error:
        return {"ok": False, "error": describe(error)}


def main() -> None:
    for line in sys.stdin:
        print(ANSWER_MARK + json.dumps(answer(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
