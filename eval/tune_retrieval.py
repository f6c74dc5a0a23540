"""How the shipped retrieval default is chosen: one configuration for SweQUAD-MC, SweFAQ and
the gold set's fit part (over the bundled corpora) together, by 5-fold cross-validation (grouped
by gold document) on the datasets' dev splits; prints each one's held-out folds for the choice,
the shipped default, dense only and BM25 only.

    python -m eval.tune_retrieval [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from eval.crossval import collect, cross_validate_pooled, dataset_queries, gold_queries, shipped
from eval.datasets import load_retrieval_dataset
from eval.retrieval import build_store, dataset_settings
from eval.suites import load_gold
from gbg.labels import Role
from gbg.settings import Settings
from ingest.embed_cache import embedder_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--split", default="dev")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    from bot.retrieval.retriever import HybridRetriever
    from ingest.store import ChromaStore

    base = Settings()
    lists = {}
    for name, folder in (("swequad-mc", "swequad_mc"), ("swefaq", "swefaq")):
        ds = load_retrieval_dataset(name, args.data / folder, args.split)
        s = dataset_settings(base, ds)
        emb = embedder_for(s)
        build_store(s, emb)
        r = HybridRetriever(ChromaStore.from_settings(s), emb, s.retrieval)
        r.index_for(Role.public)
        qs = dataset_queries(ds)
        lists[name] = collect(r, qs, emb.embed_queries([q.question for q in qs]))
    # the gold set's fit part over the bundled corpora (the check part is never tuned on)
    emb = embedder_for(base)
    build_store(base, emb)
    r = HybridRetriever(ChromaStore.from_settings(base), emb, base.retrieval)
    gq = gold_queries(load_gold())
    lists["gold (fit part)"] = collect(r, gq, emb.embed_queries([q.question for q in gq]),
                                       doc_key="source")
    reports = cross_validate_pooled(lists, shipped(base.retrieval), args.folds)
    console = Console()
    for name, rep in reports.items():
        t = Table(title=f"{name} ({args.split}, {len(lists[name])} queries): nDCG@10 on "
                        f"held-out folds")
        for col in ("configuration", "mean", "per fold"):
            t.add_column(col, justify="left" if col == "configuration" else "right")
        for label, v in rep.heldout.items():
            t.add_row(label, f"{rep.mean(label):.3f}", " ".join(f"{x:.3f}" for x in v))
        console.print(t)
    rep = next(iter(reports.values()))
    console.print("chosen per fold: " + "; ".join(c.label() for c in rep.chosen))
    console.print(f"most often chosen: {rep.winner().label()} -> {rep.winner().as_settings()}")


if __name__ == "__main__":
    main()
