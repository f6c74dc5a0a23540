"""Ranking metrics with binary relevance. Each takes the ranked ids and the set of gold ids.

Conventions: ranks start at 1; a query with no gold ids is skipped by the caller, never scored 0;
duplicate ids in a ranking count once, at their first position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def dedupe(ranked: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in ranked if not (x in seen or seen.add(x))]  # type: ignore[func-returns-value]


def recall_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Share of the gold ids found in the top k."""
    if not gold:
        raise ValueError("recall needs at least one gold id")
    return len(set(dedupe(ranked)[:k]) & gold) / len(gold)


def mrr_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1 / rank of the first gold id within the top k, else 0."""
    for rank, x in enumerate(dedupe(ranked)[:k], start=1):
        if x in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Normalised discounted cumulative gain, gain 1 for a gold id, discount log2(rank + 1)."""
    if not gold:
        raise ValueError("nDCG needs at least one gold id")
    ranks = enumerate(dedupe(ranked)[:k], start=1)
    dcg = sum(1.0 / math.log2(r + 1) for r, x in ranks if x in gold)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(gold), k) + 1))
    return dcg / ideal


@dataclass(frozen=True)
class RankingScores:
    n: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    ndcg_at_10: float

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "recall@1": self.recall_at_1,
            "recall@5": self.recall_at_5,
            "recall@10": self.recall_at_10,
            "mrr@10": self.mrr_at_10,
            "ndcg@10": self.ndcg_at_10,
        }


def score_rankings(runs: Sequence[tuple[Sequence[str], set[str]]]) -> RankingScores:
    """Mean of each metric over (ranking, gold) pairs."""
    runs = [r for r in runs if r[1]]
    n = len(runs)
    if n == 0:
        raise ValueError("no query with gold ids to score")

    def mean(values: Iterable[float]) -> float:
        return sum(values) / n

    return RankingScores(
        n=n,
        recall_at_1=mean(recall_at_k(r, g, 1) for r, g in runs),
        recall_at_5=mean(recall_at_k(r, g, 5) for r, g in runs),
        recall_at_10=mean(recall_at_k(r, g, 10) for r, g in runs),
        mrr_at_10=mean(mrr_at_k(r, g, 10) for r, g in runs),
        ndcg_at_10=mean(ndcg_at_k(r, g, 10) for r, g in runs),
    )
