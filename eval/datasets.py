"""External evaluation sets read from a ``--data`` folder (never copied into the repository)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(Exception):
    pass


@dataclass(frozen=True)
class Query:
    qid: str
    question: str
    gold_doc_ids: frozenset[str]
    answer: str = ""
    split: str = ""
    lang: str = "sv"


@dataclass
class RetrievalDataset:
    name: str
    corpus_path: Path  # JSON Lines: doc_id, text
    queries: list[Query] = field(default_factory=list)
    attribution: str = ""


ATTRIBUTION = {
    "swequad-mc": "SweQUAD-MC (Kalpakchi & Boye, KTH), CC BY 4.0",
    "swefaq": "SweFAQ v2.0, SuperLim 2 (Språkbanken Text), CC BY 4.0",
}


def load_retrieval_dataset(name: str, data: Path, split: str | None = None) -> RetrievalDataset:
    """SweQUAD-MC or SweFAQ: ``corpus.jsonl`` + ``queries.jsonl`` with ``gold_doc_id``."""
    if name not in ATTRIBUTION:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(sorted(ATTRIBUTION))})")
    corpus, queries = data / "corpus.jsonl", data / "queries.jsonl"
    for p in (corpus, queries):
        if not p.is_file():
            raise DatasetError(f"{p} not found: point --data at the {name} folder")
    out = RetrievalDataset(name, corpus, attribution=ATTRIBUTION[name])
    with queries.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if split and row.get("split") != split:
                continue
            gold = row.get("gold_doc_id")
            golds = frozenset(gold if isinstance(gold, list) else [gold]) if gold else frozenset()
            out.queries.append(
                Query(str(row["qid"]), row["question"], golds, str(row.get("answer", "")),
                      str(row.get("split", "")))
            )
    if not out.queries:
        raise DatasetError(f"{queries}: no queries{f' in split {split!r}' if split else ''}")
    return out
