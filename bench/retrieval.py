"""Retrieval latency at 10k and 100k chunks on the embedded store.

    python bench/retrieval.py [--sizes 10000 100000] [--queries 200]

Vectors: real multilingual-e5-small passage embeddings of SweQUAD-MC and SweFAQ chunks (taken
from the evaluation stores that `gbg eval retrieval` builds, embedded on first use), replicated
to the target size with small Gaussian perturbations (each copy re-normalised), so the index has
the neighbourhood structure of real text vectors. Texts are the real chunk texts. Queries are real
SweQUAD-MC questions, embedded inside the timed call (query embedding included), through the
embedder the bot uses (behind the cache, with its per-process LRU of query vectors).
Prints p50/p95 of a full retrieval call (hybrid, dense, bm25) per size: "cold" is each question
asked for the first time (its vector computed), "warm" the same questions asked again (the
vector from the LRU, as for a repeated or popular question), and the query embedding alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.retrieval.retriever import HybridRetriever  # noqa: E402
from bot.retrieval.types import RetrievalOptions  # noqa: E402
from eval.datasets import load_retrieval_dataset  # noqa: E402
from eval.retrieval import build_store, dataset_settings  # noqa: E402
from gbg.labels import Role  # noqa: E402
from gbg.settings import Settings  # noqa: E402
from ingest.embed_cache import CachedEmbedder, embedder_for  # noqa: E402
from ingest.embedders import get_embedder  # noqa: E402
from ingest.manifest import CorpusManifest  # noqa: E402
from ingest.store import ChromaStore  # noqa: E402

# The synthetic corpus: every chunk public, so the public role searches all of them.
BENCH = CorpusManifest.model_validate({
    "name": "bench", "title": "Benchmark", "audience": "public", "sensitivity": "public",
    "languages": ["sv"], "license": {"name": "CC BY 4.0"},
    "sources": [{"type": "files", "include": ["*"]}],
})


def real_vectors(settings: Settings, data: Path) -> tuple[np.ndarray, list[str], list[dict]]:
    emb = get_embedder(settings.embedder)
    vecs, texts, metas = [], [], []
    for name, folder in (("swequad-mc", "swequad_mc"), ("swefaq", "swefaq")):
        ds = load_retrieval_dataset(name, data / folder)
        s = dataset_settings(settings, ds)
        build_store(s, emb)
        col = ChromaStore.from_settings(s).get(name)
        assert col is not None
        for _, meta, doc, vec in col.iter_records(include=["metadatas", "documents", "embeddings"]):
            vecs.append(np.asarray(vec, dtype=np.float32))
            texts.append(str(doc))
            metas.append(meta)
    return np.stack(vecs), texts, metas


def build(path: Path, n: int, vecs: np.ndarray, texts: list[str], metas: list[dict],
          rng: np.random.Generator) -> Settings:
    s = Settings(_env_file=None)
    s.data_dir = path
    col = ChromaStore.from_settings(s).open_for_ingest(BENCH, "bench")
    batch = 5000
    for start in range(0, n, batch):
        idx = np.arange(start, min(n, start + batch)) % len(vecs)
        noise = rng.normal(0, 0.015, size=(len(idx), vecs.shape[1])).astype(np.float32)
        v = vecs[idx] + noise * (np.arange(start, start + len(idx)) >= len(vecs))[:, None]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        ids = [f"c{i}" for i in range(start, start + len(idx))]
        md = [{**{k: metas[j][k] for k in ("source", "title", "section", "lang")},
               "corpus": "bench", "audience": "public", "sensitivity": "public",
               "chunk_index": i, "doc_id": str(metas[j].get("doc_id", ""))}
              for i, j in zip(range(start, start + len(idx)), idx, strict=True)]
        col.upsert(ids, v, [texts[j] for j in idx], md)
    col.set_corpus_metadata(BENCH, "bench", last_ingest="x")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    base = Settings()
    vecs, texts, metas = real_vectors(base, args.data)
    questions = [q.question for q in load_retrieval_dataset(
        "swequad-mc", args.data / "swequad_mc").queries][: args.queries]
    emb = embedder_for(base)
    assert isinstance(emb, CachedEmbedder)
    inner = get_embedder(base.embedder)
    rng = np.random.default_rng(7)
    print(f"real passage vectors: {len(vecs)} (SweQUAD-MC + SweFAQ chunks, e5-small); "
          f"{len(questions)} real SweQUAD-MC questions; query embedding inside the timing")
    embed = []
    for q in questions:
        t0 = time.perf_counter()
        inner.embed_query_vector(q)
        embed.append((time.perf_counter() - t0) * 1000)
    print(f"query embedding alone: p50 {np.percentile(embed, 50):.1f} ms  "
          f"p95 {np.percentile(embed, 95):.1f} ms")
    print(f"{'chunks':>8} {'mode':<7} {'queries':<6} {'p50 ms':>8} {'p95 ms':>8}   "
          "(index build s)")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            s = build(Path(tmp), n, vecs, texts, metas, rng)
            r = HybridRetriever(ChromaStore.from_settings(s), emb, s.retrieval)
            r.index_for(Role.public)
            built = time.perf_counter() - t
            for q in ("uppvärmning", "warm-up query", "hur", "vad", "när"):
                r.retrieve(q)  # warm up the code paths, not these questions' vectors
            mode: Literal["hybrid", "dense", "bm25"]
            for mode in ("hybrid", "dense", "bm25"):
                for kind in ("cold", "warm"):
                    if kind == "cold":
                        emb.clear_queries()
                    times = []
                    for q in questions:
                        t0 = time.perf_counter()
                        r.retrieve(q, options=RetrievalOptions(mode=mode))
                        times.append((time.perf_counter() - t0) * 1000)
                    print(f"{n:>8} {mode:<7} {kind:<6} {np.percentile(times, 50):>8.1f} "
                          f"{np.percentile(times, 95):>8.1f}   ({built:.0f})", flush=True)


if __name__ == "__main__":
    main()
