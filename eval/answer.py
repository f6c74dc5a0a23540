"""Answer evaluation on SQuAD 2.0 (Swedish translation): the refusal rate on unanswerable
questions and the answer-contains-gold-span rate on answerable ones, per provider."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.models import ChatRequest, Message
from bot.service import ChatService
from eval.datasets import DatasetError, Query, RetrievalDataset
from gbg.labels import Role


@dataclass(frozen=True)
class SquadQuestion:
    qid: str
    question: str
    answers: tuple[str, ...]
    impossible: bool
    article: str = ""


def load_squad(data: Path, work: Path) -> tuple[RetrievalDataset, list[SquadQuestion]]:
    """Paragraphs become documents (a JSON Lines corpus written under ``work``)."""
    files = sorted(data.glob("*.json"))
    if not files:
        raise DatasetError(f"{data}: no SQuAD json file; point --data at the squad_v2_sv folder")
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "squad-paragraphs.jsonl"
    rows, questions = [], []
    for f in files:
        for art in json.loads(f.read_text(encoding="utf-8"))["data"]:
            for i, para in enumerate(art["paragraphs"]):
                doc_id = f"{art['title']}-{i}"
                rows.append({"doc_id": doc_id, "title": art["title"].replace("_", " "),
                             "text": para["context"]})
                for qa in para["qas"]:
                    questions.append(SquadQuestion(
                        qa["id"], qa["question"], tuple(a["text"] for a in qa.get("answers", [])),
                        bool(qa.get("is_impossible")), art["title"]))
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    if not corpus.is_file() or corpus.read_text(encoding="utf-8") != text:
        corpus.write_text(text, encoding="utf-8")
    ds = RetrievalDataset("squad-v2-sv", corpus, [Query(q.qid, q.question, frozenset())
                                                  for q in questions],
                          "SQuAD 2.0 (CC BY-SA 4.0), Swedish translation (Apache-2.0)")
    return ds, questions


def by_part(questions: list[SquadQuestion], check_articles: set[str]
            ) -> dict[str, list[SquadQuestion]]:
    """The questions of the check articles (never used to fit or tune) and of the others."""
    return {
        "check": [q for q in questions if q.article in check_articles],
        "fit": [q for q in questions if q.article not in check_articles],
    }


def balanced(questions: list[SquadQuestion], n: int) -> list[SquadQuestion]:
    """n questions, half answerable and half not, spread over the set (deterministic)."""
    def spread(items: list[SquadQuestion], k: int) -> list[SquadQuestion]:
        return [items[int(i * len(items) / k)] for i in range(min(k, len(items)))]

    pos = [q for q in questions if not q.impossible]
    neg = [q for q in questions if q.impossible]
    return spread(pos, n // 2) + spread(neg, n - n // 2)


def _norm(s: str) -> str:
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in s).split())


def evaluate_answers(service: ChatService, questions: list[SquadQuestion],
                     on_step: Callable[[], None] | None = None) -> dict[str, Any]:
    refused_neg = n_neg = contains = n_pos = refused_pos = 0
    for q in questions:
        r = service.answer(ChatRequest([Message("user", q.question)], role=Role.public))
        if q.impossible:
            n_neg += 1
            refused_neg += r.refused
        else:
            n_pos += 1
            refused_pos += r.refused
            contains += (not r.refused) and any(_norm(a) in _norm(r.answer) for a in q.answers)
        if on_step:
            on_step()
    return {
        "unanswerable": n_neg,
        "answerable": n_pos,
        "refusal_rate_unanswerable": refused_neg / n_neg if n_neg else float("nan"),
        "contains_gold_span_answerable": contains / n_pos if n_pos else float("nan"),
        "refusal_rate_answerable": refused_pos / n_pos if n_pos else float("nan"),
    }
