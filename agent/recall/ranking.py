"""Ranking recalled memory: meaning first, then the question's own words, then recency.

Dense retrieval finds paraphrases but misses what only a rare word pins down (a name, a product, a
date like "March 14"); word overlap finds those but not paraphrases. So candidates come from both:
the nearest vectors, and for the question's most specific words the nearest vectors among messages
that contain them. They are then scored by similarity plus a bonus for the question's words they
contain plus a little for being recent. A word counts more if it looks specific (a name, a number),
and by how few of the candidates contain it: an inverse document frequency over the messages near
the question, which needs no statistics of the whole channel, so that a word all of them share (the
name of the person asked about, whom the vectors already match) leaves the bonus to the others.

Two steps then use what a conversation is made of. A chat repeats itself ("thanks!", "looking",
"can we record it?"), and copies of one text all score alike, so all but the best copy go after the
distinct messages: they would fill the few places recall has with one thing said several times.
And people split a thought over consecutive messages ("Northwind gets 20% off." then "Only for the
annual plan though."): the second part rarely resembles the question, so for the best few results
the same author's next message in the same conversation, within minutes, comes right after it
(`with_continuations`; the store finds them, `agent.recall.store_search`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from agent.recall.table import MemoryItem

LEXICAL_WEIGHT = 0.05  # a tie-breaker: questions rarely use the words of their answer (benchmarks.recall_quality)
RECENCY_WEIGHT = 0.01
RECENCY_DAYS = 90.0
MAX_SPECIFIC_WORDS = 2
CONTINUED = 3  # the best results whose author's next message (a continuation) is brought along
CONTINUATION_GAP = timedelta(minutes=15)  # at most this long after the message it continues
TIME_WEIGHT = 0.1
_RELATIVE = {  # phrase: (days back from now, days back until), most specific first
    "yesterday": (2, 0),
    "today": (1, 0),
    "this morning": (1, 0),
    "last week": (14, 0),
    "this week": (7, 0),
    "few days ago": (7, 0),
    "last month": (62, 0),
    "this month": (31, 0),
}
_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = """a about after again all also am an and any are as at be been before being but by can could
did do does doing done for from had has have having he her here hers him his how i if in into is it
its just me more most my no nor not now of off on once only or other our ours out over own please
same she should so some such than that the their theirs them then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours pixelbot tell know remember said say told did anyone channel thread last ago
week month year day today yesterday"""
STOPWORDS = frozenset(_STOPWORDS.split())


def words(text: str) -> list[str]:
    """The lowercase words of `text` that carry meaning (no stopwords, no 1-letter tokens)."""
    return [word for word in (w.lower() for w in _WORD.findall(text)) if len(word) > 1 and word not in STOPWORDS]


def specific_words(question: str) -> list[str]:
    """The question's words most likely to pin a message down: capitalised inside the sentence, with a
    digit, or long; at most `MAX_SPECIFIC_WORDS`, the most specific first."""
    tokens = _WORD.findall(question)
    scored: dict[str, float] = {}
    for position, token in enumerate(tokens):
        word = token.lower()
        if len(word) < 3 or word in STOPWORDS:
            continue
        weight = _specificity(token, position)
        if weight > 0:
            scored[word] = max(scored.get(word, 0.0), weight)
    return sorted(scored, key=lambda word: -scored[word])[:MAX_SPECIFIC_WORDS]


def _specificity(token: str, position: int) -> float:
    weight = 0.0
    if any(ch.isdigit() for ch in token):
        weight += 2.0
    if position > 0 and token[:1].isupper():
        weight += 1.5
    if len(token) >= 7:
        weight += len(token) / 10
    return weight


def rank(question: str, candidates: Iterable[MemoryItem], k: int, now: datetime | None = None) -> list[MemoryItem]:
    """The best `k` of `candidates` (deduplicated by key) for `question`, each with its final score."""
    unique = {item.key: item for item in candidates}
    said = {key: set(words(f"{item.text} {item.user_name}")) for key, item in unique.items()}
    weights = word_weights(question, list(said.values()))
    now = now or datetime.now(UTC)
    window = time_window(question, now)
    scored = [
        _with_score(item, item.score + _lexical(said[key], weights) + _recency(item, now) + _in(window, item))
        for key, item in unique.items()
    ]
    return distinct_first(sorted(scored, key=lambda item: -item.score))[:k]


def word_weights(question: str, pool: list[set[str]]) -> dict[str, float]:
    """How much each of the question's words says about a candidate: twice as much for a specific
    word, times its inverse frequency among the candidates (as BM25's IDF, over the messages near the
    question rather than the whole channel): a word most candidates share tells none of them apart."""
    specific = set(specific_words(question))
    weights = {}
    for word in set(words(question)):
        found = sum(word in said for said in pool)
        weights[word] = (2.0 if word in specific else 1.0) * math.log(1 + len(pool) / (1 + found))
    return weights


def distinct_first(ranked: list[MemoryItem]) -> list[MemoryItem]:
    """`ranked` with every repeat of a text seen higher up (case, spacing and punctuation aside) moved
    after the distinct texts: a repeated "looking" or "thanks!" says nothing new."""
    seen: set[str] = set()
    distinct: list[MemoryItem] = []
    repeats: list[MemoryItem] = []
    for item in ranked:
        text = " ".join(_WORD.findall(item.text.lower())) or item.text.strip()  # an emoji is its own text
        (repeats if text in seen else distinct).append(item)
        seen.add(text)
    return distinct + repeats


def with_continuations(ranked: list[MemoryItem], continuations: dict[str, MemoryItem], k: int) -> list[MemoryItem]:
    """The first `k` of `ranked` with the continuation of each of the first `CONTINUED` (by the key of
    the message it continues) right after it, at its score: the second half of a thought belongs
    next to the first, and only a result recall is sure of is worth a place for its sequel."""
    spliced: list[MemoryItem] = []
    placed: set[str] = set()
    for position, item in enumerate(ranked):
        if item.key in placed:
            continue  # a continuation placed higher up already
        follow = continuations.get(item.key) if position < CONTINUED else None
        for kept in (item, None if follow is None else _with_score(follow, item.score)):
            if kept is not None and kept.key not in placed:
                spliced.append(kept)
                placed.add(kept.key)
    return spliced[:k]


def time_window(question: str, now: datetime) -> tuple[datetime, datetime] | None:
    """The stretch of time a question is about, when it says ("yesterday", "last week", "in March"):
    messages from then get a bonus, and are searched among for candidates."""
    text = question.lower()
    for phrase, (back, until) in _RELATIVE.items():
        if phrase in text:
            return now - timedelta(days=back), now - timedelta(days=until)
    for number, month in enumerate(_MONTHS, start=1):
        pattern = rf"\b{month}\b" if month != "may" else r"\bin may\b|\bmay \d"  # not "may I ask"
        if re.search(pattern, text):
            year = now.year if number <= now.month else now.year - 1  # the latest such month
            start = datetime(year, number, 1, tzinfo=UTC)
            end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
            return start, end
    return None


def continues(first: MemoryItem, then: MemoryItem, gap: timedelta = CONTINUATION_GAP) -> bool:
    """Whether `then` may carry on `first`: same author, in the same thread (or both in the channel
    itself), at most `gap` later; what the store looks for in `StoreSearch.continuations`."""
    if then.user != first.user or not first.at < then.at <= first.at + gap or "file" in (first.role, then.role):
        return False
    return then.thread_ts == (first.thread_ts or first.ts) or (_top_level(first) and _top_level(then))


def _top_level(item: MemoryItem) -> bool:
    return item.thread_ts in ("", item.ts)


def _in(window: tuple[datetime, datetime] | None, item: MemoryItem) -> float:
    if window is None:
        return 0.0
    at = item.at if item.at.tzinfo else item.at.replace(tzinfo=UTC)
    return TIME_WEIGHT if window[0] <= at < window[1] else 0.0


def _lexical(said: set[str], weights: dict[str, float]) -> float:
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return LEXICAL_WEIGHT * sum(weight for word, weight in weights.items() if word in said) / total


def _recency(item: MemoryItem, now: datetime) -> float:
    at = item.at if item.at.tzinfo else item.at.replace(tzinfo=UTC)
    age_days = max(0.0, (now - at).total_seconds() / 86_400)
    return RECENCY_WEIGHT * math.exp(-age_days / RECENCY_DAYS)


def _with_score(item: MemoryItem, score: float) -> MemoryItem:
    from dataclasses import replace

    return replace(item, score=round(score, 4))
