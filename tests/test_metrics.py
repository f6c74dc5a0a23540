"""Every ranking metric against hand-computed examples."""

from __future__ import annotations

import math

import pytest

from eval.metrics import dedupe, mrr_at_k, ndcg_at_k, recall_at_k, score_rankings


def test_dedupe_keeps_first_position() -> None:
    assert dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_recall() -> None:
    assert recall_at_k(["x", "a", "y", "b"], {"a", "b"}, 1) == 0.0
    assert recall_at_k(["x", "a", "y", "b"], {"a", "b"}, 2) == 0.5
    assert recall_at_k(["x", "a", "y", "b"], {"a", "b"}, 4) == 1.0
    assert recall_at_k(["a", "a", "a"], {"a", "b"}, 3) == 0.5
    with pytest.raises(ValueError, match="at least one gold id"):
        recall_at_k(["a"], set(), 1)


def test_mrr() -> None:
    assert mrr_at_k(["a", "b"], {"a"}, 10) == 1.0
    assert mrr_at_k(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], {"a"}, 2) == 0.0
    assert mrr_at_k(["x", "x", "a"], {"a"}, 2) == 0.5  # the duplicate x counts once


def test_ndcg_single_gold() -> None:
    assert ndcg_at_k(["a"], {"a"}, 10) == 1.0
    assert ndcg_at_k(["x", "a"], {"a"}, 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["x", "y", "z", "a"], {"a"}, 3) == 0.0


def test_ndcg_two_gold() -> None:
    # gold at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3)
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))


def test_score_rankings_means() -> None:
    s = score_rankings([(["a", "x"], {"a"}), (["x", "a"], {"a"}), (["x"], {"a"}), ([], set())])
    assert s.n == 3
    assert s.recall_at_1 == pytest.approx(1 / 3)
    assert s.recall_at_5 == pytest.approx(2 / 3)
    assert s.mrr_at_10 == pytest.approx((1 + 0.5 + 0) / 3)
    assert s.ndcg_at_10 == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert s.as_dict()["n"] == 3
