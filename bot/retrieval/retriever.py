"""Hybrid retrieval with role-based access.

Dense search runs in the Chroma collections the role may read; BM25 runs over the role's own
index (``bot.retrieval.index``); the two ranked lists are fused (``bot.retrieval.fusion``);
near-duplicates are dropped; optionally the neighbouring chunks of a hit are added. Access is
checked three times: the collections searched, a per-chunk label check on every hit, and every
returned chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from bot.retrieval.fusion import jaccard, rrf, zscore_fusion
from bot.retrieval.index import RoleIndex, RoleIndexes, Signature
from bot.retrieval.lexical import words
from bot.retrieval.types import (
    CorpusNotPermittedError,
    CorpusNotReadyError,
    RetrievalOptions,
    RetrievedChunk,
    UnknownCorpusError,
)
from gbg.labels import Role, can_read, readable_audiences
from gbg.settings import RetrievalSettings
from ingest.embedders import Embedder
from ingest.errors import StoreUnavailableError
from ingest.store import INGESTING, ChromaStore, CorpusCollection, CorpusSnapshot, chunk_id

log = logging.getLogger(__name__)


class HybridRetriever:
    def __init__(
        self, store: ChromaStore, embedder: Embedder, settings: RetrievalSettings | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or RetrievalSettings()
        self._indexes = RoleIndexes(self._readable, self.settings.rebuild_in_background)
        self._snap: dict[str, CorpusSnapshot] = {}
        self._snap_at = -1e9
        self._snap_failed_at = -1e9
        self._snap_lock = threading.Lock()

    # --- collections and indexes -----------------------------------------------------------

    def _snapshot(self, force: bool = False) -> dict[str, CorpusSnapshot]:
        """Collections with their labels and sizes, re-read at most every ``refresh_s``.

        When the store is down or hung, a re-read fails after the client's timeout; requests
        that waited for the lock meanwhile fail at once instead of each waiting out its own
        timeout in turn (which made the n-th concurrent request take n times the timeout)."""
        waiting_since = time.monotonic()
        with self._snap_lock:
            if force or time.monotonic() - self._snap_at >= self.settings.refresh_s:
                if self._snap_failed_at >= waiting_since:
                    raise StoreUnavailableError(
                        "the document store did not answer a moment ago; not asking it again yet"
                    )
                try:
                    snap = self.store.snapshot()
                except Exception:
                    self._snap_failed_at = time.monotonic()
                    raise
                self._snap, self._snap_at = snap, time.monotonic()
            return self._snap

    def refresh(self) -> None:
        self._snapshot(force=True)

    def collections_for(self, role: Role) -> dict[str, CorpusCollection]:
        """The role's corpora that are ready: one still being ingested is not answered from."""
        allowed = {str(a) for a in readable_audiences(role)}
        return {
            name: entry.collection
            for name, entry in self._snapshot().items()
            if str(entry.metadata.get("audience")) in allowed
            and entry.metadata.get("state") != INGESTING
        }

    def corpora(self) -> dict[str, dict[str, Any]]:
        """Every corpus with its labels and size (not filtered by role)."""
        return {name: {**e.metadata, "chunks": e.count} for name, e in self._snapshot().items()}

    def corpus_texts(self, name: str) -> list[str]:
        """Title and text of every chunk of a corpus (for the personal-data detector)."""
        entry = self._snapshot().get(name)
        if entry is None:
            return []
        return [f"{c.metadata.get('title', '')}\n{c.text}" for c in entry.collection.iter_chunks()]

    def _readable(self, role: Role) -> tuple[dict[str, CorpusCollection], Signature]:
        cols = self.collections_for(role)
        snap = self._snapshot()
        sig = tuple(  # a collection dropped since ``cols`` was read counts as changed
            (n, snap[n].count, str(snap[n].metadata.get("last_ingest", "")))
            if n in snap else (n, -1, "")
            for n in sorted(cols)
        )
        return cols, sig

    def index_for(self, role: Role, wait: bool = True) -> RoleIndex:
        """The role's BM25 index (see ``RoleIndexes.get``)."""
        return self._indexes.get(role, wait)

    # --- search ----------------------------------------------------------------------------

    def _resolve_corpora(self, role: Role, corpora: Sequence[str] | None) -> list[str]:
        readable = self.collections_for(role)
        if not corpora:
            return sorted(readable)
        known = set(self._snapshot())
        unknown = [c for c in corpora if c not in known]
        if unknown:
            # Do not reveal which corpora exist beyond what the role may read.
            raise UnknownCorpusError(unknown, sorted(readable))
        snap = self._snapshot()
        metas = {c: snap[c].metadata for c in corpora if c in snap}
        busy = [c for c, m in metas.items() if c not in readable
                and m.get("state") == INGESTING and can_read(role, str(m.get("audience")))]
        if busy:
            raise CorpusNotReadyError(busy, [_progress(metas[c]) for c in busy])
        denied = [c for c in corpora if c not in readable]
        if denied:
            raise CorpusNotPermittedError(denied, role)
        return sorted(set(corpora))

    def dense_search(
        self, query_vec: np.ndarray, role: Role, corpora: list[str], n: int, lang: str | None
    ) -> list[RetrievedChunk]:
        """Nearest chunks in the role's collections, most similar first. Each collection holds
        one corpus, whose audience was checked when the role's collections were chosen; every
        chunk's own labels are checked again here and in ``retrieve`` (fail closed), and a
        language filter is applied to an over-fetch."""
        hits: list[RetrievedChunk] = []
        snap = self._snapshot()
        fetch = n * 4 if lang else n
        for name in corpora:
            if name not in snap or snap[name].count == 0:
                continue
            for ch in snap[name].collection.nearest(query_vec, min(fetch, snap[name].count)):
                if not can_read(role, str(ch.metadata.get("audience"))):
                    log.error("dense search dropped chunk %s: audience %s", ch.id,
                              ch.metadata.get("audience"))
                    continue
                if lang and ch.metadata.get("lang") != lang:
                    continue
                hits.append(RetrievedChunk(ch.id, ch.text, ch.metadata, 0.0, dense=ch.similarity))
        hits.sort(key=lambda h: -(h.dense or 0.0))
        return hits[:n]

    def _candidates(
        self, query: str, role: Role, names: list[str], n: int, opts: RetrievalOptions,
        mode: str,
    ) -> tuple[dict[str, RetrievedChunk], list[str], list[str]]:
        """Dense and BM25 candidates by id, with each list's ranking."""
        by_id: dict[str, RetrievedChunk] = {}
        dense_rank: list[str] = []
        bm25_rank: list[str] = []
        if mode in ("hybrid", "dense"):
            qv = self.embedder.embed_query_vector(query) if opts.query_vec is None \
                else opts.query_vec
            for hit in self.dense_search(qv, role, names, n, opts.lang):
                by_id[hit.id] = hit
                dense_rank.append(hit.id)
        if mode in ("hybrid", "bm25"):
            idx = self.index_for(role, wait=False)
            for pos, score in idx.lexical.top(query, n, idx.mask(names, opts.lang)):
                cid = idx.ids[pos]
                prev = by_id.get(cid)
                by_id[cid] = (
                    replace(prev, bm25=score)
                    if prev
                    else RetrievedChunk(cid, idx.texts[pos], idx.metas[pos], 0.0, bm25=score)
                )
                bm25_rank.append(cid)
        return by_id, dense_rank, bm25_rank

    def _fuse(self, by_id: dict[str, RetrievedChunk], dense_rank: list[str],
              bm25_rank: list[str], mode: str, fusion: str) -> dict[str, float]:
        s = self.settings
        if mode == "dense":
            return {cid: by_id[cid].dense or 0.0 for cid in dense_rank}
        if mode == "bm25":
            return {cid: by_id[cid].bm25 or 0.0 for cid in bm25_rank}
        if fusion == "zscore":
            return zscore_fusion([
                ({c: by_id[c].dense or 0.0 for c in dense_rank}, s.dense_weight),
                ({c: by_id[c].bm25 or 0.0 for c in bm25_rank}, s.bm25_weight),
            ])
        return rrf([(dense_rank, s.dense_weight), (bm25_rank, s.bm25_weight)], s.rrf_k)

    def _with_current_labels(self, ch: RetrievedChunk, labels: dict[str, Any] | None
                             ) -> RetrievedChunk:
        """The corpus's labels as they are now, not as a (possibly stale) BM25 index kept
        them: a raised sensitivity routes this request by the new level at once."""
        if labels is None:
            return ch
        changed: dict[str, Any] = {k: labels[k] for k in ("audience", "sensitivity")
                   if k in labels and ch.metadata.get(k) != labels[k]}
        return replace(ch, metadata={**ch.metadata, **changed}) if changed else ch

    def retrieve(
        self, query: str, role: Role = Role.public, options: RetrievalOptions | None = None
    ) -> list[RetrievedChunk]:
        """Top ``k`` chunks for ``query`` from the corpora ``role`` may read."""
        s = self.settings
        opts = options or RetrievalOptions()
        k = opts.k or s.k
        names = self._resolve_corpora(role, opts.corpora)
        if not names or not query.strip():
            return []
        mode = opts.mode or s.mode
        by_id, dense_rank, bm25_rank = self._candidates(
            query, role, names, max(s.candidates, k), opts, mode)
        fused = self._fuse(by_id, dense_rank, bm25_rank, mode, opts.fusion or s.fusion)

        out: list[RetrievedChunk] = []
        kept_tokens: list[set[str]] = []
        snap = self._snapshot()
        for cid in sorted(fused, key=lambda c: -fused[c]):
            ch = by_id[cid]
            entry = snap.get(ch.corpus)
            ch = self._with_current_labels(ch, entry.metadata if entry else None)
            if not can_read(role, str(ch.metadata.get("audience"))) or ch.corpus not in names:
                log.error("access check dropped chunk %s of corpus %s", cid, ch.corpus)
                continue
            toks = set(words(ch.text))
            if any(jaccard(toks, t) >= s.dedupe_threshold for t in kept_tokens):
                continue
            kept_tokens.append(toks)
            out.append(replace(ch, score=fused[cid], rank=len(out) + 1))
            if len(out) >= k:
                break
        neighbors = s.neighbors if opts.neighbors is None else opts.neighbors
        return self._expand(out, role, neighbors) if neighbors else out

    def _expand(self, hits: list[RetrievedChunk], role: Role, width: int) -> list[RetrievedChunk]:
        """Add the chunks just before and after each hit from the same document."""
        have = {h.id for h in hits}
        out: list[RetrievedChunk] = []
        snap = self._snapshot()
        for h in hits:
            out.append(h)
            idx = int(h.metadata.get("chunk_index", 0))
            missing = [
                cid for i in range(idx - width, idx + width + 1)
                if i >= 0 and i != idx
                and (cid := chunk_id(h.corpus, h.source, i)) not in have
            ]
            entry = snap.get(h.corpus)
            if entry is None or not missing:
                continue
            for ch in entry.collection.chunks(missing):
                if can_read(role, str(ch.metadata.get("audience"))):
                    have.add(ch.id)
                    out.append(RetrievedChunk(ch.id, ch.text, ch.metadata, h.score * 0.5,
                                              rank=h.rank, neighbor_of=h.id))
        return out


def _progress(meta: dict[str, Any]) -> str:
    done, total = meta.get("progress_done"), meta.get("progress_total")
    return f"{done} of {total} documents" if isinstance(total, int) and total >= 0 else "started"
