"""The ``gbg`` command: the composition root that wires settings into ingest, bot, ui and eval."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gbg.settings import Settings

app = typer.Typer(
    help="gbg-assist: a local-first, cited, audited assistant platform for Göteborgs Stad.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
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
    corpus: Annotated[list[str] | None, typer.Argument(help="Corpora to ingest (default: all).")] = None,
    corpora_dir: Annotated[Path | None, typer.Option(help="Folder of corpora/<name>/corpus.toml.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where the embedded store lives.")] = None,
    chroma_host: Annotated[str | None, typer.Option(help="Use a Chroma server at this host.")] = None,
    chroma_port: Annotated[int | None, typer.Option(help="Chroma server port.")] = None,
    rebuild: Annotated[bool, typer.Option(help="Drop and re-embed the collections.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit non-zero on any error.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each document.")] = False,
) -> None:
    """Load, chunk, embed and store corpora. Unchanged documents are skipped."""
    _logging(verbose)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.embedders import get_embedder
    from ingest.errors import IngestError
    from ingest.manifest import discover_manifests
    from ingest.pipeline import ingest_all
    from ingest.store import ChromaStore

    settings = _settings(corpora_dir, data_dir, chroma_host, chroma_port)
    try:
        manifests = discover_manifests(settings.corpora_dir, corpus or None)
        store = ChromaStore.from_settings(settings)
        embedder = get_embedder(settings.embedder)
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


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[str, typer.Option(help="swequad-mc or swefaq")],
    data: Annotated[Path, typer.Option(help="Folder with corpus.jsonl and queries.jsonl.")],
    split: Annotated[str | None, typer.Option(help="Only queries of this split.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    reports_dir: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = Path("reports"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """recall@1/5/10, MRR@10 and nDCG@10 for dense, BM25 and hybrid over the same chunks."""
    from rich.progress import Progress

    from eval.datasets import DatasetError, load_retrieval_dataset
    from eval.retrieval import (
        MODES,
        build_store,
        dataset_settings,
        evaluate_retrieval,
        results_as_dict,
        write_report,
    )
    from ingest.embedders import get_embedder

    settings = _settings()
    try:
        ds = load_retrieval_dataset(dataset, data, split)
    except DatasetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if limit:
        ds.queries = ds.queries[:limit]
    s = dataset_settings(settings, ds)
    embedder = get_embedder(s.embedder)
    with Progress(console=err, disable=json_out) as progress:
        task = progress.add_task(f"ingest {ds.name}", total=None)
        ingest_report = build_store(s, embedder)
        progress.update(task, total=1, completed=1)
        qtask = progress.add_task("queries", total=len(ds.queries) * len(MODES))
        results = evaluate_retrieval(s, embedder, ds, on_query=lambda: progress.advance(qtask))
    payload = results_as_dict(ds, results, ingest_report, {
        "embedder": embedder.name,
        "chunk_tokens": s.chunking.max_tokens,
        "rrf_k": s.retrieval.rrf_k,
        "weights": {"dense": s.retrieval.dense_weight, "bm25": s.retrieval.bm25_weight},
    })
    path = write_report(reports_dir, payload)
    if json_out:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{ds.name}: {len(ds.queries)} queries, "
                        f"{payload['chunks']} chunks ({embedder.name})")
    cols = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"]
    table.add_column("mode")
    for c in cols:
        table.add_column(c, justify="right")
    for mode, m in payload["modes"].items():
        table.add_row(mode, *(f"{m[c]:.3f}" if "ms" not in c else f"{m[c]:.1f}" for c in cols))
    out.print(table)
    out.print(f"report: {path}")


@app.command()
def up(
    no_serve: Annotated[bool, typer.Option(help="Only ingest; do not start the services.")] = False,
) -> None:
    """Ingest what changed in the bundled corpora, then start the bot and the UI."""
    ingest(corpus=None, corpora_dir=None, data_dir=None, chroma_host=None, chroma_port=None,
           rebuild=False, strict=False, json_out=False, verbose=False)
    if no_serve:
        return


def main() -> None:
    app()


if __name__ == "__main__":
    main()
