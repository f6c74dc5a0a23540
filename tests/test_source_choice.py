"""The source choice's fitting script (eval/fit_source_choice.py) on a small synthetic set: it
learns which of a question's sources holds the answer from the features the answerer computes,
and its committed model reads the same features the answerer gives it."""

from __future__ import annotations

import json
import random

from bot.llm.extractive import SOURCE_CHOICE
from eval import fit_source_choice as fsc


def _question(i: int, rng: random.Random) -> fsc.Question:
    good_at = rng.randrange(3)
    feats = []
    for r in range(3):
        strong = r == good_at
        dense = 0.86 + (0.03 if strong else 0.0) + rng.uniform(-0.01, 0.01)
        best = 0.5 + (0.2 if strong else 0.0) + rng.uniform(-0.05, 0.05)
        feats.append({"rank": float(r), "dense": dense, "best": best, "sem": 0.8,
                      "ndoc": 1.0})
    for f in feats:
        f["rdense"] = f["dense"] - max(x["dense"] for x in feats)
        f["rbest"] = f["best"] - max(x["best"] for x in feats)
    return fsc.Question(f"q{i}", "fit", False, i % fsc.FOLDS, feats,
                        [r == good_at for r in range(3)], 0)


def test_the_fit_learns_which_source_holds_the_answer() -> None:
    rng = random.Random(7)
    train = [_question(i, rng) for i in range(120)]
    model = fsc._fit(train, 1.0)
    held_out = [_question(i, rng) for i in range(40)]
    right = sum(q.good[fsc._chosen(model, q)] for q in held_out)
    assert right >= 36  # the strong source is found; always the first would get about 13
    assert fsc._rate(held_out, lambda q: q.reader)["sv_en"] < 0.5


def test_the_committed_model_names_the_features_the_answerer_computes() -> None:
    d = json.loads(SOURCE_CHOICE.read_text(encoding="utf-8"))
    assert tuple(d["features"]) == fsc.FEATURES
    assert len(d["coef"]) == len(d["mean"]) == len(d["scale"]) == len(fsc.FEATURES)
    # held-out figures are committed with it
    assert {"fit_crossvalidated", "check_fitted"} <= set(d["figures"])
