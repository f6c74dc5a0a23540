"""The answerability fit's feature cache (eval/fit_answerability.py) is only reused under the
retrieval settings it was read under: features depend on what retrieval returns, so a changed
fusion default must not be fitted on features read under the old one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import fit_answerability as fa
from gbg.settings import Settings


def test_the_cache_keeps_only_features_read_under_the_current_retrieval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = Settings()
    rrf = shipped.model_copy(deep=True)
    rrf.retrieval.fusion = "rrf"
    other_model = shipped.model_copy(deep=True)
    other_model.embedder.model = "another-model"
    sigs = {fa.retrieval_signature(s) for s in (shipped, rrf, other_model)}
    assert len(sigs) == 3
    assert fa.retrieval_signature(shipped) == fa.retrieval_signature(Settings())

    path = tmp_path / "features.jsonl"
    monkeypatch.setattr(fa, "FEATURES_PATH", path)
    rows = [fa.Example("gold", "a", "fit", 1, None, "sv", fa.retrieval_signature(shipped)),
            fa.Example("gold", "b", "fit", 0, None, "sv", fa.retrieval_signature(rrf)),
            fa.Example("gold", "c", "fit", 0, None, "sv")]  # read before the signature existed
    path.write_text("".join(json.dumps(r.__dict__) + "\n" for r in rows), encoding="utf-8")
    assert set(fa._cached(fa.retrieval_signature(shipped))) == {("gold", "a")}
    assert set(fa._cached(fa.retrieval_signature(rrf))) == {("gold", "b")}
    assert set(fa._cached()) == {("gold", "a"), ("gold", "b"), ("gold", "c")}  # --refit


def test_features_computed_by_an_earlier_reader_are_read_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = fa.retrieval_signature(Settings())
    monkeypatch.setattr(fa, "EVIDENCE_VERSION", fa.EVIDENCE_VERSION + 1)
    assert fa.retrieval_signature(Settings()) != before
