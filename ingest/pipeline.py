"""Incremental ingest: list -> load -> chunk -> embed -> upsert, one corpus at a time.

Safe to interrupt and rerun:
- a document whose stored chunks all carry its current ``doc_hash`` and are complete is skipped
  without being parsed or embedded;
- a changed document is re-chunked; chunks whose embedded text is unchanged reuse their stored
  vectors; its new chunks are upserted first and only then are its stale chunks deleted, so a
  kill at any point leaves either the old or the new version plus leftovers that the next run
  recognises (mixed hashes, wrong count) and repairs;
- chunk ids are derived from (corpus, source, chunk index), so a rerun overwrites, never
  duplicates;
- sources that are no longer listed are removed, but only when the listing itself was complete.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gbg.settings import Settings
from ingest.chunking import Chunker
from ingest.embedders import Embedder, check_clearance
from ingest.errors import IngestError, LoaderError
from ingest.limits import FileLimits, check_time, time_budget
from ingest.loaders import (
    SUPPORTED_SUFFIXES,
    LoadedDocument,
    load_file,
    read_capped,
    resolve_inside,
)
from ingest.manifest import CorpusManifest, FileSource, SitemapSource, UrlListSource
from ingest.store import ChromaStore, CorpusCollection, SourceState, chunk_id, now_iso
from ingest.web import PoliteFetcher, document_from_fetch, manifest_hosts

PIPELINE_VERSION = "1"
log = logging.getLogger(__name__)


@dataclass
class CorpusReport:
    corpus: str
    documents: int = 0
    documents_changed: int = 0
    chunks_added: int = 0
    chunks_updated: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    embedded: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chunks_total: int = 0

    @property
    def ok_documents(self) -> int:
        return self.documents - len(self.errors)


@dataclass
class IngestReport:
    corpora: list[CorpusReport]
    seconds: float

    @property
    def errors(self) -> list[str]:
        return [e for c in self.corpora for e in c.errors]

    def total(self, attr: str) -> int:
        return sum(int(getattr(c, attr)) for c in self.corpora)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "corpora": [
                {**vars(c), "seconds": round(c.seconds, 3)}
                for c in self.corpora
            ],
        }


@dataclass
class _Pending:
    """One loaded document waiting for its vectors."""

    doc: LoadedDocument
    doc_hash: str
    state: SourceState | None
    ids: list[str]
    texts: list[str]  # stored document text (the chunk body)
    embed_texts: list[str]
    metadatas: list[dict[str, Any]]
    content_hashes: list[str]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_error(source: str, exc: Exception) -> LoaderError:
    """Whatever went wrong with one source, as that source's error."""
    if isinstance(exc, LoaderError):
        return exc
    if isinstance(exc, IngestError):
        return LoaderError(source, str(exc))
    reason = f"{type(exc).__name__}: {exc}"
    return LoaderError(source, f"could not be loaded: {reason[:300]}")


Progress = Callable[[str], None]


class Ingestor:
    """Ingests corpora into the store. Every dependency is a parameter."""

    def __init__(
        self,
        settings: Settings,
        store: ChromaStore,
        embedder: Embedder,
        fetcher: PoliteFetcher | None = None,
        limits: FileLimits | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits or settings.files
        self.store = store
        self.embedder = embedder
        self.fetcher = fetcher
        self.chunker = Chunker(
            settings.chunking.max_tokens, settings.chunking.overlap_tokens, embedder.count_tokens
        )
        self._signature = (
            f"v{PIPELINE_VERSION}|{embedder.name}|{settings.chunking.max_tokens}"
            f"|{settings.chunking.overlap_tokens}"
        )

    # --- listing ---------------------------------------------------------------------------

    def list_files(self, manifest: CorpusManifest, src: FileSource) -> list[Path]:
        root = manifest.root
        real_root = root.resolve()
        found: dict[str, Path] = {}
        for pattern in src.include:
            for p in sorted(root.glob(pattern)):
                rel = p.relative_to(root).as_posix()
                if p.name == "corpus.toml" or p.name.startswith("."):
                    continue
                if any(fnmatch.fnmatch(rel, ex) for ex in src.exclude):
                    continue
                # A folder inside the corpus is listed through its files; anything else (a
                # link out of the corpus, a special file) is listed so that it is reported.
                if p.is_dir() and p.resolve().is_relative_to(real_root):
                    continue
                found[rel] = p
        return [found[k] for k in sorted(found)]

    # --- one corpus ------------------------------------------------------------------------

    def ingest_corpus(
        self,
        manifest: CorpusManifest,
        rebuild: bool = False,
        on_total: Callable[[int], None] | None = None,
        on_advance: Progress | None = None,
    ) -> CorpusReport:
        started = time.perf_counter()
        report = CorpusReport(manifest.name)
        col = self.store.open_for_ingest(manifest, self.embedder.name, rebuild=rebuild)
        col.relabel(manifest)
        states = col.source_states()
        seen: set[str] = set()
        pending: list[_Pending] = []
        work, listing_complete = self._work(manifest, report)
        if on_total:
            on_total(len(work))
        # Not answered from while it changes: marked when the first change is about to be
        # written (an unchanged corpus stays ready through a rerun), a new one at once.
        marked = False

        def mark(done: int) -> None:
            nonlocal marked
            marked = True
            col.mark_ingesting(manifest, self.embedder.name, done, len(work))

        if col.count() == 0:
            mark(0)
        for done, (kind, item) in enumerate(work, start=1):
            pending.extend(self._load_and_chunk(manifest, kind, item, states, report, seen))
            if sum(len(p.ids) for p in pending) >= self.settings.embedder.batch_size * 2:
                mark(done - 1)
                self._flush(col, pending, report)
                pending = []
            if on_advance:
                on_advance(str(item))
        if pending and not marked:
            mark(len(work))
        self._flush(col, pending, report)

        if listing_complete:
            gone = sorted(name for name in states if name not in seen)
            stale = [cid for name in gone for cid in states[name].ids]
            if stale and not marked:
                mark(len(work))
            col.delete(stale)
            report.chunks_removed += len(stale)
            for name in gone:
                log.info("removed %s: no longer in the corpus", name)
        else:
            log.warning("%s: listing incomplete, nothing removed this run", manifest.name)
        report.chunks_total = col.count()
        report.seconds = time.perf_counter() - started
        col.set_corpus_metadata(
            manifest,
            self.embedder.name,
            last_ingest=now_iso(),
            documents=report.ok_documents,
            chunks=report.chunks_total,
        )
        return report

    def _work(self, manifest: CorpusManifest, report: CorpusReport
              ) -> tuple[list[tuple[str, Any]], bool]:
        """Every file and page of the corpus, and whether the listing is complete (a sitemap
        that could not be read means nothing may be removed this run)."""
        work: list[tuple[str, Any]] = []
        complete = True
        for src in manifest.sources:
            if isinstance(src, FileSource):
                work.extend(("file", p) for p in self.list_files(manifest, src))
            elif isinstance(src, UrlListSource):
                work.extend(("url", str(u)) for u in src.urls)
            elif isinstance(src, SitemapSource):
                try:
                    fetcher = self._fetcher()
                    limit = min(src.max_pages or self.settings.web.max_pages,
                                self.settings.web.max_pages)
                    work.extend(("url", u) for u in fetcher.sitemap_urls(
                        str(src.url), src.include, limit, hosts=manifest_hosts(manifest)))
                except LoaderError as exc:
                    report.errors.append(str(exc))
                    complete = False
        return work, complete

    def _fetcher(self) -> PoliteFetcher:
        if self.fetcher is None:
            self.fetcher = PoliteFetcher(self.settings.web)
        return self.fetcher

    def _load_and_chunk(
        self,
        manifest: CorpusManifest,
        kind: str,
        item: Any,
        states: dict[str, SourceState],
        report: CorpusReport,
        seen: set[str],
    ) -> list[_Pending]:
        """One work item's changed documents, chunked. Whatever goes wrong with it (bad bytes,
        a bomb, a parser's bug, a budget) is its own reported error, never the run's; each
        document gets the time budget anew."""

        def failed(err: LoaderError) -> None:
            report.documents += 1
            report.errors.append(str(err))
            seen.add(err.source)  # keep what an earlier run stored for it

        label = item if kind == "url" else item.relative_to(manifest.root).as_posix()
        out: list[_Pending] = []
        try:
            with time_budget(self.limits.max_seconds) as budget:
                for result in self._load(manifest, kind, item, states):
                    if isinstance(result, LoaderError):
                        failed(result)
                        budget.restart()
                        continue
                    source, doc, doc_hash, extra = result
                    state = states.get(source)
                    if doc is None:  # unchanged
                        report.documents += 1
                        seen.add(source)
                        report.chunks_unchanged += len(state.ids) if state else 0
                        continue
                    try:
                        prepared = self._prepare(manifest, doc, doc_hash, state, extra)
                        check_time()
                    except Exception as exc:
                        failed(_file_error(source, exc))
                        continue
                    finally:
                        budget.restart()
                    report.documents += 1
                    seen.add(source)
                    report.documents_changed += 1
                    out.append(prepared)
        except Exception as exc:
            failed(_file_error(label, exc))
        return out

    def _load(
        self, manifest: CorpusManifest, kind: str, item: Any, states: dict[str, SourceState]
    ) -> Iterator[LoaderError | tuple[str, LoadedDocument | None, str, dict[str, str]]]:
        """Yield (source, document or None when unchanged, doc_hash, extra metadata)."""
        if kind == "file":
            listed: Path = item
            source = listed.relative_to(manifest.root).as_posix()
            path = resolve_inside(manifest.root, listed, source)  # links may not leave the corpus
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                suffix = path.suffix or "(none)"
                yield LoaderError(source, f"unsupported file type {suffix}: skipped")
                return
            try:
                raw = read_capped(path, self.limits.max_bytes)
            except OSError as exc:
                yield LoaderError(source, f"cannot read file: {exc.strerror or exc}")
                return
            if path.suffix.lower() == ".jsonl":
                # Rows are documents of their own; hashing each row keeps unchanged rows cheap.
                for doc in load_file(path, source, self.limits):
                    if isinstance(doc, LoaderError):
                        yield doc
                        continue
                    doc_hash = _sha(f"{self._signature}|{doc.title}|{doc.text}".encode())
                    st = states.get(doc.source)
                    unchanged = st is not None and st.is_complete(doc_hash)
                    yield doc.source, None if unchanged else doc, doc_hash, {}
                return
            doc_hash = _sha(self._signature.encode() + b"|" + raw)
            st = states.get(source)
            if st is not None and st.is_complete(doc_hash):
                yield source, None, doc_hash, {}
                return
            docs = load_file(path, source, self.limits)
            for d in docs:
                if isinstance(d, LoaderError):
                    yield d
                else:
                    yield source, d, doc_hash, {}
            return
        url: str = item
        st = states.get(url)
        try:
            fetched = self._fetcher().fetch(
                url,
                etag=st.etag if st else "",
                last_modified=st.last_modified if st else "",
                hosts=manifest_hosts(manifest),
            )
            if fetched.not_modified and st is not None:
                yield url, None, next(iter(st.doc_hashes)), {}
                return
            doc_hash = _sha(f"{self._signature}|".encode() + fetched.body)
            extra = {"etag": fetched.etag, "last_modified": fetched.last_modified}
            if st is not None and st.is_complete(doc_hash):
                # Same bytes (server without validators): keep vectors, refresh validators.
                yield url, None, doc_hash, extra
                return
            yield url, document_from_fetch(fetched, self.limits), doc_hash, extra
        except LoaderError as exc:
            yield LoaderError(url, exc.message)

    def _prepare(
        self,
        manifest: CorpusManifest,
        doc: LoadedDocument,
        doc_hash: str,
        state: SourceState | None,
        extra: dict[str, str],
    ) -> _Pending:
        chunks = self.chunker.chunk(doc.text, doc.title, doc.lang)
        n = len(chunks)
        ingested_at = now_iso()
        p = _Pending(doc, doc_hash, state, [], [], [], [], [])
        for ch in chunks:
            embed_text = ch.embed_text(doc.title)
            chash = _sha(embed_text.encode())[:32]
            p.ids.append(chunk_id(manifest.name, doc.source, ch.index))
            p.texts.append(ch.text)
            p.embed_texts.append(embed_text)
            p.content_hashes.append(chash)
            p.metadatas.append(
                {
                    "corpus": manifest.name,
                    "audience": str(manifest.audience),
                    "sensitivity": str(manifest.sensitivity),
                    "source": doc.source,
                    "url": doc.url,
                    "doc_id": doc.doc_id,
                    "title": doc.title,
                    "section": ch.section,
                    "lang": doc.lang,
                    "chunk_index": ch.index,
                    "n_chunks": n,
                    "content_hash": chash,
                    "doc_hash": doc_hash,
                    "ingested_at": ingested_at,
                    "etag": extra.get("etag", ""),
                    "last_modified": extra.get("last_modified", ""),
                }
            )
        return p

    def _flush(self, col: CorpusCollection, pending: list[_Pending], report: CorpusReport) -> None:
        if not pending:
            return
        # Vectors: reuse a stored one when the embedded text is byte-identical.
        reuse_ids: dict[tuple[int, int], str] = {}
        to_embed: list[tuple[int, int]] = []
        for di, p in enumerate(pending):
            for ci, chash in enumerate(p.content_hashes):
                old = p.state.content_hash_to_id.get(chash) if p.state else None
                if old:
                    reuse_ids[(di, ci)] = old
                else:
                    to_embed.append((di, ci))
        stored = col.embeddings_for(sorted(set(reuse_ids.values())))
        vectors: dict[tuple[int, int], np.ndarray] = {}
        for key, old in reuse_ids.items():
            if old in stored:
                vectors[key] = stored[old]
            else:
                to_embed.append(key)
        bs = self.settings.embedder.batch_size
        for start in range(0, len(to_embed), bs):
            keys = to_embed[start : start + bs]
            embs = self.embedder.embed_passages([pending[d].embed_texts[c] for d, c in keys])
            for key, vec in zip(keys, embs, strict=True):
                vectors[key] = vec
        report.embedded += len(to_embed)

        # One write for every document of the batch (Chroma's per-call cost dominates a warm
        # cache), then each document's stale chunks: a document's new chunks are stored before
        # its old ones go, so an interrupted run leaves nothing missing.
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict[str, Any]] = []
        rows: list[np.ndarray] = []
        for di, p in enumerate(pending):
            old_ids = p.state.content_hash_to_id.items() if p.state else []
            old_hash_by_id = {v: k for k, v in old_ids}
            for cid, chash in zip(p.ids, p.content_hashes, strict=True):
                if cid not in old_hash_by_id:
                    report.chunks_added += 1
                elif old_hash_by_id[cid] == chash:
                    report.chunks_unchanged += 1
                else:
                    report.chunks_updated += 1
            ids += p.ids
            texts += p.texts
            metas += p.metadatas
            rows += [vectors[(di, ci)] for ci in range(len(p.ids))]
        if ids:
            col.upsert(ids, np.stack(rows), texts, metas)
        for p in pending:
            stale = sorted((p.state.ids if p.state else set()) - set(p.ids))
            col.delete(stale)
            report.chunks_removed += len(stale)
            log.info("stored %s: %d chunks, %d stale removed", p.doc.source, len(p.ids), len(stale))


def ingest_all(
    settings: Settings,
    manifests: list[CorpusManifest],
    store: ChromaStore,
    embedder: Embedder,
    rebuild: bool = False,
    progress: Any | None = None,
    limits: FileLimits | None = None,
) -> IngestReport:
    """Ingest several corpora; ``progress`` is an optional rich Progress. A cloud embedding
    endpoint is refused before anything is read when a corpus is not public."""
    started = time.perf_counter()
    check_clearance(embedder, {m.name: m.sensitivity.value for m in manifests}, questions=False)
    ingestor = Ingestor(settings, store, embedder, limits=limits)
    reports = []
    try:
        for manifest in manifests:
            # A sensitive corpus's vectors are not written to the embedding cache.
            read_only = getattr(embedder, "read_only", None)
            ingestor.embedder = read_only() if (
                manifest.sensitivity == "sensitive" and read_only is not None) else embedder
            task = progress.add_task(manifest.name, total=None) if progress else None

            def on_total(n: int, task: Any = task) -> None:
                if progress is not None:
                    progress.update(task, total=n)

            def on_advance(_item: str, task: Any = task) -> None:
                if progress is not None:
                    progress.advance(task)

            reports.append(
                ingestor.ingest_corpus(manifest, rebuild, on_total=on_total, on_advance=on_advance)
            )
    finally:
        if ingestor.fetcher is not None:
            ingestor.fetcher.close()
    return IngestReport(reports, time.perf_counter() - started)
