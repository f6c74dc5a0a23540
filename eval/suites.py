"""Evaluation suites over the bundled gold set, run per configuration:

- retrieval: recall@1/5/10, MRR@10, nDCG@10 against the gold source documents;
- answer: share of gold facts in the answer, citation validity (the bot's own verifier) and a
  faithfulness proxy (share of answer sentences supported by their cited source);
- refusal: unanswerable questions refused, answerable ones answered;
- routing: red-team prompts that would reach a cloud provider (must be 0), and ordinary
  questions kept local needlessly;
- access: chunks from corpora outside the caller's role (must be 0);
- latency: p50/p95 per stage (retrieve, generate, verify) and end to end.
"""

from __future__ import annotations

import json
import random
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot import policy
from bot.llm.base import Source
from bot.models import ChatRequest, ChatResult, Citation, Message
from bot.retrieval.retriever import HybridRetriever
from bot.retrieval.types import RetrievalOptions, RetrievedChunk
from bot.routing import ProviderOption, route
from bot.service import ChatService
from eval.metrics import dedupe, mrr_at_k, ndcg_at_k, recall_at_k
from gbg.labels import Role, Sensitivity, can_read
from gbg.settings import Settings

EVAL_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class GoldItem:
    id: str
    question: str
    lang: str
    corpus: str
    role: str
    answerable: bool
    gold_sources: tuple[str, ...]
    facts: tuple[str, ...]


@dataclass
class EvalConfig:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    degrade: str | None = None  # "random": retrieval returns random chunks (gate self-test)


def load_gold(path: Path | None = None) -> list[GoldItem]:
    path = path or EVAL_DIR / "datasets" / "gold.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            out.append(GoldItem(r["id"], r["question"], r["lang"], r["corpus"], r["role"],
                                bool(r["answerable"]), tuple(r["gold_sources"]),
                                tuple(r["facts"])))
    return out


def load_config(path: Path) -> EvalConfig:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    name = str(raw.pop("name", path.stem))
    degrade = raw.pop("degrade", None)
    return EvalConfig(name, raw, degrade)


def apply_config(settings: Settings, cfg: EvalConfig) -> Settings:
    data = settings.model_dump()
    for section, values in cfg.overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return Settings.model_validate(data)


class RandomRetriever(HybridRetriever):
    """Retrieval forced to random readable chunks: the gate must catch this."""

    def retrieve(self, query: str, role: Role = Role.public,
                 options: RetrievalOptions | None = None) -> list[RetrievedChunk]:
        idx = self.index_for(role)
        rng = random.Random(hash(query) & 0xFFFF)
        k = (options.k if options else None) or self.settings.k
        picks = rng.sample(range(len(idx.ids)), min(k, len(idx.ids)))
        return [RetrievedChunk(idx.ids[i], idx.texts[i], idx.metas[i], 1.0, dense=0.9,
                               rank=r + 1) for r, i in enumerate(picks)]


def _contains(answer: str, fact: str) -> bool:
    norm = lambda s: " ".join(s.lower().replace("\u00a0", " ").split())  # noqa: E731
    return norm(fact) in norm(answer)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_suites(
    service: ChatService,
    gold: list[GoldItem],
    redteam: list[dict[str, Any]],
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    retriever = service.retriever
    ret_runs: list[tuple[list[str], set[str]]] = []
    facts_found = facts_total = 0
    cited_ok = cited_total = 0
    supported_sents = total_sents = 0
    answered = answerable = refused_unans = unanswerable = 0
    stage: dict[str, list[float]] = {"retrieve": [], "generate": [], "verify": [], "end_to_end": []}
    per_item: list[dict[str, Any]] = []
    for item in gold:
        role = Role(item.role)
        if item.answerable:
            hits = retriever.retrieve(item.question, role, RetrievalOptions(k=10))
            ranked = dedupe(h.source for h in hits)
            ret_runs.append((ranked, set(item.gold_sources)))
        result = service.answer(ChatRequest([Message("user", item.question)], role=role))
        stage["end_to_end"].append(result.latency_ms)
        for k in ("retrieve", "generate", "verify"):
            if k in result.stages_ms:
                stage[k].append(result.stages_ms[k])
        if item.answerable:
            answerable += 1
            if not result.refused:
                answered += 1
                found = sum(_contains(result.answer, f) for f in item.facts)
                facts_found += found
                facts_total += len(item.facts)
                v = service.verifier.verify(result.answer, _sources(service, result))
                cited_total += 1
                cited_ok += v.grounded
                total_sents += len(v.checks)
                supported_sents += sum(c.supported for c in v.checks)
        else:
            unanswerable += 1
            refused_unans += result.refused
        per_item.append({"id": item.id, "refused": result.refused, "provider": result.provider})
        if on_step:
            on_step()

    leaks = needless = ordinary = misrouted = 0
    access_violations = access_checked = 0
    for r in redteam:
        msgs = [Message(m["role"], m["content"]) for m in r["messages"]]
        role = Role(r.get("role", "public"))
        plan = service.plan(ChatRequest(msgs, role=role))
        decision = route(plan.classification.level,
                         [ProviderOption("cloud", Sensitivity.public, True),
                          ProviderOption("local", Sensitivity.sensitive, True)],
                         ["cloud", "local"])
        # What a generative cloud provider would receive: nothing when the request is refused
        # for lack of relevant sources (the same gates the service applies before any model).
        sent = (decision.provider == "cloud" and plan.refusal != policy.NO_RELEVANT_SOURCES
                and policy.coverage_refusal(plan.query, plan.hits, plan.lang,
                                            service.settings.bot.min_coverage) is None)
        if r["expect"] == "sensitive" and sent:
            leaks += 1
        if r["expect"] == "sensitive" and decision.provider == "cloud":
            misrouted += 1
        if r.get("category") == "ordinary":
            ordinary += 1
            needless += decision.provider == "local"
        for h in plan.hits:
            access_checked += 1
            access_violations += not can_read(role, str(h.metadata.get("audience")))
        for other in (Role.public, Role.staff):
            for h in retriever.retrieve(r["messages"][-1]["content"], other, RetrievalOptions(k=5)):
                access_checked += 1
                access_violations += not can_read(other, str(h.metadata.get("audience")))
        if on_step:
            on_step()

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    recall_curve = {
        str(k): float(np.mean([recall_at_k(r, g, k) for r, g in ret_runs])) for k in range(1, 11)
    }
    return {
        "retrieval": {
            "n": len(ret_runs),
            "recall@1": recall_curve["1"],
            "recall@5": recall_curve["5"],
            "recall@10": recall_curve["10"],
            "mrr@10": float(np.mean([mrr_at_k(r, g, 10) for r, g in ret_runs])),
            "ndcg@10": float(np.mean([ndcg_at_k(r, g, 10) for r, g in ret_runs])),
            "recall_curve": recall_curve,
        },
        "answer": {
            "n": answered,
            "fact_recall": ratio(facts_found, facts_total),
            "citation_valid": ratio(cited_ok, cited_total),
            "faithfulness": ratio(supported_sents, total_sents),
        },
        "refusal": {
            "answerable": answerable,
            "unanswerable": unanswerable,
            "answerable_answered": ratio(answered, answerable),
            "unanswerable_refused": ratio(refused_unans, unanswerable),
        },
        "routing": {
            "prompts": len(redteam),
            "cloud_leaks": leaks,
            "classified_below_sensitive": misrouted,
            "ordinary": ordinary,
            "kept_local_needlessly": ratio(needless, ordinary),
        },
        "access": {"chunks_checked": access_checked, "violations": access_violations},
        "latency": {
            **{f"{k}_p50_ms": percentile(v, 50) for k, v in stage.items()},
            **{f"{k}_p95_ms": percentile(v, 95) for k, v in stage.items()},
            "end_to_end_ms": stage["end_to_end"],
        },
        "items": per_item,
    }


def _sources(service: ChatService, result: ChatResult) -> list[Source]:
    out = []
    for c in result.citations:
        out.append(Source(c.number, c.title, _chunk_text(service, c), "sv"))
    return out


def _chunk_text(service: ChatService, citation: Citation) -> str:
    # The citation carries a snippet; the verifier needs the full chunk text.
    for role in (Role.care,):
        idx = service.retriever.index_for(role)
        for i, meta in enumerate(idx.metas):
            if meta.get("source") == citation.source and meta.get("corpus") == citation.corpus \
                    and citation.snippet.rstrip("…")[:60] in " ".join(idx.texts[i].split()):
                return str(idx.texts[i])
    return str(citation.snippet)


def flatten(report: dict[str, Any]) -> dict[str, float]:
    out = {}
    for suite in ("retrieval", "answer", "refusal", "routing", "access", "latency"):
        for k, v in report.get(suite, {}).items():
            if isinstance(v, int | float):
                out[f"{suite}.{k}"] = float(v)
    return out


def check_gates(report_flat: dict[str, float], gates: dict[str, Any]) -> list[str]:
    failures = []
    for key, minimum in gates.get("min", {}).items():
        v = report_flat.get(key)
        if v is None or not (v >= minimum):
            failures.append(f"{key} = {v} is below the minimum {minimum}")
    for key, maximum in gates.get("max", {}).items():
        v = report_flat.get(key)
        if v is None or not (v <= maximum):
            failures.append(f"{key} = {v} is above the maximum {maximum}")
    return failures
