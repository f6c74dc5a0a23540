"""The embedding cache (issue 18): LangChain's CacheBackedEmbeddings over a local file store and
the pack shipped with the bundled corpora. An entry is never served for another embedder or
another text; the shipped pack covers every bundled passage (a stale pack fails here)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from gbg.settings import Settings
from ingest.embed_cache import (
    CachedEmbedder,
    LayeredStore,
    PackStore,
    namespace,
    pack_path,
    text_key,
    with_cache,
    write_pack,
)
from ingest.embedders import E5Embedder, Embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import ingest_all
from ingest.store import ChromaStore
from tests.helpers import CORPORA


class Hashing(Embedder):
    """A deterministic embedder that counts what it is asked to embed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dim = 8
        self.calls: list[str] = []

    def _vec(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self.name}|{text}".encode()).digest()[:4], "big")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.extend(texts)
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, 8), np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.extend(f"q:{t}" for t in texts)
        return np.stack([self._vec("q " + t) for t in texts])


class Refusing(Embedder):
    """Fails on any passage: behind a pack-only cache it proves every passage was in the pack."""

    def __init__(self, inner: Embedder) -> None:
        self.name, self.dim, self.inner = inner.name, inner.dim, inner

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError(
            f"{len(texts)} bundled passages are not in the shipped embedding cache, e.g. "
            f"{texts[0][:60]!r}: run `python -m ingest.embed_cache pack` and commit the pack")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def test_a_hit_is_the_same_vector_and_embeds_nothing(tmp_path: Path) -> None:
    inner = Hashing("a")
    cached = with_cache(inner, tmp_path / "cache", None)
    first = cached.embed_passages(["Liseberg ligger vid Korsvägen.", "Haga har kaféer."])
    again = with_cache(Hashing("a"), tmp_path / "cache", None)  # a new process, same disk
    second = again.embed_passages(["Haga har kaféer.", "Liseberg ligger vid Korsvägen."])
    assert np.array_equal(first[::-1], second)  # bit for bit
    assert isinstance(again, CachedEmbedder) and again.misses == 0
    assert cached.misses == 2


def test_an_entry_is_never_served_for_another_embedder_or_another_text(tmp_path: Path) -> None:
    a, b = Hashing("a"), Hashing("b")
    with_cache(a, tmp_path, None).embed_passages(["Ring 112."])
    vb = with_cache(b, tmp_path, None).embed_passages(["Ring 112."])
    assert b.calls == ["Ring 112."] and np.array_equal(vb[0], b._vec("Ring 112."))
    a2 = Hashing("a")
    with_cache(a2, tmp_path, None).embed_passages(["Ring 112. ", "ring 112."])
    assert a2.calls == ["Ring 112. ", "ring 112."]  # one space or one letter: another text
    assert namespace(a) != namespace(b)


def test_queries_are_kept_in_a_bounded_memory_cache_not_on_disk(tmp_path: Path) -> None:
    inner = Hashing("a")
    cached = with_cache(inner, tmp_path, None)
    q1 = cached.embed_queries(["var ligger liseberg"])
    q2 = cached.embed_queries(["var ligger liseberg"])
    assert np.array_equal(q1, q2) and inner.calls == ["q:var ligger liseberg"]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_pack_is_read_only_and_layered_under_the_local_store(tmp_path: Path) -> None:
    inner = Hashing("a")
    ns = namespace(inner)
    texts = ["x", "y"]
    write_pack(tmp_path / "p.npz", ns, texts, inner.embed_passages(texts))
    pack = PackStore(tmp_path / "p.npz")
    assert len(pack) == 2 and pack.mget([text_key(ns, "z")]) == [None]
    with pytest.raises(TypeError, match="read-only"):
        pack.mset([("k", b"v")])
    fresh = Hashing("a")
    layered = CachedEmbedder(fresh, LayeredStore(None, [pack]))
    assert np.array_equal(layered.embed_passages(["y", "x"]), inner.embed_passages(["y", "x"]))
    assert fresh.calls == []


def test_the_shipped_pack_covers_every_bundled_passage(tmp_path: Path) -> None:
    """Ingest of all bundled corpora from the pack alone: no passage may need the model (a
    changed document without a regenerated pack fails here), and it takes seconds."""
    e5 = E5Embedder()
    assert pack_path(CORPORA, e5).is_file()
    s = Settings(_env_file=None)
    s.data_dir, s.corpora_dir = tmp_path / "data", CORPORA
    cached = with_cache(Refusing(e5), None, CORPORA)
    started = time.perf_counter()
    report = ingest_all(s, discover_manifests(CORPORA), ChromaStore.from_settings(s), cached)
    seconds = time.perf_counter() - started
    assert report.errors == []
    chunks = sum(c.chunks_total for c in report.corpora)
    assert chunks >= 600 and cached.misses == 0
    print(f"bundled ingest from the shipped cache: {chunks} chunks in {seconds:.1f} s")


class Served(Hashing):
    """A server-side model: its address and prefixes are part of what it is."""

    def __init__(self, name: str, identity: str) -> None:
        super().__init__(name)
        self.identity = identity


def test_the_same_model_name_on_another_server_or_prefix_is_another_cache_entry(
        tmp_path: Path) -> None:
    a = Served("ollama:bge-m3", "http://gpu1:11434||passage: |1024")
    b = Served("ollama:bge-m3", "http://gpu1:11434|||1024")  # no passage prefix
    assert namespace(a) != namespace(b)
    with_cache(a, tmp_path, None).embed_passages(["Ring 112."])
    with_cache(b, tmp_path, None).embed_passages(["Ring 112."])
    assert b.calls == ["Ring 112."]


def test_a_cache_file_cut_short_is_a_miss_not_an_error(tmp_path: Path) -> None:
    inner = Hashing("a")
    with_cache(inner, tmp_path, None).embed_passages(["Haga har kaféer."])
    [path] = [p for p in tmp_path.rglob("*") if p.is_file()]
    path.write_bytes(path.read_bytes()[:20])  # a write interrupted half-way
    again = Hashing("a")
    v = with_cache(again, tmp_path, None).embed_passages(["Haga har kaféer."])
    assert again.calls == ["Haga har kaféer."]
    assert np.array_equal(v[0], inner._vec("Haga har kaféer."))


def test_a_sensitive_corpus_is_not_written_to_the_cache(tmp_path: Path) -> None:
    from tests.helpers import write_corpus

    s = Settings(_env_file=None)
    s.data_dir, s.corpora_dir = tmp_path / "data", tmp_path / "corpora"
    write_corpus(s.corpora_dir, "oppen", {"a.md": "# A\nSlottsskogen har en djurpark.\n"})
    write_corpus(s.corpora_dir, "plan", {"b.md": "# B\nBrukaren vill ha kaffe klockan sju.\n"},
                 audience="care", sensitivity="sensitive")
    cache = tmp_path / "cache"
    emb = with_cache(Hashing("a"), cache, None)
    report = ingest_all(s, discover_manifests(s.corpora_dir), ChromaStore.from_settings(s), emb)
    assert report.errors == [] and sum(c.chunks_total for c in report.corpora) == 2
    written = [p for p in cache.rglob("*") if p.is_file()]
    assert len(written) == 1  # the public corpus's one chunk; the care plan's is not kept
