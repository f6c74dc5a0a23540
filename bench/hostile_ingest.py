"""Hostile local files: `gbg ingest` must finish, report each bad file and keep every good one.

    python bench/hostile_ingest.py [--keep DIR]

Builds, in a temporary folder, a corpus with a DOCX zip bomb (~200 MB of XML), a DOCX with a
20 MB text node, a malformed DOCX, a 10 MB one-line Markdown file, a YAML alias bomb in front
matter, JSON Lines with invalid UTF-8, symlinks to /etc/passwd and to a folder outside the corpus,
next to good files, plus a later corpus of good files. Runs `gbg ingest --json` as a subprocess
and prints the elapsed seconds and its peak RSS. Exits 1 when a good file is missing, a bad file
is not reported, it took more than two minutes or more than 1 GB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MANIFEST = """name = "{name}"
title = "{name}"
audience = "public"
sensitivity = "public"
languages = ["sv", "en"]
[license]
name = "CC BY 4.0"
[[sources]]
type = "files"
include = ["docs/**/*", "docs/*/*"]
"""

GOOD_MD = """# {title}

Sophämtningen i {title} sker varannan vecka. Matavfall sorteras i den bruna påsen och
glas lämnas vid återvinningsstationen. Kontakta kundtjänst om kärlet inte har tömts.
"""

SECRET = "root-secret-4711"

# The bad files and the words their reports must contain.
EXPECTED_ERRORS = {
    "docs/bomb.docx": "uncompressed",
    "docs/hugenode.docx": "docx",
    "docs/malformed.docx": "docx",
    "docs/oneline.md": "characters",
    "docs/alias.md": "alias",
    "docs/bad.jsonl:2": "utf-8",
    "docs/passwd.txt": "outside the corpus folder",
    "docs/ute": "outside the corpus folder",
    "docs/ute/secret.md": "outside the corpus folder",
}
GOOD_SOURCES = {
    "a-hostile": {"docs/good.md", "docs/good.docx", "docs/bad.jsonl#r1", "docs/bad.jsonl#r3"},
    "b-later": {"docs/later.md"},
}


def _docx_bytes(title: str, paragraphs: list[str]) -> bytes:
    import docx

    d = docx.Document()
    d.core_properties.title = title
    d.add_heading(title, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def _docx_with_body(path: Path, write_body: object) -> None:
    """A real DOCX whose word/document.xml is replaced by what ``write_body(fh)`` streams."""
    template = zipfile.ZipFile(io.BytesIO(_docx_bytes("Mall", ["mall"])))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in template.infolist():
            if info.filename == "word/document.xml":
                continue
            out.writestr(info, template.read(info.filename))
        with out.open("word/document.xml", "w", force_zip64=True) as fh:
            write_body(fh)  # type: ignore[operator]


_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def build_hostile_corpora(corpora: Path, outside: Path, scale: float = 1.0) -> None:
    """``scale`` < 1 makes the bombs smaller (for fast tests), keeping them over the limits
    the caller sets."""
    root = corpora / "a-hostile"
    docs = root / "docs"
    docs.mkdir(parents=True)
    (root / "corpus.toml").write_text(MANIFEST.format(name="a-hostile"), encoding="utf-8")
    (docs / "good.md").write_text(GOOD_MD.format(title="Angered"), encoding="utf-8")
    (docs / "good.docx").write_bytes(
        _docx_bytes("Parkering", ["Boendeparkering kostar 800 kronor i månaden i Majorna."])
    )

    bomb_bytes = int(200_000_000 * scale)
    para = b"<w:p><w:r><w:t>bomb bomb bomb bomb</w:t></w:r></w:p>" * 2000

    def bomb(fh: io.BufferedIOBase) -> None:
        fh.write(f"<w:document {_W}><w:body>".encode())
        for _ in range(bomb_bytes // len(para)):
            fh.write(para)
        fh.write(b"</w:body></w:document>")

    _docx_with_body(docs / "bomb.docx", bomb)

    node_chars = int(20_000_000 * scale)

    def huge_node(fh: io.BufferedIOBase) -> None:
        fh.write(f"<w:document {_W}><w:body><w:p><w:r><w:t>".encode())
        block = b"abcdefghij" * 100_000
        for _ in range(max(1, node_chars // len(block))):
            fh.write(block)
        fh.write(b"</w:t></w:r></w:p></w:body></w:document>")

    _docx_with_body(docs / "hugenode.docx", huge_node)
    _docx_with_body(
        docs / "malformed.docx", lambda fh: fh.write(f"<w:document {_W}><w:body><w:p".encode())
    )

    line_chars = int(10_000_000 * scale)
    (docs / "oneline.md").write_bytes(b"# Rad\n\n" + b"abcdefghij" * (line_chars // 10) + b"\n")

    levels = "abcdefghi"
    yaml_lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip(levels, levels[1:], strict=False):
        yaml_lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    yaml_lines.append(f"title: *{levels[-1]}")
    (docs / "alias.md").write_text(
        "---\n" + "\n".join(yaml_lines) + "\n---\n" + GOOD_MD.format(title="Bomben"),
        encoding="utf-8",
    )

    (docs / "bad.jsonl").write_bytes(
        json.dumps({"id": "r1", "text": "Biblioteket på Hisingen har öppet alla dagar."}).encode()
        + b"\n"
        + b'{"id": "r2", "text": "trasig \xff\xfe text"}\n'
        + json.dumps({"id": "r3", "text": "Simhallen i Frölunda stänger klockan nio."}).encode()
        + b"\n"
    )

    os.symlink("/etc/passwd", docs / "passwd.txt")
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.md").write_text(f"# Hemligt\n\nLösenordet är {SECRET}.\n", "utf-8")
    os.symlink(outside, docs / "ute", target_is_directory=True)

    later = corpora / "b-later"
    (later / "docs").mkdir(parents=True)
    (later / "corpus.toml").write_text(MANIFEST.format(name="b-later"), encoding="utf-8")
    (later / "docs" / "later.md").write_text(GOOD_MD.format(title="Hisingen"), encoding="utf-8")


def missing_reports(errors: list[str]) -> list[str]:
    """The expected bad files that no report line names with its reason."""
    return [
        src
        for src, word in EXPECTED_ERRORS.items()
        if not any(e.startswith(f"{src}: ") and word in e.lower() for e in errors)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Build here and keep it (default: a temp dir).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        corpora = work / "corpora"
        t0 = time.perf_counter()
        build_hostile_corpora(corpora, work / "outside")
        print(f"built the hostile corpora in {time.perf_counter() - t0:.1f} s")
        gbg = Path(sys.executable).parent / "gbg"
        cmd = [str(gbg), "ingest", "--corpora-dir", str(corpora),
               "--data-dir", str(work / "data"), "--json"]
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        elapsed = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        skipped = [ln.split("skipped:", 1)[1].strip() for ln in proc.stderr.splitlines()
                   if "skipped:" in ln]
        for line in skipped:
            print(f"  skipped: {line[:160]}")
        try:
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(f"gbg ingest exited {proc.returncode} without a JSON report:\n{proc.stderr}")
            return 1
        errors = [e for c in report["corpora"] for e in c["errors"]]
        print(f"exit code {proc.returncode}; elapsed {elapsed:.1f} s; peak RSS {peak_mb:.0f} MB")
        for c in report["corpora"]:
            print(f"  {c['corpus']}: {c['documents']} documents, {len(c['errors'])} errors, "
                  f"{c['chunks_total']} chunks")
        ok = True
        if missing := missing_reports(errors):
            print(f"FAIL: not reported with its reason: {missing}")
            ok = False
        chunks = {c["corpus"]: c["chunks_total"] for c in report["corpora"]}
        if set(chunks) != set(GOOD_SOURCES) or not all(chunks.values()):
            print(f"FAIL: a corpus has no chunks: {chunks}")
            ok = False
        if elapsed > 120 or peak_mb > 1024:
            print("FAIL: over two minutes or over 1 GB")
            ok = False
        print("OK" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
