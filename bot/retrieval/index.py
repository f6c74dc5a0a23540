"""The BM25 side of retrieval: one lexical index per role, built from exactly the collections
that role may read (so even term statistics never cross a role boundary) and rebuilt when one of
them changes; while a new one is built in the background the previous one keeps serving."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.retrieval.lexical import LexicalIndex
from gbg.labels import Role, can_read
from ingest.store import CorpusCollection

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, str], ...]


@dataclass
class RoleIndex:
    signature: Signature
    ids: list[str]
    texts: list[str]
    metas: list[dict[str, Any]]
    lexical: LexicalIndex
    corpus_of: np.ndarray  # corpus name per position
    lang_of: np.ndarray
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


def build_role_index(role: Role, cols: dict[str, CorpusCollection], sig: Signature) -> RoleIndex:
    started = time.perf_counter()
    ids, texts, metas = [], [], []
    for _, col in sorted(cols.items()):
        for ch in col.iter_chunks():
            if not can_read(role, str(ch.metadata.get("audience"))):
                continue
            ids.append(ch.id)
            metas.append(ch.metadata)
            texts.append(ch.text)
    lexical = LexicalIndex(
        [f"{m.get('section', '')}\n{t}" for m, t in zip(metas, texts, strict=True)],
        [str(m.get("lang", "sv")) for m in metas],
    )
    idx = RoleIndex(
        signature=sig, ids=ids, texts=texts, metas=metas, lexical=lexical,
        corpus_of=np.array([str(m.get("corpus", "")) for m in metas], dtype=object),
        lang_of=np.array([str(m.get("lang", "")) for m in metas], dtype=object),
    )
    log.info("BM25 index for role %s: %d chunks in %.2f s", role, len(ids),
             time.perf_counter() - started)
    return idx


class RoleIndexes:
    """The per-role indexes. ``readable`` gives a role's collections and their signature as
    they are now."""

    def __init__(
        self,
        readable: Callable[[Role], tuple[dict[str, CorpusCollection], Signature]],
        rebuild_in_background: bool = True,
    ) -> None:
        self._readable = readable
        self._background = rebuild_in_background
        self._indexes: dict[Role, RoleIndex] = {}
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()  # one index build at a time (CPU and memory)
        self._building: set[Role] = set()

    def get(self, role: Role, wait: bool = True) -> RoleIndex:
        """The role's index, rebuilt only when one of its collections changed.

        With ``wait=False`` (what a request uses) a changed collection does not block the
        request: the previous index keeps serving while a background thread builds the new one
        (a 100k-chunk index takes tens of seconds). Serving it is safe for access control: the
        caller masks it to the corpora the role may read *now*, and retrieval checks every hit
        again. Only a role's very first index is built in the request."""
        with self._lock:
            current = self._indexes.get(role)
            _, sig = self._readable(role)
            if current is not None and current.signature == sig:
                return current
            if current is not None and not wait and self._background:
                if role not in self._building:
                    self._building.add(role)
                    threading.Thread(target=self._rebuild, args=(role,), daemon=True,
                                     name=f"bm25-{role.value}").start()
                return current
        return self._rebuild(role)

    def _rebuild(self, role: Role) -> RoleIndex:
        try:
            with self._build_lock:
                with self._lock:
                    cols, sig = self._readable(role)
                    current = self._indexes.get(role)
                    if current is not None and current.signature == sig:
                        return current
                idx = build_role_index(role, cols, sig)
                with self._lock:
                    self._indexes[role] = idx
                return idx
        finally:
            with self._lock:
                self._building.discard(role)
