"""The inbox's one statement for a batch of requests (`Inbox._insert`, one array per column): every
field stored as received, each request once, and a request stored before reported so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa

from bot.inbox import Inbox, InboxItem, RequestKind, Status, _item_from_row


def stored(inbox: Inbox, request_id: str) -> InboxItem:
    with inbox.engine.connect() as connection:
        row = connection.execute(sa.select(inbox.table).where(inbox.table.c.request_id == request_id)).mappings().one()
    return _item_from_row(dict(row))


def test_a_batch_stores_each_request_once_with_every_field_as_received(make_inbox: Callable[..., Inbox]) -> None:
    inbox = make_inbox()
    odd = InboxItem(
        "Ev0001", RequestKind.MENTION, "T0001", "C0001", "U0001", "100% %(text)s 'it''s' \"quoted\" ✓ 日本語 🎉",
        ts="1700000000.000100", thread_ts="1700000000.000001", response_url="https://hooks.slack.test/x?a=1&b=%20",
        received_at=datetime(2026, 12, 7, 6, 30, 1, 123456, tzinfo=UTC),
        files=({"id": "F0001", "name": "notes.pdf", "size": 12}, {"id": "F0002", "name": "a,b {c}.txt"}),
        home_team_id="E0001",
    )  # fmt: skip
    plain = InboxItem("Ev0002", RequestKind.TOOL, "T0001", "C0002", "U0002", "weather?", ts="1700000000.000200")
    copy = replace(odd, text="the same request delivered again")

    assert inbox._insert([odd, plain, copy]) == {"Ev0001", "Ev0002"}
    assert inbox._insert([plain]) == set()  # stored before: not again
    assert stored(inbox, "Ev0001") == odd  # the first copy, every field as it came
    assert stored(inbox, "Ev0002") == plain
    assert inbox.status("Ev0001") is Status.ANSWERING
    with inbox.engine.connect() as connection:
        owners = connection.execute(sa.select(inbox.table.c.owner).distinct()).scalars().all()
    assert owners == [inbox.worker.owner]  # claimed by the worker that received them
