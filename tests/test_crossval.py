"""Cross-validation of the retrieval knobs (eval/crossval.py): folds keep a gold document's
questions together, every configuration ranks as production fusion does, and the held-out
figure is the one of a choice made without the fold."""

from __future__ import annotations

import random

from bot.retrieval.fusion import rrf
from eval.crossval import FusionConfig, QueryLists, cross_validate, folds, rank, shipped
from gbg.settings import RetrievalSettings


def test_folds_keep_each_group_on_one_side() -> None:
    groups = [f"doc{i % 37}" for i in range(300)]
    parts = folds(groups, 5, seed=3)
    assert sorted(i for p in parts for i in p) == list(range(300))
    for p in parts:
        inside = {groups[i] for i in p}
        assert all(groups[j] not in inside for q in parts if q is not p for j in q)
    assert folds(groups, 5, seed=3) == parts  # reproducible


def _lists(rng: random.Random, gold: str, dense_pos: int, bm25_pos: int) -> QueryLists:
    docs = [f"d{i}" for i in range(30)]
    rng.shuffle(docs)

    def ranked(pos: int) -> list[tuple[str, str, float]]:
        order = [d for d in docs if d != gold]
        order.insert(pos, gold)
        return [(f"c-{d}", d, 1.0 - i / 40) for i, d in enumerate(order)]

    return QueryLists(ranked(dense_pos), ranked(bm25_pos), {gold}, gold)


def test_rank_follows_the_production_fusion() -> None:
    q = _lists(random.Random(1), "d7", 4, 0)
    c = FusionConfig("rrf", rrf_k=10, bm25_ratio=2.0, depth=20)
    fused = rrf([([x for x, _, _ in q.dense[:20]], 1.0), ([x for x, _, _ in q.bm25[:20]], 2.0)],
                10)
    expected = [x.removeprefix("c-") for x in sorted(fused, key=lambda x: -fused[x])]
    assert rank(q, c) == list(dict.fromkeys(expected))
    assert rank(q, FusionConfig("dense"))[4] == "d7" and rank(q, FusionConfig("bm25"))[0] == "d7"


def test_the_held_out_score_is_of_a_choice_made_without_that_fold() -> None:
    rng = random.Random(5)
    # BM25 finds the gold document first, dense only at rank 8: a BM25-heavy fusion should win
    lists = [_lists(rng, f"d{i % 30}", 8, 0) for i in range(120)]
    for q in lists:
        q.group = f"g{rng.randrange(40)}"
    default = shipped(RetrievalSettings())
    rep = cross_validate(lists, default, k=4, seed=2)
    d = rep.as_dict()
    assert d["folds"] == 4 and len(d["chosen_per_fold"]) == 4
    assert rep.mean("bm25 only") == 1.0 and rep.mean("dense only") < 0.5
    assert rep.mean("cross-validated choice") == 1.0
    assert all(c.method == "bm25" or c.bm25_ratio > 1 for c in rep.chosen)
    assert set(d["heldout_ndcg@10"]) == {"dense only", "bm25 only", "shipped default",
                                         "cross-validated choice"}
    assert d["winner_settings"]["mode"] in ("bm25", "hybrid")


def test_the_gold_set_is_tuned_on_its_fit_part_only() -> None:
    """The gold set's check part stays unseen by tuning: only answerable fit questions with
    a gold document are pooled, asked with their own role and grouped by their document."""
    from eval.crossval import gold_queries
    from eval.suites import load_gold
    from gbg.labels import Role

    gold = load_gold()
    qs = gold_queries(gold)
    fit = [i for i in gold if i.split == "fit" and i.answerable and i.gold_sources]
    assert len(qs) == len(fit) > 100
    asked = {q.question for q in qs}
    assert not any(i.question in asked for i in gold if i.split == "check")
    assert not any(i.question in asked for i in gold if not i.answerable)
    staff = next(i for i in fit if i.role != "public")
    q = next(q for q in qs if q.question == staff.question)
    assert q.role == Role(staff.role) and q.group == staff.gold_sources[0]
    assert q.gold == frozenset(staff.gold_sources)
