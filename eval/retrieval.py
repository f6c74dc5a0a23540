"""Retrieval evaluation: dense only, BM25 only and hybrid over the same chunks in one run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.retrieval.retriever import HybridRetriever
from bot.retrieval.types import Fusion, Mode, RetrievalOptions
from eval.datasets import RetrievalDataset
from eval.metrics import RankingScores, dedupe, score_rankings
from gbg.labels import Role
from gbg.settings import Settings
from ingest.embedders import Embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import IngestReport, ingest_all
from ingest.store import ChromaStore

# "hybrid" is the shipped fusion (settings); the two others name theirs
MODES: tuple[str, ...] = ("dense", "bm25", "hybrid", "hybrid-rrf", "hybrid-zscore")
_FUSION: dict[str, Fusion] = {"hybrid-rrf": "rrf", "hybrid-zscore": "zscore"}

_MANIFEST = """name = "{name}"
title = "{name} (evaluation corpus)"
audience = "public"
sensitivity = "public"
languages = ["sv"]
[license]
name = "CC BY 4.0"
attribution = "{attribution}"
[[sources]]
type = "files"
include = ["docs/*.jsonl"]
"""


@dataclass(frozen=True)
class ModeResult:
    mode: str
    scores: RankingScores
    p50_ms: float
    p95_ms: float


def dataset_settings(settings: Settings, dataset: RetrievalDataset) -> Settings:
    """A store of its own per dataset under the data dir, reused (incrementally) across runs."""
    root = settings.data_dir / "eval" / dataset.name
    corpus_dir = root / "corpora" / dataset.name
    docs = corpus_dir / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    # A copy, not a link: ingest refuses links that leave the corpus folder. Rewritten only when
    # the dataset changed, so the incremental ingest skips an unchanged corpus.
    copy = docs / "corpus.jsonl"
    data = dataset.corpus_path.read_bytes()
    if copy.is_symlink() or not copy.exists() or copy.read_bytes() != data:
        copy.unlink(missing_ok=True)
        copy.write_bytes(data)
    (corpus_dir / "corpus.toml").write_text(
        _MANIFEST.format(name=dataset.name, attribution=dataset.attribution), encoding="utf-8"
    )
    s = settings.model_copy(deep=True)
    s.corpora_dir = root / "corpora"
    s.data_dir = root
    s.chroma.path = None
    s.chroma.host = None
    return s


def build_store(settings: Settings, embedder: Embedder) -> IngestReport:
    return ingest_all(
        settings, discover_manifests(settings.corpora_dir), ChromaStore.from_settings(settings),
        embedder,
    )


def evaluate_retrieval(
    settings: Settings,
    embedder: Embedder,
    dataset: RetrievalDataset,
    modes: Sequence[str] = MODES,
    depth: int = 40,
    on_query: Callable[[], None] | None = None,
) -> list[ModeResult]:
    """Rank documents for every query in each mode and score them against the gold ids."""
    retriever = HybridRetriever(ChromaStore.from_settings(settings), embedder, settings.retrieval)
    retriever.index_for(Role.public)
    qvecs = embedder.embed_queries([q.question for q in dataset.queries])
    results = []
    for mode in modes:
        runs: list[tuple[list[str], set[str]]] = []
        times: list[float] = []
        for q, qv in zip(dataset.queries, qvecs, strict=True):
            t = time.perf_counter()
            base: Mode = "hybrid" if mode.startswith("hybrid") else mode  # type: ignore[assignment]
            fusion = _FUSION.get(mode)
            opts = RetrievalOptions(k=depth, mode=base, query_vec=qv, fusion=fusion)
            hits = retriever.retrieve(q.question, Role.public, opts)
            times.append((time.perf_counter() - t) * 1000)
            ranked = dedupe(str(h.metadata.get("doc_id", "")) for h in hits)
            runs.append((ranked, set(q.gold_doc_ids)))
            if on_query:
                on_query()
        results.append(
            ModeResult(mode, score_rankings(runs), float(np.percentile(times, 50)),
                       float(np.percentile(times, 95)))
        )
    return results


def results_as_dict(dataset: RetrievalDataset, results: Sequence[ModeResult],
                    ingest: IngestReport | None = None, extra: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    return {
        "dataset": dataset.name,
        "queries": len(dataset.queries),
        "attribution": dataset.attribution,
        "modes": {
            r.mode: {**r.scores.as_dict(), "p50_ms": round(r.p50_ms, 2),
                     "p95_ms": round(r.p95_ms, 2)}
            for r in results
        },
        "chunks": ingest.total("chunks_total") if ingest else None,
        **(extra or {}),
    }


def write_report(reports_dir: Path, payload: dict[str, Any]) -> Path:
    import json

    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"retrieval-{payload['dataset']}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return path
