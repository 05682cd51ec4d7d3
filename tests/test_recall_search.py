"""Recall's search, unit by unit on a real recall table: the one-statement search on Pixeltable's
storage finds what the Pixeltable query finds; ranking, words and prompt lines behave as documented."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pixeltable as pxt
import pytest

from agent.recall import MemoryItem
from agent.recall import table as recall_table
from agent.recall.embeddings import Vector
from agent.recall.prompt import cited, recalled_message
from agent.recall.ranking import CONTINUATION_GAP, rank, specific_words, time_window, with_continuations
from agent.recall.store_search import StoreSearch

SIZE = 16
START = datetime(2026, 1, 1, tzinfo=UTC)


def unit(vector: np.ndarray) -> Vector:
    scaled: Vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    return scaled


@pytest.fixture
def table(pixeltable_home: object, agent_name: str) -> Iterator[pxt.Table]:
    pxt.create_dir(agent_name, parents=True, if_exists="ignore")
    recall = recall_table.open_recall_table(agent_name, "test-model", SIZE)
    rng = np.random.default_rng(1)
    texts = ["the Falcon release ships in March", "lunch is pizza", "Falcon QA signoff done", "build 42 is green"]
    rows = []
    for index in range(60):
        at, name = START + timedelta(hours=index), ["Priya", "Bob", ""][index % 3]
        text, user = f"{texts[index % 4]} #{index}", f"U{index % 3:07d}"
        item = MemoryItem(f"{index}:user", text, "user", user, at, f"17000000{index:02d}.000100", user_name=name)
        rows.append((item, unit(rng.standard_normal(SIZE))))
    recall_table.upsert(recall, rows, "test-model")
    yield recall


def test_the_one_statement_search_finds_what_the_pixeltable_query_finds(table: pxt.Table) -> None:
    fast = StoreSearch.of(table)
    assert fast is not None
    vector = unit(np.random.default_rng(2).standard_normal(SIZE))
    exclude = {"3:user", "7:user"}

    dense = fast.candidates(vector, 10, exclude, [], 5)
    reference = recall_table.search(table, vector, 10, exclude)
    assert [item.key for item in dense] == [item.key for item in reference]
    assert [item.score for item in dense] == pytest.approx([item.score for item in reference], abs=1e-3)

    both = fast.candidates(vector, 10, exclude, ["falcon", "priya"], 5)
    by_word = [recall_table.search(table, vector, 5, exclude, containing=word) for word in ("falcon", "priya")]
    assert [item.key for item in both[10:]] == [item.key for items in by_word for item in items]
    assert all("Falcon" in item.text for item in both[10:15])
    assert all(item.user_name == "Priya" for item in both[15:])
    assert not {item.key for item in both} & exclude


def test_a_rare_word_finds_its_message_however_far_its_meaning(pixeltable_home: object, agent_name: str) -> None:
    pxt.create_dir(agent_name, parents=True, if_exists="ignore")
    table = recall_table.open_recall_table(agent_name, "test-model", SIZE)
    vectors = [unit(vector) for vector in np.random.default_rng(3).standard_normal((1_000, SIZE))]
    rows = [(MemoryItem(f"{n}:user", f"status update {n}", "user", "U1", START), vectors[n]) for n in range(1_000)]
    rows[7] = (MemoryItem("7:user", "the code name is Zephyr-9 (say it twice)", "user", "U1", START), vectors[7])
    recall_table.upsert(table, rows, "test-model")
    fast = StoreSearch.of(table)
    assert fast is not None
    opposite = unit(-vectors[7])  # the farthest of all from the message: the vector index never gets to it

    for word in ("zephyr", "Zephyr", "9"):
        assert "7:user" in {item.key for item in fast.candidates(opposite, 5, set(), [word], 5)}
    assert "7:user" not in {item.key for item in fast.candidates(opposite, 5, set(), ["zeph"], 5)}  # words, not parts


def test_a_word_with_like_wildcards_matches_only_itself(table: pxt.Table) -> None:
    fast = StoreSearch.of(table)
    assert fast is not None
    assert fast.candidates(unit(np.ones(SIZE)), 5, set(), ["%"], 5)[5:] == []


def test_an_edit_replaces_the_stored_text_and_a_deletion_removes_it(table: pxt.Table) -> None:
    vector = unit(np.ones(SIZE))
    item = MemoryItem("5:user", "edited text", "user", "U0000002", START)
    recall_table.upsert(table, [(item, vector)], "test-model")
    recall_table.delete(table, ["6:user"])
    texts = {row["key"]: row["text"] for row in table.select(table.key, table.text).collect()}
    assert texts["5:user"] == "edited text"
    assert "6:user" not in texts
    assert len(texts) == 59


def test_specific_words_prefer_names_numbers_and_long_words() -> None:
    assert specific_words("what did Priya say about ticket 4521?") == ["4521", "priya"]
    assert specific_words("when is lunch?") == []
    assert specific_words("") == []


def test_rank_adds_word_overlap_and_recency_to_similarity() -> None:
    now = START + timedelta(days=10)
    old = MemoryItem("a", "Falcon ships in March", "user", "U1", START - timedelta(days=400), score=0.50)
    recent = MemoryItem("b", "lunch is pizza", "user", "U1", now, score=0.505)
    [first, second] = rank("when does Falcon ship?", [recent, old, old], 5, now)
    assert first.key == "a" and second.key == "b"  # the duplicate is gone; "Falcon" outweighs 0.005 and recency
    [first, _] = rank("when does it ship?", [recent, old], 5, now)
    assert first.key == "b"


def test_the_recall_block_numbers_what_fits_and_citations_map_back() -> None:
    items = [
        MemoryItem(str(n), f"message {n} " + "word " * 50, "user", "U1", START, user_name="Priya") for n in range(10)
    ]
    text, used = recalled_message(items, max_tokens=250)
    assert text is not None and 1 <= len(used) < 10
    assert "[1] 2026-01-01 00:00 UTC, Priya (user U1): message 0" in text
    assert cited("as said in [2] and [1], also [1] and [99]", used) == [used[1], used[0]]
    assert recalled_message(items, max_tokens=5) == (None, [])


def test_a_question_about_a_time_gets_that_stretch_of_time() -> None:
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    assert time_window("what broke yesterday?", now) == (now - timedelta(days=2), now)
    assert time_window("what did we ship last week?", now) == (now - timedelta(days=14), now)
    assert time_window("what was decided in March?", now) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert time_window("the December freeze?", now) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert time_window("may I ask about the vendor?", now) is None
    assert time_window("what did we decide about the vendor?", now) is None


def test_messages_from_the_asked_time_rank_higher() -> None:
    now = datetime(2026, 3, 20, tzinfo=UTC)
    in_march = MemoryItem("a", "vendor call notes", "user", "U1", datetime(2026, 3, 3, tzinfo=UTC), score=0.50)
    in_january = MemoryItem("b", "vendor call notes", "user", "U1", datetime(2026, 1, 3, tzinfo=UTC), score=0.55)
    assert [item.key for item in rank("what was the vendor call in March about?", [in_january, in_march], 2, now)] == [
        "a",
        "b",
    ]
    assert [item.key for item in rank("what was the vendor call about?", [in_january, in_march], 2, now)] == ["b", "a"]


def test_a_repeated_text_goes_after_the_distinct_ones() -> None:
    now = START + timedelta(days=1)
    looking = [MemoryItem(f"l{n}", "Looking!", "user", "U1", now, score=0.6 - n / 100) for n in range(3)]
    fact = MemoryItem("f", "the leak is in the image resizer", "user", "U1", now, score=0.5)
    assert [item.key for item in rank("what about the leak?", [*looking, fact], 3, now)] == ["l0", "f", "l1"]


def test_the_next_message_of_the_same_author_in_the_thread_follows_a_top_result(table: pxt.Table) -> None:
    at, thread = START + timedelta(days=30), "1700009000.000100"
    said = [  # (key, text, user, minutes after the fact, thread): only "more" continues "fact"
        ("fact", "Northwind gets 20% off", "U9", 0, ""),
        ("other", "nice", "U8", 1, thread),
        ("elsewhere", "lunch?", "U9", 2, "1700000001.000100"),
        ("more", "only for the annual plan", "U9", 3, thread),
        ("late", "and one more thing", "U9", 30, thread),
    ]
    items = [
        MemoryItem(
            key, text, "user", user, at + timedelta(minutes=m), thread if key == "fact" else f"17000090{n}.0001", t
        )
        for n, (key, text, user, m, t) in enumerate(said)
    ]
    vectors = [unit(np.ones(SIZE) + index) for index in range(len(items))]
    recall_table.upsert(table, list(zip(items, vectors, strict=True)), "test-model")
    fast = StoreSearch.of(table)
    assert fast is not None
    found = {item.key: item for item in fast.candidates(vectors[0], 10, set(), [], 5)}
    anchors = [found[key] for key in ("fact", "other", "elsewhere")]
    follows = fast.continuations(anchors, set(), CONTINUATION_GAP)
    assert {key: item.key for key, item in follows.items()} == {"fact": "more"}
    assert follows["fact"].text == "only for the annual plan" and follows["fact"].user == "U9"
    reference = recall_table.continuations(table, anchors, set(), CONTINUATION_GAP)
    assert {key: item.key for key, item in reference.items()} == {"fact": "more"}
    assert fast.continuations(anchors, {"more"}, CONTINUATION_GAP) == {}
    fact = found["fact"]
    ranked = [fact, MemoryItem("x", "x", "user", "U1", at, score=0.1), follows["fact"]]
    assert [item.key for item in with_continuations(ranked, follows, 2)] == ["fact", "more"]


def test_a_continuation_the_prompt_has_already_is_left_out(table: pxt.Table) -> None:
    at, thread = START + timedelta(days=30), "1700009000.000100"
    said = [
        ("fact", "Northwind gets 20% off", 0, ""),
        ("more", "annual plan only", 3, thread),
        ("then", "ok?", 5, thread),
    ]
    items = [
        MemoryItem(
            key, text, "user", "U9", at + timedelta(minutes=m), thread if key == "fact" else f"17000090{n}.0001", t
        )
        for n, (key, text, m, t) in enumerate(said)
    ]
    recall_table.upsert(table, [(item, unit(np.ones(SIZE) + n)) for n, item in enumerate(items)], "test-model")
    fast = StoreSearch.of(table)
    assert fast is not None
    [fact] = [item for item in fast.candidates(unit(np.ones(SIZE)), 70, set(), [], 5) if item.key == "fact"]

    assert {key: item.key for key, item in fast.continuations([fact], set(), CONTINUATION_GAP).items()} == {
        "fact": "more"
    }
    assert fast.continuations([fact], {"more"}, CONTINUATION_GAP) == {}  # not "then": "more" carries the thought on
    assert recall_table.continuations(table, [fact], {"more"}, CONTINUATION_GAP) == {}


def test_a_table_that_doubled_gets_fresh_statistics(pixeltable_home: object, agent_name: str) -> None:
    pxt.create_dir(agent_name, parents=True, if_exists="ignore")
    table = recall_table.open_recall_table(agent_name, "test-model", SIZE)
    fast = StoreSearch.of(table)  # made empty, as recall makes a channel's table before catching up
    assert fast is not None
    vectors = np.random.default_rng(4).standard_normal((300, SIZE))
    rows = [(MemoryItem(f"{n}:user", f"note {n}", "user", "U1", START), unit(vectors[n])) for n in range(300)]
    recall_table.upsert(table, rows, "test-model")

    fast.grew(300)

    assert fast._rows_known_to_planner() == 300  # what the planner knows of the table: all of it
