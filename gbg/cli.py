"""The ``gbg`` command: the composition root that wires settings into ingest, bot, ui and eval."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gbg.settings import Settings

app = typer.Typer(
    help="gbg-assist: a local-first, cited, audited assistant platform for Göteborgs Stad.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console()
if not out.is_terminal:
    out.width = 120


@app.callback()
def _root() -> None:
    """gbg-assist: ingest corpora, serve the bot, run the UI and the evaluations."""


def _settings(
    corpora_dir: Path | None = None,
    data_dir: Path | None = None,
    chroma_host: str | None = None,
    chroma_port: int | None = None,
) -> Settings:
    s = Settings()
    if corpora_dir is not None:
        s.corpora_dir = corpora_dir
    if data_dir is not None:
        s.data_dir = data_dir
    if chroma_host is not None:
        s.chroma.host = chroma_host
    if chroma_port is not None:
        s.chroma.port = chroma_port
    return s


def _summary_table(report: object) -> Table:
    from ingest.pipeline import IngestReport

    assert isinstance(report, IngestReport)
    table = Table(title=f"Ingest summary ({report.seconds:.1f} s)", show_lines=False)
    for col in ("corpus", "documents", "added", "updated", "removed", "unchanged", "embedded",
                "errors", "chunks", "seconds"):
        table.add_column(col, justify="left" if col == "corpus" else "right")
    for c in report.corpora:
        table.add_row(
            c.corpus, str(c.documents), str(c.chunks_added), str(c.chunks_updated),
            str(c.chunks_removed), str(c.chunks_unchanged), str(c.embedded), str(len(c.errors)),
            str(c.chunks_total), f"{c.seconds:.1f}",
        )
    table.add_row(
        "total", str(report.total("documents")), str(report.total("chunks_added")),
        str(report.total("chunks_updated")), str(report.total("chunks_removed")),
        str(report.total("chunks_unchanged")), str(report.total("embedded")),
        str(len(report.errors)), str(report.total("chunks_total")), f"{report.seconds:.1f}",
        style="bold",
    )
    return table


def _logging(verbose: bool) -> None:
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
    )


@app.command()
def ingest(
    corpus: Annotated[
        list[str] | None, typer.Argument(help="Corpora to ingest (default: all).")
    ] = None,
    corpora_dir: Annotated[
        Path | None, typer.Option(help="Folder of corpora/<name>/corpus.toml.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where the embedded store lives.")] = None,
    chroma_host: Annotated[
        str | None, typer.Option(help="Use a Chroma server at this host.")
    ] = None,
    chroma_port: Annotated[int | None, typer.Option(help="Chroma server port.")] = None,
    rebuild: Annotated[bool, typer.Option(help="Drop and rebuild the collections.")] = False,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Embed every passage again, without the embedding cache.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit non-zero on any error.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each document.")] = False,
) -> None:
    """Load, chunk, embed and store corpora. Unchanged documents are skipped."""
    _logging(verbose)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.embed_cache import embedder_for
    from ingest.errors import IngestError
    from ingest.manifest import discover_manifests
    from ingest.pipeline import ingest_all
    from ingest.store import ChromaStore

    settings = _settings(corpora_dir, data_dir, chroma_host, chroma_port)
    try:
        manifests = discover_manifests(settings.corpora_dir, corpus or None)
        store = ChromaStore.from_settings(settings)
        embedder = embedder_for(settings, cache=False if no_cache else None)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err, transient=False, disable=json_out,
        ) as progress:
            report = ingest_all(settings, manifests, store, embedder, rebuild, progress)
    except IngestError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for e in report.errors:
        err.print(f"[yellow]skipped:[/yellow] {e}")
    if json_out:
        sys.stdout.write(json.dumps(report.as_dict(), ensure_ascii=False) + "\n")
    else:
        out.print(_summary_table(report))
    ok_docs = sum(c.ok_documents for c in report.corpora)
    if report.errors and (strict or ok_docs == 0):
        raise typer.Exit(1)


eval_app = typer.Typer(help="Evaluation suites and release gates.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _progress(progress: Progress) -> Callable[[str, int], Callable[[], None]]:
    """A progress callback for ``eval.commands``: a task per name, advanced per item."""

    def task(name: str, total: int) -> Callable[[], None]:
        t = progress.add_task(name, total=total)
        return lambda: progress.advance(t)

    return task


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[str, typer.Option(help="swequad-mc or swefaq")],
    data: Annotated[Path, typer.Option(help="Folder with corpus.jsonl and queries.jsonl.")],
    split: Annotated[str | None, typer.Option(help="Only queries of this split.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    reports_dir: Annotated[
        Path, typer.Option(help="Where the JSON report goes.")
    ] = Path("reports"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    folds: Annotated[int, typer.Option(
        help="Cross-validate the fusion knobs over this many folds (grouped by gold document; "
             "1 = off).")] = 5,
) -> None:
    """recall@1/5/10, MRR@10 and nDCG@10 for dense, BM25 and hybrid over the same chunks; then
    every data-chosen knob (fusion, weights, RRF k, candidate depth) cross-validated: chosen on
    the other folds, scored on the held-out one."""
    from eval.commands import retrieval_eval
    from eval.datasets import DatasetError

    try:
        with Progress(console=err, disable=json_out) as progress:
            payload, path, ds = retrieval_eval(_settings(), dataset, data, split, limit,
                                               reports_dir, _progress(progress), folds)
    except DatasetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if json_out:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{ds.name}: {len(ds.queries)} queries, "
                        f"{payload['chunks']} chunks ({payload['embedder']})")
    cols = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"]
    table.add_column("mode")
    for c in cols:
        table.add_column(c, justify="right")
    for mode, m in payload["modes"].items():
        table.add_row(mode, *(f"{m[c]:.3f}" if "ms" not in c else f"{m[c]:.1f}" for c in cols))
    out.print(table)
    if cv := payload.get("crossval"):
        t = Table(title=f"nDCG@10 on held-out folds ({cv['folds']}-fold cross-validation over "
                        f"{cv['configurations']} configurations, grouped by gold document)")
        t.add_column("configuration")
        t.add_column("mean", justify="right")
        t.add_column("sd", justify="right")
        t.add_column("per fold", justify="right")
        for name, v in cv["heldout_ndcg@10"].items():
            t.add_row(name, f"{v['mean']:.3f}", f"{v['sd']:.3f}",
                      " ".join(f"{x:.3f}" for x in v["folds"]))
        out.print(t)
        out.print(f"chosen per fold: {'; '.join(cv['chosen_per_fold'])}")
        out.print(f"most often chosen: {cv['winner']} -> settings {cv['winner_settings']}")
    out.print(f"report: {path}")


@eval_app.command("answer")
def eval_answer(
    data: Annotated[Path, typer.Option(help="The squad_v2_sv folder.")],
    provider: Annotated[list[str] | None, typer.Option(help="extractive and/or llamacpp")] = None,
    limit: Annotated[int, typer.Option(help="Questions (half unanswerable).")] = 200,
    model_path: Annotated[Path | None, typer.Option(help="GGUF for llamacpp.")] = None,
    dataset: Annotated[str, typer.Option(help="Only squad-v2-sv.")] = "squad-v2-sv",
) -> None:
    """Refusal rate on unanswerable and contains-gold-span rate on answerable questions."""
    from eval.commands import answer_eval
    from eval.datasets import DatasetError

    if dataset != "squad-v2-sv":
        err.print("[red]error:[/red] only --dataset squad-v2-sv is supported here")
        raise typer.Exit(2)
    try:
        with Progress(console=err) as progress:
            rows = answer_eval(Settings(), data, provider or ["extractive"], limit, model_path,
                               _progress(progress))
    except DatasetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table = Table(title=f"{dataset}: {limit} questions (half unanswerable)")
    for c in ("provider", "refusal rate (unanswerable)", "contains gold span (answerable)",
              "refused (answerable)"):
        table.add_column(c)
    for name, r in rows.items():
        table.add_row(name, f"{r['refusal_rate_unanswerable']:.3f}",
                      f"{r['contains_gold_span_answerable']:.3f}",
                      f"{r['refusal_rate_answerable']:.3f}")
    out.print(table)


@eval_app.command("run")
def eval_run(
    config: Annotated[list[Path] | None, typer.Option(help="Config TOML files.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N gold questions.")] = None,
    reports_dir: Annotated[Path, typer.Option(help="Where reports go.")] = Path("reports"),
) -> None:
    """All suites on the bundled gold set, one column per configuration; writes JSON, Markdown
    and HTML reports (with plots) to the reports folder."""
    from eval.commands import gold_eval

    ingest(corpus=None, corpora_dir=None, data_dir=None, chroma_host=None, chroma_port=None,
           rebuild=False, strict=False, json_out=True, verbose=False)
    with Progress(console=err) as progress:
        out_paths = gold_eval(Settings(), config, limit, reports_dir, _progress(progress))
    out.print((reports_dir / "eval-latest.md").read_text(encoding="utf-8"))
    out.print(f"reports: {', '.join(str(p) for p in out_paths.values())}")


@eval_app.command("gate")
def eval_gate(
    report: Annotated[Path, typer.Option(help="A report from gbg eval run.")] = Path(
        "reports/eval-latest.json"),
    gates: Annotated[
        Path | None, typer.Option(help="Thresholds (default eval/gates.toml).")
    ] = None,
    config_name: Annotated[
        str | None, typer.Option("--config", help="Configuration to gate.")
    ] = None,
) -> None:
    """Exit non-zero when a gated metric is below (or above) its threshold."""
    import tomllib

    from eval.suites import EVAL_DIR, check_gates, flatten

    g = tomllib.loads((gates or EVAL_DIR / "gates.toml").read_text(encoding="utf-8"))
    if not report.is_file():
        err.print(f"[red]error:[/red] {report} not found: run `gbg eval run` first")
        raise typer.Exit(2)
    data = json.loads(report.read_text(encoding="utf-8"))
    name = config_name or g.get("config", "hybrid")
    if name not in data["configs"]:
        err.print(f"[red]error:[/red] configuration {name!r} not in the report "
                  f"({', '.join(data['configs'])})")
        raise typer.Exit(2)
    failures = check_gates(flatten(data["configs"][name]), g)
    for f in failures:
        err.print(f"[red]gate failed:[/red] {f}")
    if failures:
        raise typer.Exit(1)
    out.print(f"gates passed for {name!r} ({len(g.get('min', {})) + len(g.get('max', {}))} checks)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default GBG_BOT__WORKERS, 1).")
    ] = None,
) -> None:
    """Start the bot API (FastAPI, OpenAPI docs at /docs). SIGTERM drains requests in flight."""
    import uvicorn

    _logging(False)
    try:
        settings = Settings()
        if workers is not None:
            settings = Settings(bot={**settings.bot.model_dump(), "workers": workers})
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if not settings.chroma.host and not settings.chroma_path.exists():
        err.print(f"[yellow]note:[/yellow] no store at {settings.chroma_path}; "
                  "run `gbg ingest` first")
    b = settings.bot
    os.environ["GBG_BOT__WORKERS"] = str(b.workers)  # the workers read their settings again
    import signal

    # uvicorn drains requests in flight on SIGTERM and then re-raises the signal; a drained,
    # orderly stop should exit 0, not "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run("bot.http.app:app_factory", factory=True, host=host, port=port, workers=b.workers,
                log_level="info", timeout_graceful_shutdown=math.ceil(b.shutdown_timeout_s),
                proxy_headers=True, forwarded_allow_ips=b.forwarded_allow_ips)


def _streamlit(host: str, port: int, secrets: Path | None = None) -> list[str]:
    """The Streamlit command line for the chat: headless, no usage statistics, no developer
    toolbar (no "Deploy" button for the public); ``secrets``: the sign-in configuration."""
    app_path = Path(__file__).resolve().parent.parent / "ui" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
           "--server.address", host, "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    return cmd + (["--secrets.files", str(secrets)] if secrets else [])


def _ui_secrets(port: int) -> Path | None:
    """The UI's sign-in configuration written from the settings (None without OIDC)."""
    from ui.auth_config import redirect_uri, write_ui_secrets

    try:
        settings = Settings()
        path = write_ui_secrets(settings, port)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if path and settings.auth.oidc:
        ui_url = redirect_uri(settings.auth.oidc, port).removesuffix("/oauth2callback")
        out.print(f"sign-in: {settings.auth.oidc.issuer} (open the UI at {ui_url}: the sign-in "
                  "returns there)")
    return path


@app.command("ui")
def ui_cmd(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the UI.")] = 8501,
    bot_url: Annotated[str | None, typer.Option(help="The bot's base URL.")] = None,
) -> None:
    """Start the Streamlit chat against a running bot (GBG_UI__BOT_URL)."""
    import subprocess

    import httpx

    env = dict(os.environ)
    if bot_url:
        env["GBG_UI__BOT_URL"] = bot_url
    url = env.get("GBG_UI__BOT_URL", "http://127.0.0.1:8000")
    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=3).raise_for_status()
        out.print(f"bot: {url} (reachable)")
    except httpx.HTTPError as exc:
        err.print(f"[yellow]warning:[/yellow] the bot at {url} is not reachable "
                  f"({type(exc).__name__}); start it with `gbg serve` or set GBG_UI__BOT_URL. "
                  "The UI starts anyway and tells its users to try again later.")
    secrets = _ui_secrets(port)
    out.print(f"ui: http://{host}:{port}")
    raise typer.Exit(subprocess.call(_streamlit(host, port, secrets), env=env))


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface for the bot and the UI.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bot port.")] = 8000,
    ui_port: Annotated[int, typer.Option(help="UI port.")] = 8501,
    no_serve: Annotated[bool, typer.Option(help="Only ingest; do not start the services.")] = False,
) -> None:
    """Ingest what changed in the bundled corpora and start the bot and the UI. With a Chroma
    server the services start at once and the ingest runs beside them (a corpus still being
    ingested is reported as such and not answered from); with the embedded store, which one
    process at a time may write and read, the ingest (seconds, from the embedding cache) comes
    first."""
    import os
    import signal
    import subprocess
    import time

    def run_ingest() -> None:
        ingest(corpus=None, corpora_dir=None, data_dir=None, chroma_host=None,
               chroma_port=None, rebuild=False, strict=False, json_out=False, verbose=False,
               no_cache=False)

    beside = bool(Settings().chroma.host)
    secrets = None if no_serve else _ui_secrets(ui_port)  # before anything starts
    if no_serve or not beside:
        run_ingest()
        if no_serve:
            return
    env = {**os.environ, "GBG_UI__BOT_URL": f"http://{host}:{port}"}
    bot = subprocess.Popen([sys.executable, "-m", "gbg", "serve", "--host", host, "--port",
                            str(port)], env=env)
    procs = [bot]
    procs.append(subprocess.Popen(_streamlit(host, ui_port, secrets), env=env))
    out.print(f"bot: http://{host}:{port}/docs   ui: http://{host}:{ui_port}   (Ctrl-C stops)")

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a service manager's stop: the children go too
    interrupted = False
    try:
        if beside:
            run_ingest()
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # A second Ctrl-C or SIGTERM while the children drain must not skip the kill below.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=Settings().bot.shutdown_timeout_s + 5)
            except subprocess.TimeoutExpired:
                p.kill()
    if not interrupted:
        names = {bot.pid: "bot"}
        dead = [f"{names.get(p.pid, 'ui')} exited with {p.returncode}" for p in procs
                if p.returncode not in (0, None, -signal.SIGTERM)]
        err.print(f"[red]error:[/red] {'; '.join(dead) or 'a service stopped'}")
        raise typer.Exit(1)


keys_app = typer.Typer(help="API keys for staff and care roles.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="public, staff or care")],
    name: Annotated[str, typer.Option(help="A label, e.g. the person or team.")],
    admin: Annotated[bool, typer.Option(help="May also read the redacted audit log.")] = False,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    from bot.auth import KeyStore
    from gbg.labels import Role

    try:
        r = Role(role)
    except ValueError as exc:
        err.print("[red]error:[/red] role must be public, staff or care")
        raise typer.Exit(2) from exc
    key = KeyStore(Settings().keys_path).create(r, name, admin=admin)
    sys.stdout.write(key + "\n")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Option(help="The key's label.")]) -> None:
    """Remove every key with this label."""
    from bot.auth import KeyStore

    n = KeyStore(Settings().keys_path).revoke(name)
    out.print(f"revoked {n} key(s)")


audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("export")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
) -> None:
    """Write the audit log (redacted) to standard output, for the AI Act documentation."""
    from bot.audit import AuditStore

    if fmt not in ("json", "csv"):
        err.print("[red]error:[/red] --format must be json or csv")
        raise typer.Exit(2)
    sys.stdout.write(AuditStore(Settings().audit_url).export(fmt))


@audit_app.command("purge")
def audit_purge(
    older_than_days: Annotated[
        int | None, typer.Option(help="Default: the retention setting.")
    ] = None,
) -> None:
    """Delete audit records older than the retention period, and expired conversations."""
    from bot.audit import AuditStore
    from bot.history import ConversationStore

    s = Settings()
    store = AuditStore(s.audit_url)
    n = store.purge(older_than_days or s.audit.retention_days)
    out.print(f"purged {n} record(s)")
    # Expiry needs no key: conversations go even when the history key is missing or wrong.
    c = ConversationStore.from_settings(s, store.engine).purge()
    out.print(f"purged {c} expired conversation(s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
