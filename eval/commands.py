"""The bodies of the ``gbg eval`` commands: each builds what it needs (through
``bot.wiring``), runs a suite and returns plain results; the CLI only parses options and prints.
``Step`` is a progress callback (a task name and its size, then one call per item)."""

from __future__ import annotations

import glob
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bot.audit import AuditStore
from bot.retrieval.retriever import HybridRetriever
from bot.wiring import build_service
from eval.answer import balanced, by_part, evaluate_answers, load_squad
from eval.datasets import RetrievalDataset, load_retrieval_dataset
from eval.report import write_reports
from eval.retrieval import (
    MODES,
    build_store,
    dataset_settings,
    evaluate_retrieval,
    results_as_dict,
    write_report,
)
from eval.suites import EVAL_DIR, RandomRetriever, apply_config, load_config, load_gold, run_suites
from gbg.settings import ProviderSettings, Settings
from ingest.embed_cache import embedder_for
from ingest.embedders import Embedder

Progress = Callable[[str, int], Callable[[], None]]
T = TypeVar("T")


def spread(items: list[T], n: int | None) -> list[T]:
    """n items evenly spread over the list (a stratified quick run), or all of them."""
    if not n or n >= len(items):
        return items
    return [items[int(i * len(items) / n)] for i in range(n)]


def retrieval_eval(settings: Settings, dataset: str, data: Path, split: str | None,
                   limit: int | None, reports_dir: Path, progress: Progress, folds: int = 5
                   ) -> tuple[dict[str, Any], Path, RetrievalDataset]:
    """recall@k, MRR@10 and nDCG@10 per retrieval mode over one dataset; the report's path."""
    ds = load_retrieval_dataset(dataset, data, split)
    if limit:
        ds.queries = ds.queries[:limit]
    s = dataset_settings(settings, ds)
    embedder = embedder_for(s)
    progress(f"ingest {ds.name}", 1)
    ingest_report = build_store(s, embedder)
    step = progress("queries", len(ds.queries) * len(MODES))
    results = evaluate_retrieval(s, embedder, ds, on_query=step)
    payload = results_as_dict(ds, results, ingest_report, {
        "embedder": embedder.name,
        "chunk_tokens": s.chunking.max_tokens,
        "rrf_k": s.retrieval.rrf_k,
        "weights": {"dense": s.retrieval.dense_weight, "bm25": s.retrieval.bm25_weight},
    })
    if folds > 1:
        progress(f"{folds}-fold cross-validation", 1)
        payload["crossval"] = crossval_report(s, embedder, ds, folds)
    return payload, write_report(reports_dir, payload), ds


def crossval_report(s: Settings, embedder: Embedder, ds: RetrievalDataset, k: int
                    ) -> dict[str, Any]:
    """Every data-chosen retrieval knob, chosen on k-1 folds and scored on the k-th."""
    from eval.crossval import collect, cross_validate, dataset_queries, shipped
    from gbg.labels import Role
    from ingest.store import ChromaStore

    retriever = HybridRetriever(ChromaStore.from_settings(s), embedder, s.retrieval)
    retriever.index_for(Role.public)
    qvecs = embedder.embed_queries([q.question for q in ds.queries])
    lists = collect(retriever, dataset_queries(ds), qvecs)
    return cross_validate(lists, shipped(s.retrieval), k).as_dict()


def _materialise(s: Settings, ds: RetrievalDataset) -> None:
    """Ingest refuses a link out of the corpus folder (hostile-ingest rule): give the
    evaluation store a copy of the dataset file instead."""
    link = s.corpora_dir / ds.name / "docs" / "corpus.jsonl"
    if link.is_symlink():
        link.unlink()
        shutil.copyfile(ds.corpus_path, link)


def answer_eval(base: Settings, data: Path, providers: list[str], limit: int,
                model_path: Path | None, progress: Progress) -> dict[str, dict[str, float]]:
    """Refusal and gold-span rates on SQuAD v2 (sv), per provider and per part: the check
    articles (never seen by eval/fit_answerability.py) and the fit articles, reported apart."""
    from eval.fit_answerability import squad_check_articles

    ds, questions = load_squad(data, base.data_dir / "eval" / "squad-src")
    s = dataset_settings(base, ds)
    _materialise(s, ds)
    emb = embedder_for(s)
    build_store(s, emb)
    check = set(squad_check_articles(sorted({q.article for q in questions})))
    parts = {name: balanced(qs, limit) for name, qs in by_part(questions, check).items()}
    rows = {}
    for name in providers:
        cfg = s.model_copy(deep=True)
        if name == "llamacpp":
            cfg.llm.providers = {"llamacpp": ProviderSettings(
                kind="llamacpp", model_path=model_path, n_threads=2, max_tokens=150,
                temperature=0.0)}
        else:
            cfg.llm.providers = {"extractive": ProviderSettings(kind="extractive")}
        svc = build_service(cfg, embedder=emb, audit=AuditStore("sqlite://"))
        for part, qs in parts.items():
            rows[f"{name} ({part})"] = evaluate_answers(svc, qs, progress(f"{name} {part}",
                                                                          len(qs)))
    return rows


def gold_eval(base: Settings, configs: list[Path] | None, limit: int | None, reports_dir: Path,
              progress: Progress) -> dict[str, Path]:
    """Every suite on the bundled gold set, one run per configuration; the report paths."""
    paths = configs or [Path(p) for p in sorted(glob.glob(str(EVAL_DIR / "configs" / "*.toml")))]
    gold = spread(load_gold(), limit)
    redteam = spread([json.loads(x) for x in (EVAL_DIR / "datasets/redteam.jsonl").read_text(
        encoding="utf-8").splitlines() if x.strip()], limit)
    runs = {}
    for p in paths:
        cfg = load_config(p)
        s = apply_config(base, cfg)
        s.audit.url = "sqlite://"
        svc = build_service(
            s, audit=AuditStore("sqlite://"),
            retriever_cls=RandomRetriever if cfg.degrade == "random" else HybridRetriever,
        )
        step = progress(cfg.name, len(gold) + len(redteam))
        runs[cfg.name] = run_suites(svc, gold, redteam, step)
    meta = {"gold_items": len(gold), "redteam_items": len(redteam),
            "provider": ",".join(base.llm.providers)}
    written = write_reports(reports_dir, runs, meta)
    with written["md"].open("a", encoding="utf-8") as fh:
        fh.write(slice_table(runs))
    return written


SLICES = ("all", "fit", "check", "public.fit", "public.check", "staff.fit", "staff.check",
          "staff_procedures.fit", "staff_procedures.check", "other_lang.fit", "other_lang.check")


def slice_table(runs: dict[str, dict[str, Any]]) -> str:
    """Answer and refusal figures per audience and part (check: never used to fit or tune),
    and per language for the other languages (in language: the answer or refusal is in the
    question's language, or in English with a line saying so for one we do not answer in)."""
    cols = ("answerable_answered", "all_facts", "fact_recall", "unanswerable_refused")
    out = []
    for name, r in runs.items():
        out += ["", f"## {name}: answers and refusals per audience, part and language", "",
                "| slice | answerable | answered | all facts | fact recall | unanswerable | "
                "refused | in language |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        ref, ans = r.get("refusal", {}), r.get("answer", {})
        langs = sorted({k.split(".")[0] for k in ref if k.startswith("lang_")})
        for sl in (*SLICES, "other_lang", *langs, *(f"{x}.check" for x in langs)):
            pre = "" if sl == "all" else f"{sl}."
            if f"{pre}answerable" not in ref:
                continue
            vals = [ref.get(pre + cols[0]), ans.get(pre + cols[1]), ans.get(pre + cols[2])]
            out.append(f"| {sl} | {ref[pre + 'answerable']} | "
                       + " | ".join(_fmt(v) for v in vals)
                       + f" | {ref[pre + 'unanswerable']} | {_fmt(ref.get(pre + cols[3]))} | "
                       + f"{_fmt(ans.get(pre + 'in_language', ''))} |")
        out.append(f"\nraw Markdown in answers: {r.get('answer', {}).get('raw_markdown')}; "
                   f"citations repeating a document: "
                   f"{r.get('answer', {}).get('duplicate_citations')}\n")
    return "\n".join(out) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)
