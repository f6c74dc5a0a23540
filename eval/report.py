"""Reports for `gbg eval run`: JSON for machines, a Markdown summary, and an HTML page with
plots (metric per configuration, recall@k curves, latency distribution)."""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEADLINE = [
    ("retrieval", "recall@5"), ("retrieval", "ndcg@10"), ("retrieval", "mrr@10"),
    ("answer", "fact_recall"), ("answer", "citation_valid"), ("answer", "faithfulness"),
    ("refusal", "answerable_answered"), ("refusal", "unanswerable_refused"),
    ("routing", "cloud_leaks"), ("routing", "kept_local_needlessly"), ("access", "violations"),
    ("latency", "end_to_end_p50_ms"), ("latency", "end_to_end_p95_ms"),
]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(runs: dict[str, dict[str, Any]]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    names = list(runs)
    metrics = [("retrieval", "ndcg@10"), ("retrieval", "recall@5"), ("answer", "fact_recall"),
               ("answer", "citation_valid"), ("refusal", "unanswerable_refused")]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(names), 1)
    for i, n in enumerate(names):
        vals = [runs[n][s].get(m, 0) for s, m in metrics]
        ax.bar([j + i * width for j in range(len(metrics))], vals, width, label=n)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(metrics))])
    ax.set_xticklabels([m for _, m in metrics], rotation=15)
    ax.set_ylim(0, 1)
    ax.set_title("Metric per configuration")
    ax.legend()
    out["metrics"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for n in names:
        curve = runs[n]["retrieval"]["recall_curve"]
        ax.plot([int(k) for k in curve], list(curve.values()), marker="o", label=n)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.set_title("Recall@k")
    ax.legend()
    out["recall"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for n in names:
        ax.hist(runs[n]["latency"]["end_to_end_ms"], bins=30, alpha=0.5, label=n)
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("questions")
    ax.set_title("Latency distribution")
    ax.legend()
    out["latency"] = _png(fig)
    plt.close(fig)
    return out


def write_reports(out_dir: Path, runs: dict[str, dict[str, Any]], meta: dict[str, Any]
                  ) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {"created": stamp, **meta, "configs": runs}
    paths = {"json": out_dir / "eval-latest.json", "md": out_dir / "eval-latest.md",
             "html": out_dir / "eval-latest.html"}
    paths["json"].write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
    (out_dir / f"eval-{stamp}.json").write_text(paths["json"].read_text(encoding="utf-8"),
                                                encoding="utf-8")
    lines = [f"# gbg-assist evaluation ({stamp})", "",
             f"Gold set: {meta.get('gold_items')} questions; red-team prompts: "
             f"{meta.get('redteam_items')}; provider: {meta.get('provider')}.", "",
             "| metric | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for suite, m in HEADLINE:
        vals = []
        for n in runs:
            v = runs[n][suite].get(m)
            vals.append(f"{v:.3f}" if isinstance(v, float) and v < 10 else f"{v:.0f}"
                        if isinstance(v, float) else str(v))
        lines.append(f"| {suite}.{m} | " + " | ".join(vals) + " |")
    paths["md"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    images = plots(runs)
    table = "\n".join(
        "<tr><td>" + html.escape(f"{s}.{m}") + "</td>" + "".join(
            f"<td>{runs[n][s].get(m, ''):.3f}</td>" if isinstance(runs[n][s].get(m), float)
            else f"<td>{runs[n][s].get(m, '')}</td>" for n in runs) + "</tr>"
        for s, m in HEADLINE)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>gbg-assist evaluation {stamp}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#111}}
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.3rem .6rem}}
img{{max-width:100%}}</style></head><body>
<h1>gbg-assist evaluation</h1><p>{html.escape(stamp)} · gold questions:
{meta.get('gold_items')} · red-team prompts: {meta.get('redteam_items')}</p>
<table><tr><th>metric</th>{''.join(f'<th>{html.escape(n)}</th>' for n in runs)}</tr>{table}</table>
<h2>Metric per configuration</h2><img alt="metrics" src="data:image/png;base64,{images['metrics']}">
<h2>Recall@k</h2><img alt="recall at k" src="data:image/png;base64,{images['recall']}">
<h2>Latency</h2><img alt="latency" src="data:image/png;base64,{images['latency']}">
</body></html>"""
    paths["html"].write_text(page, encoding="utf-8")
    return paths
