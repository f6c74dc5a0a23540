"""Admin and developer pages: the redacted audit log and the evaluation dashboard.

Data shaping is in plain functions (tested without Streamlit); the render functions only lay
the results out."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from ui.client import BotClient, BotRequestError, BotUnavailableError

# Metrics shown first on the dashboard, in this order; others follow.
KEY_METRICS = (
    "retrieval.ndcg@10", "retrieval.recall@5", "answer.fact_recall", "answer.citation_valid",
    "refusal.answerable_answered", "refusal.unanswerable_refused", "routing.cloud_leaks",
    "access.violations", "latency.end_to_end_p95_ms",
)
AUDIT_COLUMNS = ("time", "request_id", "role", "level", "reasons", "provider", "model",
                 "refused", "refusal_reason", "grounded", "latency_ms", "question",
                 "feedback_rating", "feedback_comment")


def flat_metrics(config: dict[str, Any]) -> dict[str, float]:
    """``{"retrieval": {"ndcg@10": 0.9, ...}, ...}`` -> ``{"retrieval.ndcg@10": 0.9, ...}``,
    numbers only (no lists, no per-item rows, no NaN)."""
    out: dict[str, float] = {}
    for suite, metrics in config.items():
        if not isinstance(metrics, dict):
            continue
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            out[f"{suite}.{name}"] = float(value)
    return out


def load_runs(reports: Path) -> list[dict[str, Any]]:
    """Every `gbg eval run` report (eval-<stamp>.json), oldest first; unreadable files skipped."""
    runs = []
    for p in sorted(reports.glob("eval-2*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("configs"), dict):
            runs.append(data)
    return runs


def run_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, configuration) with its flat metrics."""
    rows = []
    for run in runs:
        for name, cfg in run["configs"].items():
            rows.append({"run": str(run.get("created", "?")), "config": name,
                         "provider": run.get("provider"), **flat_metrics(cfg)})
    return rows


def ordered_metrics(rows: list[dict[str, Any]]) -> list[str]:
    seen = {k for r in rows for k in r if k not in ("run", "config", "provider")}
    first = [m for m in KEY_METRICS if m in seen]
    return first + sorted(seen - set(first))


def audit_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {
        "requests": n,
        "refused_share": sum(1 for r in rows if r.get("refused")) / n if n else 0.0,
        "sensitive_share": sum(1 for r in rows if r.get("level") == "sensitive") / n if n else 0.0,
        "thumbs_up": sum(1 for r in rows if r.get("feedback_rating") == 1),
        "thumbs_down": sum(1 for r in rows if r.get("feedback_rating") == -1),
    }


def audit_page(client: BotClient, t: Callable[[str], str]) -> None:
    st.title(t("audit"))
    st.caption(t("audit_intro"))
    c1, c2, c3, c4 = st.columns(4)
    levels = {t("all"): None, "public": "public", "internal": "internal",
              "sensitive": "sensitive"}
    level = levels[c1.selectbox(t("filter_level"), list(levels), key="audit_level")]
    provider = c2.text_input(t("filter_provider"), key="audit_provider").strip() or None
    refused_map = {t("all"): None, t("yes"): True, t("no"): False}
    refused = refused_map[c3.selectbox(t("filter_refused"), list(refused_map),
                                       key="audit_refused")]
    limit = int(c4.number_input(t("rows"), min_value=10, max_value=1000, value=200, step=10,
                                key="audit_limit"))
    try:
        rows = client.audit(level=level, provider=provider, refused=refused, limit=limit)
    except BotRequestError as exc:
        if exc.status in (401, 403):
            st.warning(t("audit_needs_admin"))
        else:
            st.error(f"{t('error')}: {exc.detail}")
        return
    except BotUnavailableError:
        st.error(t("bot_down"))
        return
    s = audit_summary(rows)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(t("requests"), s["requests"])
    m2.metric(t("refused_share"), f"{s['refused_share']:.0%}")
    m3.metric(t("sensitive_share"), f"{s['sensitive_share']:.0%}")
    m4.metric(t("feedback"), f"{s['thumbs_up']} / {s['thumbs_down']}")
    import pandas as pd

    st.dataframe(pd.DataFrame([{k: r.get(k) for k in AUDIT_COLUMNS} for r in rows],
                              columns=list(AUDIT_COLUMNS)), hide_index=True, width="stretch")


def evaluation_page(reports: Path, t: Callable[[str], str]) -> None:
    st.title(t("evaluation"))
    runs = load_runs(reports)
    retrieval = sorted(reports.glob("retrieval-*.json"))
    if not runs and not retrieval:
        st.info(t("no_reports"))
        return
    if runs:
        rows = run_table(runs)
        metrics = ordered_metrics(rows)
        latest = [r for r in rows if r["run"] == rows[-1]["run"]]
        st.subheader(f"{t('latest_run')}: {latest[0]['run']} ({latest[0]['provider']})")
        bar_metrics = [m for m in metrics if not m.endswith("_ms") and all(
            0.0 <= float(r.get(m, 0.0)) <= 1.0 for r in latest)][:8]
        st.bar_chart({r["config"]: {m: r.get(m) for m in bar_metrics} for r in latest},
                     stack=False)
        st.dataframe(latest, hide_index=True, width="stretch")
        st.subheader(t("runs_over_time"))
        metric = st.selectbox(t("metric"), metrics, key="eval_metric")
        import pandas as pd

        frame = pd.DataFrame(
            [{"run": r["run"], "config": r["config"], "value": r.get(metric)} for r in rows]
        ).pivot_table(index="run", columns="config", values="value")
        st.line_chart(frame)
    for p in retrieval:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        st.subheader(f"{data['dataset']} ({data['queries']} {t('queries')})")
        table = {mode: {k: v for k, v in m.items() if k.startswith(("recall", "mrr", "ndcg"))}
                 for mode, m in data["modes"].items()}
        st.bar_chart(table)
        st.dataframe(data["modes"], width="stretch")
