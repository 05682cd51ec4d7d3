"""Erasing one user from every agent: their messages, their votes, and their words in stored model calls.

`erase_user(user, agents, engine)` does, in each agent directory named (or only counts, with `dry_run`):

- memory: deletes the user's messages, the rows with `user == U` and role "user" (their questions and
  their listened or imported messages). Answers *to* them stay: the text is the agent's, and its
  `user` still says who asked (`AgentErasure.answers_kept`).
- recall: deletes the user's rows of `<agent>.recall` (by the deleted rows' keys, and by author).
- feedback: removes the votes they cast from every answer's `feedback`.
- calls: in every row of every agent, each exact occurrence of a deleted message's text inside the
  stored model requests (`calls[*].request`: the question itself, the conversation's history, the
  recalled lines) becomes `DELETED`. A text is matched as it was stored, as recall quotes it
  (whitespace collapsed, cut to `ITEM_TOKENS`), and as cut to fit the context; and only as a whole
  word where it starts or ends with a word character, so that deleting "hi" leaves "this" alone.
  Agents made before 0.2 get the same in the `messages` of `<agent>.chat` and `<agent>.tools`.
- Pixeltable's kept versions: Pixeltable keeps every row version that a delete or an update replaced
  (for `revert()` and reading old versions) in the Postgres table it stores the rows in, so deleting
  through Pixeltable alone would leave the user's messages, votes and quoted words in the database.
  The kept versions of their rows are removed and the kept versions of every other row are scrubbed
  like the live ones, by SQL on that table, laid out as `agent.recall.store_search` reads it (skipped
  with a warning if Pixeltable's layout is not the expected one). Reverting a version afterwards
  brings none of it back.
- inbox: in every plain table of the database named `*_inbox` with `user_id` and `text` columns
  (pixelbot's durable inbox, of any namespace), the text of the user's rows is blanked.

Everything is idempotent: a second run finds nothing to change (`UserErasure.changes == 0`), while
the answers kept and the blanked inbox rows still show the user was known (`UserErasure.known`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pixeltable as pxt
import sqlalchemy as sa

from agent.context import ContextLimits
from agent.recall.prompt import ITEM_TOKENS
from agent.recall.table import memory_key, recall_table_name
from agent.tokens import truncate_to_tokens
from agent.versions import StoredVersions as _Store

logger = logging.getLogger(__name__)

DELETED = "[deleted]"
INBOX_SUFFIX = "_inbox"
LEGACY_TABLES = ("chat", "tools")  # tables of agents made before 0.2, whose `messages` were sent to the model
INBOX_TIMEOUT = "10min"  # blanking a large inbox scans it; the bookkeeping engine's 15 s limit is for requests


@dataclass(frozen=True)
class AgentErasure:
    """What was (or, in a dry run, would be) erased in one agent directory."""

    agent: str
    messages: int = 0  # the user's messages deleted from memory
    recall_rows: int = 0  # their rows deleted from the recall index
    votes: int = 0  # votes they cast, removed
    scrubbed_rows: int = 0  # other rows whose stored model calls quoted them
    kept_versions: int = 0  # row versions Pixeltable kept, removed or scrubbed
    answers_kept: int = 0  # answers to their questions, which stay

    @property
    def changes(self) -> int:
        return self.messages + self.recall_rows + self.votes + self.scrubbed_rows + self.kept_versions


@dataclass(frozen=True)
class InboxErasure:
    """The user's rows in one inbox table: `blanked` had text (now blanked), `rows` in all."""

    table: str
    blanked: int = 0
    rows: int = 0


@dataclass(frozen=True)
class UserErasure:
    """What `erase_user` did (or would do) for one user, per agent and per inbox table."""

    user: str
    agents: list[AgentErasure] = field(default_factory=list)
    inboxes: list[InboxErasure] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changes(self) -> int:
        return sum(agent.changes for agent in self.agents) + sum(inbox.blanked for inbox in self.inboxes)

    @property
    def known(self) -> bool:
        """Whether anything names the user: what is left to erase, an answer to them, an inbox row."""
        return self.changes > 0 or any(a.answers_kept for a in self.agents) or any(i.rows for i in self.inboxes)

    def total(self, name: str) -> int:
        """The sum of one `AgentErasure` count over the agents, e.g. `total("messages")`."""
        return sum(int(getattr(agent, name)) for agent in self.agents)


def erase_user(
    user: str, agents: Sequence[str], engine: sa.Engine, *, team_id: str | None = None, dry_run: bool = False
) -> UserErasure:
    """Erase `user` from the agents named (directory names) and from every inbox table reachable
    through `engine` (only the rows of workspace `team_id`, if given); with `dry_run`, count only."""
    if not user.strip():
        raise ValueError("no user given")
    opened = [found for found in map(_AgentTables.of, agents) if found is not None]
    theirs = [tables.their_rows(user) for tables in opened]
    texts = {text for rows in theirs for text in rows.texts}
    since = min((rows.earliest for rows in theirs if rows.earliest is not None), default=None)
    pattern = scrub_pattern(texts)
    # every agent scrubbed before any deletes: a run stopped midway leaves the texts for the next one
    scrubbed = [tables.scrub(user, pattern, since, dry_run) for tables in opened]
    erased = [
        tables.remove(user, rows, pattern, quoted, dry_run)
        for tables, rows, quoted in zip(opened, theirs, scrubbed, strict=True)
    ]
    inboxes = [_erase_in_inbox(engine, name, user, team_id, dry_run) for name in inbox_tables(engine)]
    return UserErasure(user, erased, inboxes, dry_run)


# -- scrubbing ---------------------------------------------------------------------------------------
def scrub_pattern(texts: Iterable[str]) -> str | None:
    """One regular expression matching every form of `texts` that a prompt may carry, longest first
    (so that a message containing another is replaced whole); None when there is nothing to match."""
    forms: set[str] = set()
    for text in texts:
        forms |= {
            text,
            truncate_to_tokens(" ".join(text.split()), ITEM_TOKENS),  # as a recalled line quotes it
            truncate_to_tokens(text, ContextLimits().max_input_tokens),  # a question cut to fit the prompt
        }
    words = sorted((form for form in forms if form.strip()), key=lambda form: (-len(form), form))
    return "|".join(map(_whole, words)) or None


def _whole(form: str) -> str:
    """`form` as a regular expression that matches it only where it is not part of a longer word."""
    pattern = re.escape(form)
    if re.match(r"\w", form[0]):
        pattern = r"(?<!\w)" + pattern
    if re.match(r"\w", form[-1]):
        pattern += r"(?!\w)"
    return pattern


@functools.lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def scrub_value(value: Any, pattern: str | None) -> Any:
    """`value` (JSON: strings, lists, objects) with every match of `pattern` in its strings replaced
    by `DELETED`."""
    if pattern is None:
        return value
    if isinstance(value, str):
        return _compiled(pattern).sub(DELETED, value)
    if isinstance(value, list):
        return [scrub_value(item, pattern) for item in value]
    if isinstance(value, dict):
        return {key: scrub_value(item, pattern) for key, item in value.items()}
    return value


def scrub_calls(calls: Any, pattern: str | None) -> Any:
    """A memory row's `calls` with the requests sent to the model scrubbed (responses, as answers, stay)."""
    if not isinstance(calls, list):
        return calls
    return [
        {**call, "request": scrub_value(call["request"], pattern)}
        if isinstance(call, dict) and "request" in call
        else call
        for call in calls
    ]


def without_vote(feedback: Any, user: str) -> Any:
    """A row's `feedback` without `user`'s vote."""
    if not isinstance(feedback, dict) or user not in feedback:
        return feedback
    return {voter: vote for voter, vote in feedback.items() if voter != user}


@pxt.udf
def _scrubbed_calls(calls: list, pattern: str) -> list:  # type: ignore[type-arg]
    return list(scrub_calls(calls, pattern))


@pxt.udf
def _scrubbed_json(value: list, pattern: str) -> list:  # type: ignore[type-arg]
    return list(scrub_value(value, pattern))


@pxt.udf
def _without_vote(feedback: dict, user: str) -> dict:  # type: ignore[type-arg]
    return dict(without_vote(feedback, user))


# -- one agent -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TheirRows:
    """The user's messages in one agent: their texts (live and kept versions), recall keys, earliest time."""

    texts: set[str]
    keys: set[str]
    live: int
    earliest: datetime | None


@dataclass(frozen=True)
class _AgentTables:
    name: str
    memory: pxt.Table
    recall: pxt.Table | None
    legacy: list[pxt.Table]

    @classmethod
    def of(cls, name: str) -> _AgentTables | None:
        memory = pxt.get_table(f"{name}.memory", if_not_exists="ignore")
        if memory is None:
            return None
        recall = pxt.get_table(recall_table_name(name), if_not_exists="ignore")
        legacy = [pxt.get_table(f"{name}.{table}", if_not_exists="ignore") for table in LEGACY_TABLES]
        kept = [table for table in legacy if table is not None and "messages" in table.columns()]
        return cls(name, memory, recall, kept)

    def _theirs(self, user: str) -> Any:
        memory = self.memory
        return (memory.user == user) & (memory.role == "user")

    def their_rows(self, user: str) -> _TheirRows:
        memory = self.memory
        rows = list(
            memory.where(self._theirs(user)).select(memory.request_id, memory.content, memory.timestamp).collect()
        )
        texts = {row["content"] for row in rows if row["content"]}
        keys = {memory_key(row["request_id"], "user") for row in rows}
        times = [row["timestamp"] for row in rows if row["timestamp"] is not None]
        store = _Store.of(memory, self.name, ("user", "role", "request_id", "content", "timestamp"))
        if store is not None:
            for row in store.kept(store.theirs(user), "request_id", "content", "timestamp"):
                texts.add(row["content"] or "")
                keys.add(memory_key(row["request_id"], "user"))
                if row["timestamp"] is not None:
                    times.append(row["timestamp"])
        return _TheirRows(texts - {""}, keys, len(rows), min(times, default=None))

    def scrub(self, user: str, pattern: str | None, since: datetime | None, dry_run: bool) -> int:
        """Replace the deleted messages' texts in the stored model requests; how many rows quoted them."""
        scrubbed = self._scrub_calls(user, pattern, since, dry_run)
        return scrubbed + sum(self._scrub_legacy(table, pattern, dry_run) for table in self.legacy)

    def remove(self, user: str, theirs: _TheirRows, pattern: str | None, scrubbed: int, dry_run: bool) -> AgentErasure:
        """Remove their votes, messages and recall rows, then clean the versions Pixeltable kept."""
        memory = self.memory
        answers = memory.where((memory.user == user) & (memory.role != "user")).count()
        votes = self._remove_votes(user, dry_run)
        if theirs.live and not dry_run:
            memory.delete(self._theirs(user))
        recall_rows = self._delete_recall(user, theirs.keys, dry_run)
        kept = self._clean_kept_versions(user, theirs.keys, pattern, dry_run)
        return AgentErasure(self.name, theirs.live, recall_rows, votes, scrubbed, kept, answers)

    def _scrub_calls(self, user: str, pattern: str | None, since: datetime | None, dry_run: bool) -> int:
        """Rows (not the user's own, which go) whose stored requests quote a deleted message."""
        memory = self.memory
        if pattern is None or "calls" not in memory.columns():  # an agent older than the column, not opened since
            return 0
        where = (memory.calls != None) & ~self._theirs(user)  # noqa: E711
        if since is not None:  # a turn's calls are stored after every message they quote
            where = where & (memory.timestamp >= since)
        rows = memory.where(where).select(memory.request_id, memory.role, memory.calls).cursor()
        changed = {
            (row["request_id"], row["role"]) for row in rows if scrub_calls(row["calls"], pattern) != row["calls"]
        }
        if changed and not dry_run:
            ids = sorted({request_id for request_id, _ in changed})
            memory.update({"calls": _scrubbed_calls(memory.calls, pattern)}, where=where & memory.request_id.isin(ids))
        return len(changed)

    def _scrub_legacy(self, table: pxt.Table, pattern: str | None, dry_run: bool) -> int:
        """The `messages` of a table of an agent before 0.2; its computed columns are not recomputed."""
        if pattern is None:
            return 0
        where = table.messages != None  # noqa: E711
        rows = table.where(where).select(table.request_id, table.messages).cursor()
        changed = [row["request_id"] for row in rows if scrub_value(row["messages"], pattern) != row["messages"]]
        if changed and not dry_run:
            update = {"messages": _scrubbed_json(table.messages, pattern)}
            table.update(update, where=where & table.request_id.isin(sorted(set(changed))), cascade=False)
        return len(changed)

    def _remove_votes(self, user: str, dry_run: bool) -> int:
        memory = self.memory
        if "feedback" not in memory.columns():
            return 0
        where = memory.feedback != None  # noqa: E711
        rated = memory.where(where).select(memory.request_id, memory.feedback).collect()
        voted = sorted(
            {row["request_id"] for row in rated if isinstance(row["feedback"], dict) and user in row["feedback"]}
        )
        if voted and not dry_run:
            memory.update(
                {"feedback": _without_vote(memory.feedback, user)}, where=where & memory.request_id.isin(voted)
            )
        return len(voted)

    def _delete_recall(self, user: str, keys: set[str], dry_run: bool) -> int:
        recall = self.recall
        if recall is None:
            return 0
        where = (recall.user == user) & (recall.role == "user")
        if keys:
            where = where | recall.key.isin(sorted(keys))
        count = recall.where(where).count()
        if count and not dry_run:
            recall.delete(where)
        return count

    def _clean_kept_versions(self, user: str, keys: set[str], pattern: str | None, dry_run: bool) -> int:
        cleaned = 0
        memory = _Store.of(self.memory, self.name, ("user", "role"))
        if memory is not None:
            cleaned += memory.delete_kept(memory.theirs(user), dry_run)
            cleaned += memory.rewrite_kept(
                {
                    "calls": lambda calls: scrub_calls(calls, pattern),
                    "feedback": lambda votes: without_vote(votes, user),
                },
                dry_run,
            )
        recall = _Store.of(self.recall, self.name, ("user", "role", "key")) if self.recall is not None else None
        if recall is not None:
            condition = recall.theirs(user)
            if keys:
                condition = condition | recall.columns["key"].in_(sorted(keys))
            cleaned += recall.delete_kept(condition, dry_run)
        for table in self.legacy:
            if (legacy := _Store.of(table, self.name, ("messages",))) is not None:
                cleaned += legacy.rewrite_kept({"messages": lambda value: scrub_value(value, pattern)}, dry_run)
        return cleaned


# -- inboxes -----------------------------------------------------------------------------------------------
def inbox_tables(engine: sa.Engine) -> list[str]:
    """The plain tables named `*_inbox` with `user_id`, `text` and `team_id` columns (every namespace's inbox)."""
    inspector = sa.inspect(engine)
    found = []
    for name in sorted(inspector.get_table_names()):
        if name.endswith(INBOX_SUFFIX):
            columns = {column["name"] for column in inspector.get_columns(name)}
            if {"user_id", "text", "team_id"} <= columns:
                found.append(name)
    return found


def _erase_in_inbox(engine: sa.Engine, name: str, user: str, team_id: str | None, dry_run: bool) -> InboxErasure:
    table = sa.table(name, sa.column("user_id", sa.Text), sa.column("text", sa.Text), sa.column("team_id", sa.Text))
    theirs = table.c.user_id == user
    if team_id is not None:
        theirs = theirs & (table.c.team_id == team_id)
    with engine.begin() as connection:
        connection.execute(sa.text(f"SET LOCAL statement_timeout = '{INBOX_TIMEOUT}'"))
        rows = int(connection.execute(sa.select(sa.func.count()).select_from(table).where(theirs)).scalar() or 0)
        with_text = theirs & (table.c.text != "")
        if dry_run:
            blanked = int(
                connection.execute(sa.select(sa.func.count()).select_from(table).where(with_text)).scalar() or 0
            )
        else:
            blanked = int(connection.execute(sa.update(table).where(with_text).values(text="")).rowcount)
    return InboxErasure(name, blanked, rows)
