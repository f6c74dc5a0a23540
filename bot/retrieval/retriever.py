"""Hybrid retrieval with role-based access.

Dense search runs in the Chroma collections the role may read; BM25 runs over an index built from
exactly those collections (one index per role, so even term statistics never cross a role
boundary); the two ranked lists are fused with weighted reciprocal rank fusion; near-duplicates are
dropped; optionally the neighbouring chunks of a hit are added. Access is checked three times: the
collections searched, a per-chunk label check on every hit, and every returned chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from bot.access import Role, can_read, readable_audiences
from bot.retrieval.lexical import LexicalIndex, words
from gbg.settings import RetrievalSettings
from ingest.embedders import Embedder
from ingest.errors import StoreUnavailableError
from ingest.store import ChromaStore, CorpusCollection

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "bm25"]


class RetrievalError(Exception):
    """Base class for retrieval errors the API turns into 4xx/503."""


class CorpusNotPermittedError(RetrievalError):
    def __init__(self, corpora: Sequence[str], role: Role) -> None:
        self.corpora = list(corpora)
        self.role = role
        super().__init__(f"role {role.value!r} may not read corpus {', '.join(corpora)}")


class UnknownCorpusError(RetrievalError):
    def __init__(self, corpora: Sequence[str], known: Sequence[str]) -> None:
        self.corpora = list(corpora)
        super().__init__(
            f"unknown corpus {', '.join(corpora)} (known: {', '.join(known) or 'none'})"
        )


@dataclass(frozen=True)
class RetrievedChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float  # fused score (higher is better)
    dense: float | None = None  # cosine similarity, when dense search found it
    bm25: float | None = None
    rank: int = 0
    neighbor_of: str | None = None

    @property
    def corpus(self) -> str:
        return str(self.metadata.get("corpus", ""))

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))


@dataclass
class _RoleIndex:
    signature: tuple[tuple[str, int, str], ...]
    ids: list[str]
    texts: list[str]
    metas: list[dict[str, Any]]
    lexical: LexicalIndex
    corpus_of: np.ndarray  # corpus name per position
    lang_of: np.ndarray
    position: dict[str, int] = field(default_factory=dict)
    _masks: dict[tuple[tuple[str, ...], str | None], np.ndarray] = field(default_factory=dict)

    def mask(self, corpora: Sequence[str], lang: str | None) -> np.ndarray | None:
        """Positions allowed for these corpora (and language), computed once per combination;
        None when every position is allowed."""
        key = (tuple(sorted(corpora)), lang)
        if key not in self._masks:
            m = np.isin(self.corpus_of, list(key[0]))
            if lang:
                m &= self.lang_of == lang
            self._masks[key] = m
        m = self._masks[key]
        return None if m.all() else m


def rrf(
    rankings: Sequence[tuple[Sequence[str], float]], k: int = 60
) -> dict[str, float]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank), ranks from 1."""
    fused: dict[str, float] = {}
    for ranking, weight in rankings:
        if weight <= 0:
            continue
        for r, cid in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + weight / (k + r)
    return fused


def zscore_fusion(
    lists: Sequence[tuple[dict[str, float], float]],
) -> dict[str, float]:
    """Weighted sum of z-normalised scores; a candidate missing from a list gets that list's
    minimum, so one strong signal is not cancelled by the other's silence."""
    fused: dict[str, float] = {}
    keys = {k for scores, _ in lists for k in scores}
    for scores, weight in lists:
        if weight <= 0 or not scores:
            continue
        v = np.array(list(scores.values()), dtype=np.float64)
        mu, sd = float(v.mean()), float(v.std()) or 1.0
        floor = (float(v.min()) - mu) / sd
        for k in keys:
            z = (scores[k] - mu) / sd if k in scores else floor
            fused[k] = fused.get(k, 0.0) + weight * z
    return fused


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


class HybridRetriever:
    def __init__(
        self, store: ChromaStore, embedder: Embedder, settings: RetrievalSettings | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or RetrievalSettings()
        self._indexes: dict[Role, _RoleIndex] = {}
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()  # one index build at a time (CPU and memory)
        self._building: set[Role] = set()
        self._snap: dict[str, tuple[CorpusCollection, dict[str, Any], int]] = {}
        self._snap_at = -1e9
        self._snap_failed_at = -1e9
        self._snap_lock = threading.Lock()

    # --- collections and indexes -----------------------------------------------------------

    def _snapshot(self, force: bool = False) -> dict[str, tuple[CorpusCollection, dict[str, Any], int]]:
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
                    snap = {}
                    for name in self.store.collection_names():
                        col = self.store.get(name)
                        if col is not None:
                            snap[name] = (col, col.metadata, col.count())
                except Exception:
                    self._snap_failed_at = time.monotonic()
                    raise
                self._snap, self._snap_at = snap, time.monotonic()
            return self._snap

    def refresh(self) -> None:
        self._snapshot(force=True)

    def collections_for(self, role: Role) -> dict[str, CorpusCollection]:
        allowed = {str(a) for a in readable_audiences(role)}
        return {
            name: col
            for name, (col, meta, _) in self._snapshot().items()
            if str(meta.get("audience")) in allowed
        }

    def corpora(self) -> dict[str, dict[str, Any]]:
        """Every corpus with its labels and size (not filtered by role)."""
        return {name: {**meta, "chunks": n} for name, (_, meta, n) in self._snapshot().items()}

    def _signature(self, cols: dict[str, CorpusCollection]) -> tuple[tuple[str, int, str], ...]:
        snap = self._snapshot()
        return tuple(  # a collection dropped since ``cols`` was read counts as changed
            (n, snap[n][2], str(snap[n][1].get("last_ingest", ""))) if n in snap else (n, -1, "")
            for n in sorted(cols)
        )

    def index_for(self, role: Role, wait: bool = True) -> _RoleIndex:
        """The role's BM25 index, rebuilt only when one of its collections changed.

        With ``wait=False`` (what a request uses) a changed collection does not block the
        request: the previous index keeps serving while a background thread builds the new one
        (a 100k-chunk index takes tens of seconds). Serving it is safe for access control: the
        caller masks it to the corpora the role may read *now*, and ``retrieve`` checks every
        hit again. Only a role's very first index is built in the request."""
        with self._lock:
            current = self._indexes.get(role)
            cols = self.collections_for(role)
            sig = self._signature(cols)
            if current is not None and current.signature == sig:
                return current
            if current is not None and not wait and self.settings.rebuild_in_background:
                if role not in self._building:
                    self._building.add(role)
                    threading.Thread(target=self._rebuild, args=(role,), daemon=True,
                                     name=f"bm25-{role.value}").start()
                return current
        return self._rebuild(role)

    def _rebuild(self, role: Role) -> _RoleIndex:
        try:
            with self._build_lock:
                with self._lock:
                    cols = self.collections_for(role)
                    sig = self._signature(cols)
                    current = self._indexes.get(role)
                    if current is not None and current.signature == sig:
                        return current
                idx = self._build_index(role, cols, sig)
                with self._lock:
                    self._indexes[role] = idx
                return idx
        finally:
            with self._lock:
                self._building.discard(role)

    def _build_index(self, role: Role, cols: dict[str, CorpusCollection],
                     sig: tuple[tuple[str, int, str], ...]) -> _RoleIndex:
        started = time.perf_counter()
        ids, texts, metas = [], [], []
        for _, col in sorted(cols.items()):
            for cid, meta, doc, _ in col.iter_records(include=["metadatas", "documents"]):
                if not can_read(role, str(meta.get("audience"))):
                    continue
                ids.append(cid)
                metas.append(meta)
                texts.append(f"{meta.get('section', '')}\n{doc or ''}")
        lexical = LexicalIndex(texts, [str(m.get("lang", "sv")) for m in metas])
        idx = _RoleIndex(
            signature=sig,
            ids=ids,
            texts=[t.split("\n", 1)[1] for t in texts],
            metas=metas,
            lexical=lexical,
            corpus_of=np.array([str(m.get("corpus", "")) for m in metas], dtype=object),
            lang_of=np.array([str(m.get("lang", "")) for m in metas], dtype=object),
            position={cid: i for i, cid in enumerate(ids)},
        )
        log.info(
            "BM25 index for role %s: %d chunks in %.2f s", role, len(ids),
            time.perf_counter() - started,
        )
        return idx

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
        denied = [c for c in corpora if c not in readable]
        if denied:
            raise CorpusNotPermittedError(denied, role)
        return sorted(set(corpora))

    def dense_search(
        self, query_vec: np.ndarray, role: Role, corpora: list[str], n: int, lang: str | None
    ) -> list[tuple[str, float, str, dict[str, Any]]]:
        """Nearest chunks in the role's collections. No Chroma ``where`` filter: a metadata
        pre-filter costs a scan of the metadata table per query (measured 420 ms at 100k chunks
        against 5 ms without). Each collection holds one corpus, whose audience was checked when
        the role's collections were chosen; every chunk's own labels are checked again here and
        in ``retrieve`` (fail closed), and a language filter is applied to an over-fetch."""
        hits: list[tuple[str, float, str, dict[str, Any]]] = []
        snap = self._snapshot()
        fetch = n * 4 if lang else n
        for name in corpora:
            if name not in snap or snap[name][2] == 0:
                continue
            col, _, count = snap[name]
            res = col.raw.query(
                query_embeddings=[query_vec],
                n_results=min(fetch, count),
                include=["documents", "metadatas", "distances"],
            )
            for cid, doc, meta, dist in zip(
                res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0],
                strict=True,
            ):
                meta = dict(meta or {})
                if not can_read(role, str(meta.get("audience"))):
                    log.error("dense search dropped chunk %s: audience %s", cid,
                              meta.get("audience"))
                    continue
                if lang and meta.get("lang") != lang:
                    continue
                hits.append((cid, 1.0 - float(dist), doc or "", meta))
        hits.sort(key=lambda h: -h[1])
        return hits[:n]

    def retrieve(
        self,
        query: str,
        role: Role = Role.public,
        corpora: Sequence[str] | None = None,
        lang: str | None = None,
        k: int | None = None,
        mode: Mode | None = None,
        neighbors: int | None = None,
        query_vec: np.ndarray | None = None,
        fusion: Literal["rrf", "zscore"] | None = None,
    ) -> list[RetrievedChunk]:
        """Top ``k`` chunks for ``query`` from the corpora ``role`` may read.

        ``query_vec`` lets a caller that embeds many queries in a batch pass the vector in.
        """
        s = self.settings
        k = k or s.k
        mode = mode or s.mode
        neighbors = s.neighbors if neighbors is None else neighbors
        names = self._resolve_corpora(role, corpora)
        if not names or not query.strip():
            return []
        n = max(s.candidates, k)

        by_id: dict[str, RetrievedChunk] = {}
        dense_rank: list[str] = []
        bm25_rank: list[str] = []
        if mode in ("hybrid", "dense"):
            qv = self.embedder.embed_query_vector(query) if query_vec is None else query_vec
            for cid, sim, doc, meta in self.dense_search(qv, role, names, n, lang):
                by_id[cid] = RetrievedChunk(cid, doc, meta, 0.0, dense=sim)
                dense_rank.append(cid)
        if mode in ("hybrid", "bm25"):
            idx = self.index_for(role, wait=False)
            for pos, score in idx.lexical.top(query, n, idx.mask(names, lang)):
                cid = idx.ids[pos]
                prev = by_id.get(cid)
                by_id[cid] = (
                    replace(prev, bm25=score)
                    if prev
                    else RetrievedChunk(cid, idx.texts[pos], idx.metas[pos], 0.0, bm25=score)
                )
                bm25_rank.append(cid)

        if mode == "dense":
            fused = {cid: by_id[cid].dense or 0.0 for cid in dense_rank}
        elif mode == "bm25":
            fused = {cid: by_id[cid].bm25 or 0.0 for cid in bm25_rank}
        elif (fusion or s.fusion) == "zscore":
            fused = zscore_fusion([
                ({c: by_id[c].dense or 0.0 for c in dense_rank}, s.dense_weight),
                ({c: by_id[c].bm25 or 0.0 for c in bm25_rank}, s.bm25_weight),
            ])
        else:
            fused = rrf([(dense_rank, s.dense_weight), (bm25_rank, s.bm25_weight)], s.rrf_k)
        ordered = sorted(fused, key=lambda c: -fused[c])

        out: list[RetrievedChunk] = []
        kept_tokens: list[set[str]] = []
        labels = {n: meta for n, (_, meta, _) in self._snapshot().items()}
        for cid in ordered:
            ch = by_id[cid]
            # The corpus's labels as they are now, not as a (possibly stale) BM25 index kept
            # them: a raised sensitivity routes this request by the new level at once.
            current = labels.get(ch.corpus)
            if current is not None:
                for key in ("audience", "sensitivity"):
                    if key in current and ch.metadata.get(key) != current[key]:
                        ch = replace(ch, metadata={**ch.metadata, key: current[key]})
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
        if neighbors:
            out = self._expand(out, role, neighbors)
        return out

    def _expand(self, hits: list[RetrievedChunk], role: Role, width: int) -> list[RetrievedChunk]:
        """Add the chunks just before and after each hit from the same document."""
        from ingest.pipeline import chunk_id

        have = {h.id for h in hits}
        out: list[RetrievedChunk] = []
        for h in hits:
            out.append(h)
            idx = int(h.metadata.get("chunk_index", 0))
            wanted = [
                chunk_id(h.corpus, h.source, i)
                for i in range(idx - width, idx + width + 1)
                if i >= 0 and i != idx
            ]
            entry = self._snapshot().get(h.corpus)
            if entry is None:
                continue
            col = entry[0]
            missing = [w for w in wanted if w not in have]
            if not missing:
                continue
            got = col.raw.get(ids=missing, include=["documents", "metadatas"])
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                if can_read(role, str((meta or {}).get("audience"))):
                    have.add(cid)
                    out.append(RetrievedChunk(cid, doc or "", dict(meta or {}), h.score * 0.5,
                                              rank=h.rank, neighbor_of=h.id))
        return out
