from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.chunking import Chunker, split_sections
from ingest.errors import LoaderError
from ingest.loaders import SUPPORTED_SUFFIXES, LoadedDocument, load_file
from ingest.manifest import discover_manifests
from tests.helpers import CORPORA, make_docx, make_pdf

SECTIONS = [
    ("Ansökan", ["Du ansöker om parkeringstillstånd hos staden.", "Ett läkarintyg behövs."]),
    ("Avgift", ["Tillståndet kostar ingenting.", "Det gäller i högst tre år."]),
]


def one(path: Path, source: str = "doc") -> LoadedDocument:
    [doc] = load_file(path, source)
    assert isinstance(doc, LoadedDocument), doc
    return doc


def test_markdown_front_matter(tmp_path: Path) -> None:
    p = tmp_path / "a.md"
    p.write_text("---\ntitle: Liseberg\nlang: en\n---\n# Liseberg\n\n## Rides\n\nMany rides.\n")
    doc = one(p)
    assert (doc.title, doc.lang) == ("Liseberg", "en")
    assert not doc.text.startswith("---")
    assert [s.path for s in split_sections(doc.text)] == [("Liseberg", "Rides")]


def test_plain_text_detects_language(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("Opening hours\n\nThe museum is open every day except Monday and is free.\n")
    doc = one(p)
    assert doc.title == "Opening hours" and doc.lang == "en"


def test_html_keeps_main_content_and_drops_navigation(tmp_path: Path) -> None:
    p = tmp_path / "a.html"
    p.write_text(
        """<html lang="sv"><head><title>Parkering – Göteborgs Stad</title></head><body>
        <nav><ul><li><a href="/">Startsida</a></li>
        <li><a href="/om">Om webbplatsen</a></li></ul></nav>
        <div class="cookie-banner">Vi använder kakor för att förbättra webbplatsen.</div>
        <main><article><h1>Parkeringstillstånd</h1>
        <p>Med ett parkeringstillstånd för rörelsehindrade får du parkera närmare ditt mål.</p>
        <h2>Så ansöker du</h2><p>Du fyller i ansökan och bifogar ett läkarintyg från din läkare.</p>
        </article></main>
        <footer><a href="/kontakt">Kontakta oss</a> Tillgänglighetsredogörelse</footer>
        </body></html>""",
        encoding="utf-8",
    )
    doc = one(p)
    assert doc.lang == "sv"
    assert "läkarintyg" in doc.text and "## Så ansöker du" in doc.text
    for boilerplate in ("Startsida", "Om webbplatsen", "kakor", "Tillgänglighetsredogörelse"):
        assert boilerplate not in doc.text


def test_pdf_recovers_headings(tmp_path: Path) -> None:
    p = tmp_path / "a.pdf"
    make_pdf(p, "Parkeringstillstånd", SECTIONS)
    doc = one(p)
    assert doc.title == "Parkeringstillstånd"
    paths = [s.path for s in split_sections(doc.text)]
    assert paths == [("Parkeringstillstånd", "Ansökan"), ("Parkeringstillstånd", "Avgift")]
    assert "läkarintyg" in doc.text


def test_docx_headings_and_properties(tmp_path: Path) -> None:
    p = tmp_path / "a.docx"
    make_docx(p, "Parkeringstillstånd", SECTIONS)
    doc = one(p)
    assert doc.title == "Parkeringstillstånd" and doc.lang == "sv"
    assert [s.path[-1] for s in split_sections(doc.text)] == ["Ansökan", "Avgift"]


def test_jsonl_keeps_row_ids_and_reports_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "rows.jsonl"
    rows = [
        json.dumps({"doc_id": "sqmc-7", "text": "Visum krävs för vissa länder."}),
        "{not json",
        json.dumps({"text": "no id"}),
        json.dumps({"id": 42, "title": "Avfall", "text": "Sortera glas och metall."}),
    ]
    p.write_text("\n".join(rows) + "\n")
    out = load_file(p, "docs/rows.jsonl")
    docs = [d for d in out if isinstance(d, LoadedDocument)]
    errors = [d for d in out if isinstance(d, LoaderError)]
    assert [d.doc_id for d in docs] == ["sqmc-7", "42"]
    assert docs[0].source == "docs/rows.jsonl#sqmc-7"
    assert docs[1].title == "Avfall"
    assert [e.source for e in errors] == ["docs/rows.jsonl:2", "docs/rows.jsonl:3"]
    assert "invalid JSON" in errors[0].message and "no id" in errors[1].message


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", "corrupt"),
        ("notpdf.pdf", b"hello this is not a pdf", "corrupt"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "corrupt"),
        ("empty.md", b"", "empty"),
        ("blank.md", b"---\ntitle: x\n---\n\n   \n", "empty"),
        ("image.png", b"\x89PNG\r\n", "unsupported"),
    ],
)
def test_bad_files_give_clear_errors(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    [err] = load_file(p, name)
    assert isinstance(err, LoaderError)
    assert err.source == name and reason in err.message.lower()


def _bundled_files() -> list[tuple[str, Path]]:
    out = []
    for m in discover_manifests(CORPORA):
        for p in sorted((m.root / "docs").rglob("*")):
            if p.is_file():
                out.append((m.name, p))
    return out


def test_bundled_corpora_use_mixed_formats_and_all_load() -> None:
    files = _bundled_files()
    suffixes = {p.suffix for _, p in files}
    assert {".md", ".html", ".pdf", ".docx"} <= suffixes
    for corpus, p in files:
        assert p.suffix in SUPPORTED_SUFFIXES, p
        [doc] = load_file(p, p.name)
        assert isinstance(doc, LoadedDocument), f"{corpus}/{p.name}: {doc}"
        assert len(doc.text.split()) > 80, f"{p.name} is too short to be useful"
        assert doc.lang in ("sv", "en")


def test_bundled_chunks_never_straddle_a_heading() -> None:
    chunker = Chunker(max_tokens=128, overlap_tokens=16)
    for _, p in _bundled_files():
        [doc] = load_file(p, p.name)
        assert isinstance(doc, LoadedDocument)
        sections = split_sections(doc.text)
        for ch in chunker.chunk(doc.text, doc.title, doc.lang):
            assert not any(line.lstrip().startswith("#") for line in ch.text.splitlines())
            owners = [
                s for s in sections if ch.text.split()[0] in s.body and ch.text[:40] in s.body
            ]
            assert owners, f"{p.name}: chunk not inside any one section: {ch.text[:60]!r}"
