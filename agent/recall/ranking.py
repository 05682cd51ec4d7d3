"""Ranking recalled memory: meaning first, then the question's own words, then recency.

Dense retrieval finds paraphrases but misses what only a rare word pins down (a name, a product, a
date like "March 14"); word overlap finds those but not paraphrases. So candidates come from both:
the nearest vectors, and for the question's most specific words the nearest vectors among messages
that contain them. They are then scored by similarity plus a bonus for the question's words they
contain (rarer-looking words count more) plus a little for being recent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from agent.recall.table import MemoryItem

LEXICAL_WEIGHT = 0.03  # a tie-breaker: questions rarely use the words of their answer (benchmarks.recall_quality)
RECENCY_WEIGHT = 0.01
RECENCY_DAYS = 90.0
MAX_SPECIFIC_WORDS = 2
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
    query_words = set(words(question))
    specific = set(specific_words(question))
    now = now or datetime.now(UTC)
    window = time_window(question, now)
    scored = [
        _with_score(item, item.score + _lexical(item, query_words, specific) + _recency(item, now) + _in(window, item))
        for item in unique.values()
    ]
    return sorted(scored, key=lambda item: -item.score)[:k]


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


def _in(window: tuple[datetime, datetime] | None, item: MemoryItem) -> float:
    if window is None:
        return 0.0
    at = item.at if item.at.tzinfo else item.at.replace(tzinfo=UTC)
    return TIME_WEIGHT if window[0] <= at < window[1] else 0.0


def _lexical(item: MemoryItem, query_words: set[str], specific: set[str]) -> float:
    if not query_words:
        return 0.0
    present = query_words & set(words(f"{item.text} {item.user_name}"))
    weight = sum(2.0 if word in specific else 1.0 for word in present)
    total = sum(2.0 if word in specific else 1.0 for word in query_words)
    return LEXICAL_WEIGHT * weight / total


def _recency(item: MemoryItem, now: datetime) -> float:
    at = item.at if item.at.tzinfo else item.at.replace(tzinfo=UTC)
    age_days = max(0.0, (now - at).total_seconds() / 86_400)
    return RECENCY_WEIGHT * math.exp(-age_days / RECENCY_DAYS)


def _with_score(item: MemoryItem, score: float) -> MemoryItem:
    from dataclasses import replace

    return replace(item, score=round(score, 4))
