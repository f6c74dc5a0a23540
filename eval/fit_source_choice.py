"""Fit which retrieved source the extractive answerer quotes (``bot/data/source_choice.json``).

Every answerable gold question (Swedish, English and the other languages) is asked once through
the service's own retrieval and reading; each of its retrieved sources is an example, labelled 1
when the source's text holds every key fact of the question. A logistic regression over
``bot.llm.extractive.source_features`` (retrieval rank and similarity, the best span's score and
e5 similarity, how many of the top sources are the same document) is fitted on the fit part
only, after a 5-fold cross-validation grouped by gold document on that part. The check part is
reported beside it, never fitted on.

The figure is the share of questions (that have a source holding every fact) whose chosen
source holds every fact, for the reader's own best span (before) and for the fitted choice.

Usage::

    GBG_DATA_DIR=.gbg/test-bundled python -m eval.fit_source_choice
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot import policy
from bot.answerability import AnswerabilityModel, Evidence, clean
from bot.audit import AuditStore
from bot.llm import extractive
from bot.llm.base import GenerationRequest
from bot.models import ChatRequest, Message
from bot.wiring import build_service
from eval.fit_answerability import fit_logistic
from eval.suites import GoldItem, _contains, load_gold
from gbg.labels import Role
from gbg.settings import Settings

FEATURES = ("rank", "dense", "rdense", "best", "rbest", "sem", "ndoc")
FOLDS = 5


@dataclass
class Question:
    id: str
    part: str
    foreign: bool
    group: int  # cross-validation fold, by the first gold document
    features: list[dict[str, float]]
    good: list[bool]  # per source: holds every key fact
    reader: int  # the source of the reader's own best span


def collect(gold: Sequence[GoldItem]) -> list[Question]:
    s = Settings()
    s.audit.url = "sqlite://"
    svc = build_service(s, audit=AuditStore("sqlite://"))
    out = []
    for item in gold:
        if not item.answerable:
            continue
        plan = svc.plan(ChatRequest([Message("user", item.question)], role=Role(item.role)))
        if not plan.sources:
            continue
        # as the service does: the decision's reading (with e5), then the answerer's
        policy.assess(plan.query, plan.lang, plan.hits, svc.retriever.embedder)
        reading = extractive.reading_for(GenerationRequest(plan.query, plan.lang, plan.sources))
        good = [all(_contains(clean(src.text), f) for f in item.facts) for src in plan.sources]
        best = reading.best
        out.append(Question(item.id, item.split, item.group != "sv_en",
                            zlib.crc32(item.gold_sources[0].encode()) % FOLDS,
                            extractive.source_features(reading, plan.sources), good,
                            best.span.src if best else 0))
    return out


def _fit(questions: Sequence[Question], c: float) -> AnswerabilityModel:
    import numpy as np

    x = np.array([[f[n] for n in FEATURES] for q in questions for f in q.features])
    y = np.array([int(g) for q in questions for g in q.good])
    m = fit_logistic(x, y, c)
    return AnswerabilityModel(FEATURES, tuple(m["mean"]), tuple(m["scale"]), tuple(m["coef"]),
                              m["intercept"])


def _chosen(model: AnswerabilityModel, q: Question) -> int:
    return extractive.likeliest([model.probability(Evidence(f)) for f in q.features])


def _rate(questions: Sequence[Question], pick: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, keep in (("sv_en", False), ("other_lang", True)):
        qs = [q for q in questions if q.foreign == keep]
        out[name] = round(sum(q.good[pick(q)] for q in qs) / len(qs), 3) if qs else float("nan")
        out[f"{name}_n"] = len(qs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    args = ap.parse_args(argv)
    questions = [q for q in collect(load_gold()) if any(q.good)]
    fit = [q for q in questions if q.part == "fit"]
    check = [q for q in questions if q.part == "check"]
    picks: dict[str, int] = {}
    for k in range(FOLDS):
        model = _fit([q for q in fit if q.group != k], args.c)
        for q in fit:
            if q.group == k:
                picks[q.id] = _chosen(model, q)
    model = _fit(fit, args.c)
    figures = {
        "fit_reader": _rate(fit, lambda q: q.reader),
        "fit_crossvalidated": _rate(fit, lambda q: picks[q.id]),
        "check_reader": _rate(check, lambda q: q.reader),
        "check_fitted": _rate(check, lambda q: _chosen(model, q)),
    }
    out = {"features": list(FEATURES), "mean": list(model.mean), "scale": list(model.scale),
           "coef": list(model.coef), "intercept": model.intercept, "figures": figures,
           "note": "Fitted by eval/fit_source_choice.py on the gold fit part; figures: share of "
                   "answerable questions (with a source holding every key fact) whose chosen "
                   "source holds them all; fit part cross-validated by gold document, check "
                   "part never fitted on."}
    extractive.SOURCE_CHOICE.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=1))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
