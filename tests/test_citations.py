"""Citation verification: unit behaviour, and precision/recall of "unsupported" on 64 hand-made
answer/source pairs (tests/data/citation_pairs.jsonl: half supported, half not)."""

from __future__ import annotations

import json

import pytest

from bot.citations import CitationVerifier, claim_numbers, split_cited_sentences
from bot.llm.base import Source
from ingest.embedders import Embedder
from ingest.lang import detect_language
from tests.helpers import REPO


def test_markers_attach_to_their_sentence() -> None:
    got = split_cited_sentences("Du ansöker hos staden [1]. Det tar fyra veckor. [2] Klart.")
    assert got == [
        ("Du ansöker hos staden [1].", (1,)),
        ("Det tar fyra veckor. [2]", (2,)),
        ("Klart.", ()),
    ]


def test_numbers_in_claims() -> None:
    assert {"313650000", "1430"} <= claim_numbers("Ring 031-365 00 00 före kl 14.30 [1]")
    assert "4" in claim_numbers("Beslut inom fyra månader")
    assert "1250" in claim_numbers("Det kostar 1 250 kr")
    assert claim_numbers("Du får en broschyr") == set()


def test_wrong_number_and_missing_citation() -> None:
    v = CitationVerifier(None)
    src = [Source(1, "Förskola", "Du får en plats inom fyra månader från ansökan.", "sv")]
    ok = v.verify("Du får plats inom fyra månader från ansökan [1].", src)
    assert ok.grounded
    bad = v.verify("Du får plats inom sex månader från ansökan [1].", src)
    assert [c.reason for c in bad.checks] == ["number"]
    none = v.verify("Du får en plats inom fyra månader.", src)
    assert not none.cited_any and not none.grounded
    wrong = v.verify("Du får en plats inom fyra månader [3].", src)
    assert wrong.checks[0].reason == "unknown_source"
    meta = v.verify("Det vet jag inte; kontakta kontaktcenter på 031-365 00 00.", src)
    assert meta.checks[0].supported and meta.checks[0].reason == "meta"


def test_precision_and_recall_on_hand_made_pairs(e5: Embedder) -> None:
    lines = (REPO / "tests/data/citation_pairs.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines if x.strip()]
    assert len(rows) >= 40
    assert sum(r["supported"] for r in rows) == sum(not r["supported"] for r in rows)
    v = CitationVerifier(e5)
    tp = fp = fn = 0
    by_kind: dict[str, list[bool]] = {}
    for r in rows:
        sources = [Source(int(k), "", t, detect_language(t)) for k, t in r["sources"].items()]
        flagged = bool(v.verify(r["sentence"], sources).unsupported)
        truth = not r["supported"]
        tp += flagged and truth
        fp += flagged and not truth
        fn += (not flagged) and truth
        by_kind.setdefault(r["kind"], []).append(flagged == truth)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(f"\ncitation verification on {len(rows)} pairs: precision(unsupported)={precision:.3f} "
          f"recall(unsupported)={recall:.3f}; correct per kind: "
          + ", ".join(f"{k} {sum(x)}/{len(x)}" for k, x in sorted(by_kind.items())))
    assert precision >= 0.9 and recall >= 0.9


@pytest.mark.parametrize("answer", ["", "   "])
def test_empty_answer_is_not_grounded(answer: str) -> None:
    assert not CitationVerifier(None).verify(answer, []).grounded
