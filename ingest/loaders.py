"""File loaders: every format is turned into Markdown-shaped text whose ``#`` headings carry the
document's structure, so one structure-aware chunker serves them all.

Each loader raises :class:`LoaderError` with a reason a person understands (corrupt, empty,
unsupported, over a budget); the pipeline reports it and goes on with the other files. Every
loader reads within :class:`~ingest.limits.FileLimits`: bytes read, uncompressed size of a DOCX
archive, characters of text, and (cooperatively) time.
"""

from __future__ import annotations

import json
import re
import stat
import statistics
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ingest.errors import IngestError, LimitExceededError, LoaderError, UnsafeSourceError
from ingest.lang import detect_language
from ingest.limits import DEFAULT_LIMITS, FileLimits, check_time

MAX_TITLE_CHARS = 300


@dataclass(frozen=True)
class LoadedDocument:
    """One document, ready for chunking."""

    source: str  # corpus-relative path, path#row-id for JSON Lines, or URL
    title: str
    text: str  # Markdown-shaped: headings as '#' lines
    lang: str
    doc_id: str = ""  # the row id of a JSON Lines document
    url: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _first_heading(text: str) -> str | None:
    m = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)
    return m.group(1).strip() if m else None


def _title_from_name(path: Path) -> str:
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize()


def _finish(
    source: str, text: str, title: str | None, lang: str | None, path: Path | None = None, **kw: Any
) -> LoadedDocument:
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text or not re.search(r"\w", text):
        raise LoaderError(source, "empty document: no text found")
    title = (title or _first_heading(text) or (_title_from_name(path) if path else source)).strip()
    title = title[:MAX_TITLE_CHARS].strip()
    lang = (lang or "").lower()[:2] or detect_language(text)
    return LoadedDocument(source=source, title=title, text=text, lang=lang, **kw)


# --- Markdown and plain text -----------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", flags=re.S)


class _AliasRefused(yaml.YAMLError):
    pass


class FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases: one ``*name`` can expand a few hundred bytes of YAML into
    megabytes (a "billion laughs"), and front matter never needs them."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(f"alias {self.peek_event().anchor!r}")
        return super().compose_node(parent, index)


def parse_front_matter(text: str, max_bytes: int = 20_000) -> tuple[dict[str, Any], str]:
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    if len(m.group(1)) > max_bytes:
        raise LimitExceededError(
            f"front matter longer than {max_bytes} characters: skipped"
        )
    try:
        meta = yaml.load(m.group(1), Loader=FrontMatterLoader) or {}  # a SafeLoader
    except _AliasRefused as exc:
        raise UnsafeSourceError(
            f"front matter uses a YAML alias ({exc}): aliases are not allowed, write the value out"
        ) from exc
    except (yaml.YAMLError, RecursionError):
        return {}, text
    return (meta if isinstance(meta, dict) else {}), text[m.end() :]


def check_chars(text: str, limits: FileLimits) -> str:
    if len(text) > limits.max_chars:
        raise LimitExceededError(
            f"{len(text)} characters of text, more than the limit of {limits.max_chars}: skipped"
        )
    return text


def read_capped(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing (without reading it all) a file over ``max_bytes``."""
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LimitExceededError(f"larger than the limit of {max_bytes} bytes: skipped")
    return data


def resolve_inside(root: Path, path: Path, source: str) -> Path:
    """``path`` with its links resolved; refused when that leaves ``root`` or is not a file."""
    real_root = root.resolve()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a dangling link or a loop of links
        raise LoaderError(source, f"broken link: {exc}") from exc
    if not real.is_relative_to(real_root):
        raise LoaderError(
            source, f"links to {real}, outside the corpus folder: refused (copy the file in)"
        )
    if not stat.S_ISREG(real.stat().st_mode):
        raise LoaderError(source, "not a regular file: skipped")
    return real


def _read_text(path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS) -> str:
    raw = read_capped(path, limits.max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise LoaderError(source, f"not readable as UTF-8 or Windows-1252 text: {exc}") from exc
    return check_chars(text, limits)


def load_markdown(path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS) -> LoadedDocument:
    meta, body = parse_front_matter(_read_text(path, source, limits), limits.max_front_matter_bytes)
    return _finish(
        source,
        body,
        str(meta.get("title") or "") or None,
        str(meta.get("lang") or "") or None,
        path,
        url=str(meta.get("url") or ""),
    )


def load_text(path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS) -> LoadedDocument:
    text = _read_text(path, source, limits)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return _finish(source, text, first[:120] or None, None, path)


# --- HTML --------------------------------------------------------------------------------------


def html_to_document(html: str, source: str, url: str = "") -> LoadedDocument:
    """Main content only (navigation, cookie banners and footers dropped), headings kept."""
    import trafilatura

    text = trafilatura.extract(
        html,
        output_format="markdown",
        include_formatting=True,
        include_tables=True,
        include_links=False,
        include_comments=False,
        favor_recall=True,
        url=url or None,
    )
    meta = trafilatura.extract_metadata(html)
    m = re.search(r"<html[^>]*\blang\s*=\s*[\"']?([a-zA-Z]{2})", html[:5000], flags=re.I)
    title = meta.title if meta and meta.title else None
    if text and title and not _first_heading(text):
        text = f"# {title}\n\n{text}"
    return _finish(source, text or "", title, m.group(1) if m else None, url=url)


def load_html(path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS) -> LoadedDocument:
    return html_to_document(_read_text(path, source, limits), source)


# --- PDF ---------------------------------------------------------------------------------------


def load_pdf(path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS) -> LoadedDocument:
    """Text with headings recovered from font size: lines clearly larger than the body text."""
    import pdfplumber
    from pdfminer.pdfparser import PDFSyntaxError
    from pdfplumber.utils.exceptions import PdfminerException

    lines: list[tuple[float, str]] = []
    chars = 0
    try:
        with pdfplumber.open(path) as pdf:
            info = pdf.metadata or {}
            for page in pdf.pages:
                check_time()
                words = page.extract_words(extra_attrs=["size"], keep_blank_chars=False)
                for line in _group_lines(words):
                    lines.append(line)
                    chars += len(line[1]) + 1
                if chars > limits.max_chars:
                    raise LimitExceededError(
                        f"more than {limits.max_chars} characters of text: skipped"
                    )
                page.close()  # drop the page's parsed objects: memory stays one page deep
    except IngestError:
        raise
    except (PdfminerException, PDFSyntaxError, ValueError, KeyError, TypeError) as exc:
        reason = exc or type(exc).__name__
        raise LoaderError(source, f"corrupt or unreadable PDF: {reason}") from exc
    except Exception as exc:  # pdfminer raises many private types on damaged files
        reason = f"{type(exc).__name__}: {exc}"
        raise LoaderError(source, f"corrupt or unreadable PDF: {reason}") from exc
    if not lines:
        raise LoaderError(source, "empty PDF: no extractable text (scanned image?)")
    body = statistics.median(size for size, _ in lines)
    heading_sizes = sorted({round(s, 1) for s, _ in lines if s >= body * 1.15}, reverse=True)
    level = {s: min(i + 1, 6) for i, s in enumerate(heading_sizes)}
    out: list[str] = []
    para: list[str] = []
    for size, text in lines:
        lvl = level.get(round(size, 1))
        if lvl:
            if para:
                out.append(" ".join(para))
                para = []
            out.append(f"{'#' * lvl} {text}")
        else:
            para.append(text)
            if text.endswith((".", ":", "!", "?")):
                out.append(" ".join(para))
                para = []
    if para:
        out.append(" ".join(para))
    title = str(info.get("Title") or "").strip() or None
    return _finish(source, "\n\n".join(out), title, None, path)


def _group_lines(words: list[dict[str, Any]]) -> Iterator[tuple[float, str]]:
    """Words -> (font size, line text), in reading order."""
    current: list[dict[str, Any]] = []
    for w in words:
        if current and abs(w["top"] - current[-1]["top"]) > 2:
            yield max(x["size"] for x in current), " ".join(x["text"] for x in current)
            current = []
        current.append(w)
    if current:
        yield max(x["size"] for x in current), " ".join(x["text"] for x in current)


# --- DOCX --------------------------------------------------------------------------------------


def check_zip(path: Path, source: str, limits: FileLimits) -> None:
    """Refuse an archive whose declared uncompressed size is over the limit, before anything
    inflates it (zipfile itself stops reading a member at its declared size)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LoaderError(source, f"corrupt or unreadable DOCX: {exc}") from exc
    total = sum(i.file_size for i in infos)
    if total > limits.max_unpacked_bytes:
        raise LimitExceededError(
            f"the archive declares {total} bytes uncompressed, more than the limit of "
            f"{limits.max_unpacked_bytes}: skipped (a zip bomb?)"
        )


def load_docx(path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS) -> LoadedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph
    from lxml.etree import LxmlError

    check_zip(path, source, limits)
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, LxmlError) as exc:
        raise LoaderError(source, f"corrupt or unreadable DOCX: {exc}") from exc
    out: list[str] = []
    chars = 0
    for block in document.element.body.iterchildren():
        check_time()
        if chars > limits.max_chars:
            raise LimitExceededError(f"more than {limits.max_chars} characters of text: skipped")
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(block, document)
            text = para.text.strip()
            if not text:
                continue
            chars += len(text)
            style = (para.style.name if para.style is not None else "") or ""
            m = re.match(r"Heading (\d)", style)
            if style == "Title":
                out.append(f"# {text}")
            elif m:
                out.append(f"{'#' * min(int(m.group(1)), 6)} {text}")
            elif style.startswith("List"):
                out.append(f"- {text}")
            else:
                out.append(text)
        elif tag == "tbl":
            table = Table(block, document)
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells]
                chars += sum(len(c) for c in cells)
                out.append(" | ".join(c for c in cells if c))
    props = document.core_properties
    return _finish(source, "\n\n".join(out), props.title or None, props.language or None, path)


# --- JSON Lines --------------------------------------------------------------------------------

ID_FIELDS = ("doc_id", "id", "_id")


def iter_jsonl(
    path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS
) -> Iterator[LoadedDocument | LoaderError]:
    """One document per row, keeping the row's id. A bad row is reported, not fatal."""
    if path.stat().st_size > limits.max_bytes:
        raise LimitExceededError(f"larger than the limit of {limits.max_bytes} bytes: skipped")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            check_time()
            where = f"{source}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield LoaderError(where, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})")
                continue
            if not line.strip():
                continue
            if len(line) > limits.max_chars:
                yield LoaderError(where, f"row longer than {limits.max_chars} characters")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield LoaderError(where, f"invalid JSON: {exc.msg}")
                continue
            except RecursionError:
                yield LoaderError(where, "invalid JSON: nested too deeply")
                continue
            if not isinstance(row, dict):
                yield LoaderError(where, "row is not a JSON object")
                continue
            row_id = next((str(row[k]) for k in ID_FIELDS if row.get(k) not in (None, "")), None)
            if row_id is None:
                yield LoaderError(where, f"row has no id (one of {', '.join(ID_FIELDS)})")
                continue
            text = row.get("text") or row.get("content") or ""
            if not isinstance(text, str):
                yield LoaderError(where, "field 'text' is not a string")
                continue
            title = str(row.get("title") or "") or None
            if title and not _first_heading(text):
                text = f"# {title}\n\n{text}"
            try:
                yield _finish(
                    f"{source}#{row_id}",
                    text,
                    title or (text.strip().splitlines() or [row_id])[0][:120],
                    str(row.get("lang") or "") or None,
                    doc_id=row_id,
                    url=str(row.get("url") or row.get("link") or ""),
                )
            except LoaderError as exc:
                yield exc


# --- dispatch ----------------------------------------------------------------------------------

FileLoader = Callable[[Path, str, FileLimits], LoadedDocument]

LOADERS: dict[str, FileLoader] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}

SUPPORTED_SUFFIXES = frozenset([*LOADERS, ".jsonl"])


def load_file(
    path: Path, source: str, limits: FileLimits = DEFAULT_LIMITS
) -> list[LoadedDocument | LoaderError]:
    """Load one file into one or more documents (JSON Lines: one per row).

    Problems of the file (corrupt, empty, over a budget, unsafe) come back as LoaderErrors."""
    suffix = path.suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None and suffix != ".jsonl":
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        return [LoaderError(source, f"unsupported file type {suffix or '(none)'} ({supported})")]
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise LimitExceededError(
                f"{size} bytes, larger than the limit of {limits.max_bytes}: skipped"
            )
        if loader is None:
            return list(iter_jsonl(path, source, limits))
        if size == 0:
            return [LoaderError(source, "empty file")]
        doc = loader(path, source, limits)
        check_chars(doc.text, limits)
        return [doc]
    except LoaderError as exc:
        return [exc]
    except IngestError as exc:
        return [LoaderError(source, str(exc))]
    except OSError as exc:
        return [LoaderError(source, f"cannot read file: {exc.strerror or exc}")]
