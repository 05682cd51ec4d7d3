"""The Pixeltable tables of one agent, created on first use and re-opened as they are afterwards.

Layout of an agent directory `<name>`:
- `<name>.memory`: every message of every conversation (role, content, user, thread, kind, time), and
  on the last message of each turn (the answer, or the question if the model failed) `calls`: every
  model call of the turn, one per round of tool use, with the request and response as sent and
  received, the model and tools in force, tool results, errors and duration; on each answer
  `feedback`: what people said of it with the 👍/👎 buttons, by user.

A turn is then one Pixeltable insert (two rows) instead of one per table: inserts serialize
process-wide, and a second table for the calls made the storing of a turn 20.9 ms instead of 11.4 ms.
Agents created before 0.2 also have `<name>.chat` and `<name>.tools`, whose computed columns called
the model with the model and tools baked in when they were created. They are kept, read-only, as the
history of those calls (see `agent.model` for why the bot calls the model itself); their memory gets
the `calls` column when it is first opened. Everything is created with `if_exists='ignore'`:
re-opening reuses the tables.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa

_CREATION_LOCK = threading.Lock()
_CREATION_LOCK_KEY = 0x70786274  # "pxbt": the advisory lock of agent creation, shared by all processes

MEMORY_SCHEMA: dict[str, Any] = {
    "request_id": pxt.String,
    "role": pxt.String,
    "content": pxt.String,
    "timestamp": pxt.Timestamp,
    "user": pxt.String,
    "thread_ts": pxt.String,
    "kind": pxt.String,
    "calls": pxt.Json | None,
    "feedback": pxt.Json | None,
}
ADDED_COLUMNS = ("calls", "feedback")  # columns older agents' memory gets when first opened


@dataclass(frozen=True)
class AgentTables:
    """Handles on the tables of one agent directory."""

    memory: pxt.Table


def open_memory(name: str) -> pxt.Table:
    """The memory table of agent `name`, indexed for "newest turns of one thread" queries."""
    pxt.create_dir(name, if_exists="ignore", parents=True)
    memory = pxt.create_table(f"{name}.memory", MEMORY_SCHEMA, if_exists="ignore")
    missing = [column for column in ADDED_COLUMNS if column not in memory.columns()]
    for column in missing:  # agents of earlier versions lack them (a new table has them: no catalog work)
        memory.add_columns({column: pxt.Json | None}, if_exists="ignore")
    memory.add_btree_index("thread_ts", if_exists="ignore")
    memory.add_btree_index("timestamp", if_exists="ignore")
    memory.add_btree_index("request_id", if_exists="ignore")
    return memory


def find_agent_tables(name: str) -> AgentTables | None:
    """The tables of agent `name` if it exists (a lookup, ~5 ms), else None; an agent of an older
    version first gets the columns added since (once)."""
    memory = pxt.get_table(f"{name}.memory", if_not_exists="ignore")
    if memory is None:
        return None
    if not set(ADDED_COLUMNS) <= set(memory.columns()):
        with creating():
            memory = open_memory(name)
    return AgentTables(memory)


def open_agent_tables(name: str) -> AgentTables:
    """The agent's tables, created if missing (an agent of an older version gets its `calls` column)."""
    found = find_agent_tables(name)
    if found is not None:
        return found
    with creating():  # `open_memory` is idempotent: what another thread or process made meanwhile is reused
        return AgentTables(memory=open_memory(name))


@contextlib.contextmanager
def creating() -> Iterator[None]:
    """Hold the right to create directories and tables, against this process's other threads and
    against every other process on the database (a PostgreSQL advisory lock): Pixeltable 0.7.21
    creates a directory twice when two of them create it at once, and its catalog then fails every
    lookup under that name. Creation is rare (a channel's first answer), so one lock serves all."""
    from pixeltable.env import Env

    with _CREATION_LOCK, Env.get().engine.connect() as connection:
        connection.execute(sa.select(sa.func.pg_advisory_lock(_CREATION_LOCK_KEY)))
        try:
            yield
        finally:
            connection.execute(sa.select(sa.func.pg_advisory_unlock(_CREATION_LOCK_KEY)))


def feedback_counts(memory: pxt.Table) -> tuple[int, int]:
    """How many 👍 and 👎 the answers in `memory` got (none in a memory older than the column)."""
    if "feedback" not in memory.columns():
        return 0, 0
    rated = memory.where(memory.feedback != None).select(memory.feedback).collect()  # noqa: E711
    votes = [vote for row in rated for vote in (row["feedback"] or {}).values()]
    return votes.count("good"), votes.count("bad")


def existing_memory(name: str) -> pxt.Table | None:
    """The memory table of agent `name` if the agent exists; never creates anything."""
    return pxt.get_table(f"{name}.memory", if_not_exists="ignore")


def agent_names(parent_dir: str) -> list[str]:
    """The agent directories directly under `parent_dir` (none if it doesn't exist yet; not created,
    so that a read-only command never races the bot to create it)."""
    if parent_dir not in pxt.list_dirs(recursive=False):
        return []
    return sorted(path.replace("/", ".") for path in pxt.list_dirs(parent_dir, recursive=False))
