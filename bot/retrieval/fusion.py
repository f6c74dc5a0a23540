"""Fusing ranked lists and spotting near-duplicates: small pure functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rrf(rankings: Sequence[tuple[Sequence[str], float]], k: int = 60) -> dict[str, float]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank), ranks from 1."""
    fused: dict[str, float] = {}
    for ranking, weight in rankings:
        if weight <= 0:
            continue
        for r, cid in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + weight / (k + r)
    return fused


def zscore_fusion(lists: Sequence[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Weighted sum of z-normalised scores; a candidate missing from a list gets that list's
    minimum, so one strong signal is not cancelled by the other's silence."""
    fused: dict[str, float] = {}
    keys = {k for scores, _ in lists for k in scores}
    for scores, weight in lists:
        if weight <= 0 or not scores:
            continue
        v = np.array(list(scores.values()), dtype=np.float64)
        mu, sd = float(v.mean()), float(v.std()) or 1.0
        floor = (float(v.min()) - mu) / sd
        for k in keys:
            z = (scores[k] - mu) / sd if k in scores else floor
            fused[k] = fused.get(k, 0.0) + weight * z
    return fused


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
