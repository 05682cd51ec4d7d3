"""Recall@k, and a table printer, for ranked retrieval results against planted answers.

Recall (not precision) because a memory hands its top-k to the model: what matters is whether the
answer is in that window at all. For a fact split over several messages, recall@k is the fraction of
them in the top k, so finding half the answer counts half.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def recall_at(ranked_keys: Sequence[str], answer_keys: frozenset[str], k: int) -> float:
    """Fraction of `answer_keys` among the first `k` of `ranked_keys` (1.0 if there are no answers)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if not answer_keys:
        return 1.0
    return len(answer_keys.intersection(ranked_keys[:k])) / len(answer_keys)


def reciprocal_rank(ranked_keys: Sequence[str], answer_keys: frozenset[str]) -> float:
    """1 / rank of the first answer found (0.0 if none is ranked): how high the answer sits, not just if."""
    for rank, key in enumerate(ranked_keys, start=1):
        if key in answer_keys:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True)
class Summary:
    """Mean recall@k per k (and MRR) for one retriever over a probe set, overall and per probe kind."""

    name: str
    probes: int
    recall: Mapping[int, float]
    mrr: float
    by_kind: Mapping[str, Mapping[int, float]]


def summarize(
    name: str,
    rankings: Sequence[Sequence[str]],
    answers: Sequence[frozenset[str]],
    kinds: Sequence[str] | None = None,
    ks: Sequence[int] = (5, 10),
) -> Summary:
    """Average recall@k over probes; `rankings[i]` is the ranked keys returned for probe `i`."""
    if len(rankings) != len(answers):
        raise ValueError("one ranking per probe")
    labels = list(kinds) if kinds is not None else ["all"] * len(answers)
    n = len(answers)
    recall = {k: sum(recall_at(r, a, k) for r, a in zip(rankings, answers, strict=True)) / max(n, 1) for k in ks}
    mrr = sum(reciprocal_rank(r, a) for r, a in zip(rankings, answers, strict=True)) / max(n, 1)
    by_kind: dict[str, dict[int, float]] = {}
    for kind in sorted(set(labels)):
        rows = [i for i, label in enumerate(labels) if label == kind]
        by_kind[kind] = {k: sum(recall_at(rankings[i], answers[i], k) for i in rows) / len(rows) for k in ks}
    return Summary(name, n, recall, mrr, by_kind)


def format_table(summaries: Sequence[Summary], kind_counts: Mapping[str, int] | None = None) -> str:
    """A fixed-width table: one row per retriever, columns recall@k overall, MRR, then recall@k per kind."""
    if not summaries:
        return ""
    ks = list(summaries[0].recall)
    columns = [(kind, k) for kind in sorted(summaries[0].by_kind) for k in ks]
    titles = [
        f"{kind}{f'({kind_counts[kind]})' if kind_counts and kind in kind_counts else ''} R@{k}" for kind, k in columns
    ]
    lines = ["  ".join(["retriever".ljust(36), *(f"R@{k}".rjust(6) for k in ks), "MRR".rjust(6), *titles])]
    for s in summaries:
        cells = [s.name.ljust(36), *(f"{s.recall[k]:6.3f}" for k in ks), f"{s.mrr:6.3f}"]
        cells.extend(
            f"{s.by_kind[kind][k]:.3f}".rjust(len(title)) for (kind, k), title in zip(columns, titles, strict=True)
        )
        lines.append("  ".join(cells))
    return "\n".join(lines)


def print_summaries(summaries: Sequence[Summary], kind_counts: Mapping[str, int] | None = None) -> None:
    """Print `format_table(...)`; the helper benchmarks call."""
    print(format_table(summaries, kind_counts))
