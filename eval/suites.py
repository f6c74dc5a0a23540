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
import re
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
from gbg.i18n import FALLBACK, canonical
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
    split: str = "fit"  # "check": its main document was never used to fit or tune anything
    audience: str = "public"

    @property
    def group(self) -> str:
        """Which figures the item counts towards: other languages apart (issue 16)."""
        return "sv_en" if self.lang in ("sv", "en") else "other_lang"

    @property
    def staff_procedure(self) -> bool:
        return self.answerable and self.id.startswith("hem-5")


@dataclass
class EvalConfig:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    degrade: str | None = None  # "random": retrieval returns random chunks (gate self-test)


GOLD_FILES = ("gold.jsonl", "gold_extra.jsonl", "gold_xl.jsonl")
SPLIT_PATH = EVAL_DIR / "datasets" / "answerability_split.json"


def load_gold(path: Path | None = None) -> list[GoldItem]:
    """The gold set: ``path``, or gold.jsonl and gold_extra.jsonl. A line without a split
    takes the one eval/fit_answerability.py recorded (or derives it the same way)."""
    paths = [path] if path else [EVAL_DIR / "datasets" / f for f in GOLD_FILES
                                 if (EVAL_DIR / "datasets" / f).is_file()]
    rows = [json.loads(line) for p in paths
            for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    splits = _splits(rows)
    return [GoldItem(r["id"], r["question"], r["lang"], r["corpus"], r["role"],
                     bool(r["answerable"]), tuple(r["gold_sources"]), tuple(r["facts"]),
                     r.get("split") or splits.get(r["id"], "fit"),
                     r.get("audience") or ("staff" if r["role"] != "public" else "public"))
            for r in rows]


def _splits(rows: list[dict[str, Any]]) -> dict[str, str]:
    if SPLIT_PATH.is_file():
        recorded: dict[str, str] = json.loads(SPLIT_PATH.read_text(encoding="utf-8"))["gold"]
        if all(r["id"] in recorded for r in rows if "split" not in r):
            return recorded
    from eval.fit_answerability import gold_split

    return gold_split(rows)


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


_RAW_MARKDOWN = re.compile(r"(?m)\*\*|__|\[[^\]]+\]\([^)]*\)|^#{1,6} |`")


@dataclass
class Tally:
    """Answer and refusal counts of one slice of the gold set (an audience, a part, ...)."""

    answerable: int = 0
    answered: int = 0
    unanswerable: int = 0
    refused_unanswerable: int = 0
    facts_found: int = 0
    facts_total: int = 0
    all_facts: int = 0
    in_language: int = 0  # answered or refused in the language the question asks for

    def add(self, item: GoldItem, result: ChatResult) -> None:
        self.in_language += result.lang == expected_language(item.lang)
        if not item.answerable:
            self.unanswerable += 1
            self.refused_unanswerable += result.refused
            return
        self.answerable += 1
        if result.refused:
            return
        self.answered += 1
        found = sum(_contains(result.answer, f) for f in item.facts)
        self.facts_found += found
        self.facts_total += len(item.facts)
        self.all_facts += found == len(item.facts)

    def figures(self) -> dict[str, float]:
        return {
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            "answerable_answered": _ratio(self.answered, self.answerable),
            "unanswerable_refused": _ratio(self.refused_unanswerable, self.unanswerable),
            "fact_recall": _ratio(self.facts_found, self.facts_total),
            "all_facts": _ratio(self.all_facts, self.answered),
            "in_language": _ratio(self.in_language, self.answerable + self.unanswerable),
        }


def expected_language(lang: str) -> str:
    """The answer language a question in ``lang`` should get: its own, or English."""
    return canonical(lang) or FALLBACK


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def slices(item: GoldItem) -> list[str]:
    """The slices an item is counted in: Swedish and English lines per audience and part, the
    staff procedure questions, and the other languages together and each on its own."""
    if item.group == "other_lang":
        return ["other_lang", f"other_lang.{item.split}", f"lang_{item.lang}",
                f"lang_{item.lang}.{item.split}"]
    out = ["all", item.split, item.audience, f"{item.audience}.{item.split}"]
    if item.staff_procedure:
        out += ["staff_procedures", f"staff_procedures.{item.split}"]
    return out


def _slice_figures(tallies: dict[str, Tally]) -> tuple[dict[str, float], dict[str, float]]:
    answer: dict[str, float] = {}
    refusal: dict[str, float] = {}
    for name, t in sorted(tallies.items()):
        f = t.figures()
        prefix = "" if name == "all" else f"{name}."
        for k in ("fact_recall", "all_facts") + (("in_language",) if "lang" in name else ()):
            answer[prefix + k] = f[k]
        for k in ("answerable", "unanswerable", "answerable_answered", "unanswerable_refused"):
            refusal[prefix + k] = f[k]
    return answer, refusal


def answer_quality(result: ChatResult) -> tuple[int, int]:
    """(raw Markdown in the answer, citations pointing to a document already cited)."""
    docs = [(c.corpus, c.source) for c in result.citations]
    return int(bool(_RAW_MARKDOWN.search(result.answer))), len(docs) - len(set(docs))


@dataclass
class AnswerRun:
    """Everything the answer and refusal suites count over the gold set."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    cited_ok: int = 0
    cited_total: int = 0
    supported_sents: int = 0
    total_sents: int = 0
    raw_markdown: int = 0
    duplicate_docs: int = 0

    def add(self, service: ChatService, item: GoldItem, result: ChatResult) -> None:
        for name in slices(item):
            self.tallies.setdefault(name, Tally()).add(item, result)
        md, dup = answer_quality(result)
        self.raw_markdown += md
        self.duplicate_docs += dup
        if item.answerable and not result.refused and item.group == "sv_en":
            v = service.verifier.verify(result.answer, _sources(service, result))
            self.cited_total += 1
            self.cited_ok += v.grounded
            self.total_sents += len(v.checks)
            self.supported_sents += sum(c.supported for c in v.checks)

    def suites(self) -> tuple[dict[str, float], dict[str, float]]:
        answer_slices, refusal_slices = _slice_figures(self.tallies)
        answer = {
            "n": self.tallies.get("all", Tally()).answered,
            **answer_slices,
            "citation_valid": _ratio(self.cited_ok, self.cited_total),
            "faithfulness": _ratio(self.supported_sents, self.total_sents),
            "raw_markdown": self.raw_markdown,
            "duplicate_citations": self.duplicate_docs,
        }
        return answer, refusal_slices


def run_suites(
    service: ChatService,
    gold: list[GoldItem],
    redteam: list[dict[str, Any]],
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    retriever = service.retriever
    ret_runs: list[tuple[list[str], set[str]]] = []
    run = AnswerRun()
    stage: dict[str, list[float]] = {"retrieve": [], "decide": [], "generate": [], "verify": [],
                                     "end_to_end": []}
    per_item: list[dict[str, Any]] = []
    for item in gold:
        role = Role(item.role)
        if item.answerable and item.group == "sv_en":
            hits = retriever.retrieve(item.question, role, RetrievalOptions(k=10))
            ranked = dedupe(h.source for h in hits)
            ret_runs.append((ranked, set(item.gold_sources)))
        result = service.answer(ChatRequest([Message("user", item.question)], role=role))
        stage["end_to_end"].append(result.latency_ms)
        for k in ("retrieve", "decide", "generate", "verify"):
            if k in result.stages_ms:
                stage[k].append(result.stages_ms[k])
        run.add(service, item, result)
        per_item.append({"id": item.id, "refused": result.refused, "provider": result.provider,
                         "split": item.split, "audience": item.audience})
        if on_step:
            on_step()
    answer_suite, refusal_suite = run.suites()

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
        sent = decision.provider == "cloud" and plan.refusal != policy.NO_RELEVANT_SOURCES
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
        "answer": answer_suite,
        "refusal": refusal_suite,
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
    """What a citation stands for: one card per document, so every chunk of that document
    (with its section headings, which the service verifies against too)."""
    idx = service.retriever.index_for(Role.care)
    parts = []
    for i, meta in enumerate(idx.metas):
        if meta.get("source") == citation.source and meta.get("corpus") == citation.corpus:
            section = str(meta.get("section", "")).replace(" > ", ". ")
            parts.append(f"{section}.\n{idx.texts[i]}" if section else str(idx.texts[i]))
    return "\n\n".join(parts) if parts else str(citation.snippet)


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
