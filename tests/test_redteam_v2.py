"""Red team v2 (eval/datasets/redteam_v2.jsonl, written independently of the detector): every
sensitive conversation goes through the real API with a recording cloud peer on loopback and the
cloud preferred, and nothing reaches the cloud (no value of corpora/brukare/PERSONS.json is in its
raw bytes); few ordinary questions are kept local needlessly (printed per language; fit and check
parts reported apart). Also the detector's precision and recall on pii_strings_v2.jsonl."""

from __future__ import annotations

import collections
import json
import re
from typing import Any

import pytest

from bot.models import ChatRequest, Message
from bot.pii import DOUBT_KINDS, Detector
from bot.rewrite import rewrite
from bot.service import ChatService
from gbg.labels import Role
from tests.conftest import CORPORA, REPO
from tests.test_pii_kinds import detector  # noqa: F401  (module fixture)
from tests.test_trust import _headers, trust_bot  # noqa: F401  (module fixture)

TEXT_REASONS = ("pii:", "history:", "doubt:")


def _rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (REPO / "eval/datasets" / name).read_text().splitlines()
            if x.strip()]


def _secrets() -> list[str]:
    out = []
    for p in json.loads((CORPORA / "brukare/PERSONS.json").read_text(encoding="utf-8")):
        out += [p["personnummer"], re.sub(r"\D", "", p["personnummer"]), p["name"], p["phone"],
                re.sub(r"\D", "", p["phone"]), p["address"].split(",")[0]]
        out += [r["name"] for r in p["relatives"]] + [r["phone"] for r in p["relatives"]]
    return out


def _text_reasons(bot: dict[str, Any], row: dict[str, Any]) -> tuple[str, ...]:
    svc: ChatService = bot["svc"]
    msgs = [Message(m["role"], m["content"]) for m in row["messages"]]
    question = msgs[-1].content
    rw = rewrite(question, [m.content for m in msgs[:-1] if m.role == "user"])
    req = ChatRequest(msgs, role=Role(row["role"]))
    return svc._classify(req, question, rw.query, rw.rewritten, []).reasons


@pytest.mark.timeout(2400)  # ~450 requests through the API with real retrieval
@pytest.mark.parametrize("split", ["fit", "check"])
def test_red_team_v2_nothing_sensitive_reaches_the_cloud(trust_bot: dict[str, Any],  # noqa: F811
                                                         split: str) -> None:
    rows = [r for r in _rows("redteam_v2.jsonl") if r["split"] == split]
    client, cloud = trust_bot["client"], trust_bot["cloud"]
    start = len(cloud.raw)
    leaks: list[str] = []
    local: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    digits = [0, 0]
    for r in rows:
        if r["expect"] == "public":
            # Ordinary questions: what the text alone makes of them (the reasons the service
            # would give before retrieval adds a corpus), without the cost of answering them.
            kept = any(x.startswith(TEXT_REASONS) for x in _text_reasons(trust_bot, r))
            bucket = digits if r["category"] == "hard_negative_digits" else local[r["lang"]]
            bucket[0] += kept
            bucket[1] += 1
            continue
        before = len(cloud.raw)
        resp = client.post("/v1/chat", json={"messages": r["messages"]},
                           headers=_headers(trust_bot, r["role"]))
        assert resp.status_code == 200, (r["id"], resp.text)
        if cloud.raw[before:]:
            leaks.append(r["id"])
    kept_all = sum(v[0] for v in local.values())
    total = sum(v[1] for v in local.values())
    print(f"\nred team v2 [{split}]: {sum(r['expect'] == 'sensitive' for r in rows)} sensitive, "
          f"cloud leaks={len(leaks)}; public questions kept local by the classifier needlessly: "
          f"{kept_all}/{total} ({kept_all / max(total, 1):.1%}); hard_negative_digits kept "
          f"local {digits[0]}/{digits[1]}")
    for lang, (k, n) in sorted(local.items()):
        print(f"  {lang}: {k}/{n} ({k / n:.0%})")
    assert leaks == [], leaks
    wire = b"".join(cloud.raw[start:]).decode("utf-8", errors="replace")
    for secret in _secrets():
        assert secret not in wire, secret
    assert kept_all / max(total, 1) <= 0.05


@pytest.mark.parametrize("split", ["fit", "check"])
def test_detector_precision_and_recall_v2(detector: Detector, split: str) -> None:  # noqa: F811
    rows = [r for r in _rows("pii_strings_v2.jsonl") if r["split"] == split]
    tp = fp = fn = tn = 0
    doubt_neg = 0
    for r in rows:
        kinds = detector.kinds(r["text"])
        pred, truth = bool(kinds - DOUBT_KINDS), r["pii"]
        tp += pred and truth
        fp += pred and not truth
        fn += truth and not pred
        tn += not pred and not truth
        doubt_neg += (not truth) and bool(kinds)
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    print(f"\npii_strings_v2 [{split}]: {len(rows)} strings, precision={precision:.3f} "
          f"recall={recall:.3f} (tp={tp} fp={fp} fn={fn} tn={tn}); negatives with any finding "
          f"incl. doubt: {doubt_neg}")
    assert precision >= 0.9 and recall >= 0.8
