"""Honest tuning of the retrieval knobs chosen on data (fusion method, its weights, RRF k,
candidate depth): k-fold cross-validation over the queries of a dataset, grouped by the gold
document so that questions about one passage never sit on both sides of a split.

Each query's dense and BM25 candidate lists are computed once (the retriever's own
``_candidates``, to depth 100); every configuration is then scored offline by fusing those lists
with the production fusion functions. For each fold the configuration with the best nDCG@10 on
the other folds is chosen and scored on the held-out fold; the report gives the mean over the
held-out folds of that choice and of fixed configurations (dense only, BM25 only, the shipped
default), so a choice that only fits the data it was chosen on shows as such."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.retrieval.fusion import rrf, zscore_fusion
from bot.retrieval.retriever import HybridRetriever
from bot.retrieval.types import RetrievalOptions
from eval.datasets import RetrievalDataset
from eval.metrics import dedupe, score_rankings
from eval.suites import GoldItem
from gbg.labels import Role
from gbg.settings import RetrievalSettings

DEPTH = 100
RRF_KS = (5, 10, 20, 40, 60, 100)
BM25_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
DEPTHS = (20, 40, 80)


@dataclass(frozen=True)
class FusionConfig:
    method: str  # dense | bm25 | rrf | zscore
    rrf_k: int = 60
    bm25_ratio: float = 1.0  # BM25 weight over dense weight
    depth: int = 40  # candidates per list before fusion

    def label(self) -> str:
        if self.method in ("dense", "bm25"):
            return f"{self.method} only"
        k = f" k={self.rrf_k}" if self.method == "rrf" else ""
        return f"{self.method}{k} bm25/dense={self.bm25_ratio:g} depth={self.depth}"

    def as_settings(self) -> dict[str, Any]:
        """What to put in ``retrieval`` settings to ship this configuration."""
        if self.method in ("dense", "bm25"):
            return {"mode": self.method, "candidates": self.depth}
        return {"mode": "hybrid", "fusion": self.method, "rrf_k": self.rrf_k,
                "dense_weight": 1.0, "bm25_weight": self.bm25_ratio, "candidates": self.depth}


@dataclass
class QueryLists:
    dense: list[tuple[str, str, float]]  # (chunk id, doc id, score), best first
    bm25: list[tuple[str, str, float]]
    gold: set[str]
    group: str


def shipped(s: RetrievalSettings) -> FusionConfig:
    if s.mode != "hybrid":
        return FusionConfig(s.mode, depth=s.candidates)
    ratio = s.bm25_weight / s.dense_weight if s.dense_weight else math.inf
    return FusionConfig(s.fusion, s.rrf_k, ratio, s.candidates)


def grid() -> list[FusionConfig]:
    out = [FusionConfig("dense"), FusionConfig("bm25")]  # depth >= 10 does not change nDCG@10
    for d in DEPTHS:
        out += [FusionConfig("rrf", k, r, d) for k in RRF_KS for r in BM25_RATIOS]
        out += [FusionConfig("zscore", 60, r, d) for r in BM25_RATIOS]
    return out


@dataclass(frozen=True)
class CVQuery:
    """A question with the documents that answer it, the group its fold is chosen by, and the
    role it is asked with."""

    question: str
    gold: frozenset[str]
    group: str
    role: Role = Role.public


def dataset_queries(dataset: RetrievalDataset) -> list[CVQuery]:
    return [CVQuery(q.question, q.gold_doc_ids,
                    sorted(q.gold_doc_ids)[0] if q.gold_doc_ids else q.question)
            for q in dataset.queries]


def gold_queries(items: Iterable[GoldItem]) -> list[CVQuery]:
    """The gold set's answerable questions of its fit part (the check part is never tuned on),
    grouped by their main document; documents are named by their source."""
    return [CVQuery(i.question, frozenset(i.gold_sources), i.gold_sources[0], Role(i.role))
            for i in items if i.answerable and i.gold_sources and i.split == "fit"]


def collect(retriever: HybridRetriever, queries: Sequence[CVQuery], qvecs: np.ndarray,
            doc_key: str = "doc_id") -> list[QueryLists]:
    """Each query's dense and BM25 candidates, once; a chunk's document is its ``doc_key``
    metadata (``doc_id`` for the datasets, ``source`` for the bundled corpora)."""
    out = []
    for q, qv in zip(queries, qvecs, strict=True):
        names = retriever._resolve_corpora(q.role, None)
        by_id, dense_rank, bm25_rank = retriever._candidates(
            q.question, q.role, names, DEPTH, RetrievalOptions(query_vec=qv), "hybrid")
        doc = {c: str(h.metadata.get(doc_key, "")) for c, h in by_id.items()}
        out.append(QueryLists(
            [(c, doc[c], float(by_id[c].dense or 0.0)) for c in dense_rank],
            [(c, doc[c], float(by_id[c].bm25 or 0.0)) for c in bm25_rank],
            set(q.gold), q.group))
    return out


def rank(q: QueryLists, c: FusionConfig) -> list[str]:
    """Document ids, best first, as the configuration would rank them."""
    dense, bm25 = q.dense[: c.depth], q.bm25[: c.depth]
    doc = {cid: d for cid, d, _ in dense + bm25}
    if c.method == "dense":
        return dedupe(d for _, d, _ in dense)
    if c.method == "bm25":
        return dedupe(d for _, d, _ in bm25)
    if c.method == "rrf":
        fused = rrf([([x for x, _, _ in dense], 1.0), ([x for x, _, _ in bm25], c.bm25_ratio)],
                    c.rrf_k)
    else:
        fused = zscore_fusion([({x: s for x, _, s in dense}, 1.0),
                               ({x: s for x, _, s in bm25}, c.bm25_ratio)])
    return dedupe(doc[x] for x in sorted(fused, key=lambda x: -fused[x]))


def ndcg(lists: Sequence[QueryLists], c: FusionConfig) -> float:
    return score_rankings([(rank(q, c), q.gold) for q in lists]).ndcg_at_10


def folds(groups: Sequence[str], k: int, seed: int) -> list[list[int]]:
    """k folds of query indexes; all queries of one group in one fold."""
    keys = sorted(set(groups))
    random.Random(seed).shuffle(keys)
    fold_of = {g: i % k for i, g in enumerate(keys)}
    out: list[list[int]] = [[] for _ in range(k)]
    for i, g in enumerate(groups):
        out[fold_of[g]].append(i)
    return out


@dataclass
class CVReport:
    k: int
    heldout: dict[str, list[float]]  # label -> nDCG@10 per held-out fold
    chosen: list[FusionConfig]  # per fold
    configs: int

    def mean(self, label: str) -> float:
        return float(np.mean(self.heldout[label]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "folds": self.k, "configurations": self.configs,
            "heldout_ndcg@10": {name: {"mean": round(self.mean(name), 4),
                                       "sd": round(float(np.std(v)), 4),
                                       "folds": [round(x, 4) for x in v]}
                                for name, v in self.heldout.items()},
            "chosen_per_fold": [c.label() for c in self.chosen],
            "winner": self.winner().label(),
            "winner_settings": self.winner().as_settings(),
        }

    def winner(self) -> FusionConfig:
        """The configuration chosen most often across folds (ties: the first chosen)."""
        counts = Counter(self.chosen)
        return max(self.chosen, key=lambda c: counts[c])


def cross_validate(lists: Sequence[QueryLists], default: FusionConfig, k: int = 5,
                   seed: int = 17, configs: Iterable[FusionConfig] | None = None) -> CVReport:
    configs = list(configs or grid())
    if default not in configs:
        configs.append(default)
    parts = folds([q.group for q in lists], k, seed)
    # nDCG@10 of every configuration on every fold, once
    per_fold = [[ndcg([lists[i] for i in part], c) for c in configs] for part in parts]
    sizes = [len(p) for p in parts]
    fixed = {"dense only": FusionConfig("dense"), "bm25 only": FusionConfig("bm25"),
             "shipped default": default}
    heldout: dict[str, list[float]] = {name: [] for name in (*fixed, "cross-validated choice")}
    chosen: list[FusionConfig] = []
    for f in range(k):
        train = [j for j in range(k) if j != f]
        weight = sum(sizes[j] for j in train)
        train_score = [sum(per_fold[j][c] * sizes[j] for j in train) / weight
                       for c in range(len(configs))]
        best = int(np.argmax(train_score))
        chosen.append(configs[best])
        heldout["cross-validated choice"].append(per_fold[f][best])
        for name, c in fixed.items():
            heldout[name].append(per_fold[f][configs.index(c)] if c in configs
                                 else ndcg([lists[i] for i in parts[f]], c))
    return CVReport(k, heldout, chosen, len(configs))


def cross_validate_pooled(datasets: Mapping[str, Sequence[QueryLists]], default: FusionConfig,
                          k: int = 5, seed: int = 17,
                          configs: Iterable[FusionConfig] | None = None
                          ) -> dict[str, CVReport]:
    """One configuration for several datasets (what a shipped default is): in each fold the
    configuration with the best mean over the datasets' training folds is chosen, and scored
    on each dataset's held-out fold."""
    configs = list(configs or grid())
    if default not in configs:
        configs.append(default)
    fixed = {"dense only": FusionConfig("dense"), "bm25 only": FusionConfig("bm25"),
             "shipped default": default}
    per: dict[str, tuple[list[list[int]], list[list[float]]]] = {}
    for name, lists in datasets.items():
        parts = folds([q.group for q in lists], k, seed)
        per[name] = (parts, [[ndcg([lists[i] for i in part], c) for c in configs]
                             for part in parts])
    reports = {name: CVReport(k, {n: [] for n in (*fixed, "cross-validated choice")}, [],
                              len(configs)) for name in datasets}
    for f in range(k):
        train_score = np.zeros(len(configs))
        for parts, scores in per.values():
            sizes = [len(p) for p in parts]
            train = [j for j in range(k) if j != f]
            weight = sum(sizes[j] for j in train)
            train_score += np.array([sum(scores[j][c] * sizes[j] for j in train) / weight
                                     for c in range(len(configs))])
        best = int(np.argmax(train_score))
        for name, (_, scores) in per.items():
            rep = reports[name]
            rep.chosen.append(configs[best])
            rep.heldout["cross-validated choice"].append(scores[f][best])
            for label, c in fixed.items():
                rep.heldout[label].append(scores[f][configs.index(c)])
    return reports
