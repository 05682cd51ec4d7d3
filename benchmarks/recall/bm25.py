"""Okapi BM25 (k1=1.5, b=0.75): the lexical baseline a channel memory has to beat.

Dependency-free on purpose: `rank-bm25` would add a package for ~40 lines, and scores every document
for every query (a dense numpy pass over the whole corpus) where an inverted index only touches the
documents sharing a term with the query. idf is the non-negative Lucene variant,
ln(1 + (N - df + 0.5) / (df + 0.5)), so a term in more than half the messages still counts a little
instead of pushing scores below zero.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

STOPWORDS: frozenset[str] = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    }
)
"""Short English list: function words that only add noise to BM25 on chat messages and questions."""

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lowercased Unicode word-character runs (`\\w+`), minus `STOPWORDS`."""
    return [t for t in _WORD.findall(text.lower()) if t not in STOPWORDS]


class BM25:
    """Okapi BM25 over a fixed list of texts; `top` returns (text index, score), best first."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        docs = [Counter(tokenize(text)) for text in texts]
        self._lengths = [sum(doc.values()) for doc in docs]
        n = len(docs)
        self._avg_length = (sum(self._lengths) / n if n else 0.0) or 1.0
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for index, doc in enumerate(docs):
            for term, tf in doc.items():
                self._postings[term].append((index, tf))
        self._idf = {
            term: math.log(1 + (n - len(posts) + 0.5) / (len(posts) + 0.5)) for term, posts in self._postings.items()
        }

    def scores(self, query: str) -> dict[int, float]:
        """Score of every text sharing at least one query term (others score 0 and are left out)."""
        k1, b, avg = self.k1, self.b, self._avg_length
        out: dict[int, float] = defaultdict(float)
        for term in dict.fromkeys(tokenize(query)):  # query order, not hash order: reproducible float sums
            idf = self._idf.get(term)
            if idf is None:
                continue
            for index, tf in self._postings[term]:
                norm = k1 * (1 - b + b * self._lengths[index] / avg)
                out[index] += idf * tf * (k1 + 1) / (tf + norm)
        return out

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The `k` best (index, score) pairs, best first; fewer if fewer texts share a query term.
        Ties go to the lower index, so results are deterministic."""
        scored = self.scores(query)
        return heapq.nsmallest(k, ((i, s) for i, s in scored.items()), key=lambda pair: (-pair[1], pair[0]))
