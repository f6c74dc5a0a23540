"""The Chroma store: one collection per corpus, embedded PersistentClient by default, HttpClient
when a server host is configured. Every chunk carries its provenance and the corpus labels
(audience, sensitivity) that retrieval and routing rely on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from gbg.settings import Settings
from ingest.errors import EmbedderMismatchError, StoreUnavailableError
from ingest.manifest import CorpusManifest

# Chroma's own telemetry would try to reach the internet; a city platform sends nothing out.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

PAGE = 5000


def _bound_http_timeout(client: Any, seconds: float) -> None:
    """chromadb's HttpClient talks through an httpx session without any timeout, so a hung
    server would hang every request. Bound it (connect, read, write and pool)."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if not isinstance(session, httpx.Client):
        raise StoreUnavailableError(
            "cannot bound the Chroma client's HTTP timeout (chromadb internals changed)"
        )
    session.timeout = httpx.Timeout(seconds)


def make_client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    cs = settings.chroma
    client_settings = ChromaClientSettings(anonymized_telemetry=False)
    try:
        if cs.host:
            headers = {}
            if cs.auth_token is not None:
                headers["Authorization"] = f"Bearer {cs.auth_token.get_secret_value()}"
            # chromadb's constructor already talks to the server, without a timeout: probe it
            # first with one, so a hung server fails here instead of hanging the caller.
            import httpx

            scheme = "https" if cs.ssl else "http"
            httpx.get(f"{scheme}://{cs.host}:{cs.port}/api/v2/heartbeat", headers=headers,
                      timeout=cs.timeout_s).raise_for_status()
            client = chromadb.HttpClient(
                host=cs.host, port=cs.port, ssl=cs.ssl, headers=headers, settings=client_settings
            )
            _bound_http_timeout(client, cs.timeout_s)
            return client
        path = settings.chroma_path
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=client_settings)
    except Exception as exc:  # chromadb raises plain ValueError/ConnectionError variants
        where = f"{cs.host}:{cs.port}" if cs.host else str(settings.chroma_path)
        raise StoreUnavailableError(f"Chroma at {where} is not available: {exc}") from exc


@dataclass
class SourceState:
    """What the store holds for one document (one source)."""

    ids: set[str] = field(default_factory=set)
    doc_hashes: set[str] = field(default_factory=set)
    n_chunks: set[int] = field(default_factory=set)
    content_hash_to_id: dict[str, str] = field(default_factory=dict)
    etag: str = ""
    last_modified: str = ""

    def is_complete(self, doc_hash: str) -> bool:
        """All chunks written by one finished run of this exact content."""
        return (
            self.doc_hashes == {doc_hash}
            and len(self.n_chunks) == 1
            and len(self.ids) == next(iter(self.n_chunks))
        )


class CorpusCollection:
    """A corpus's Chroma collection with the few operations ingest and retrieval need."""

    def __init__(self, collection: Any) -> None:
        self.raw = collection
        self.name: str = collection.name

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.raw.metadata or {})

    def count(self) -> int:
        return int(self.raw.count())

    def iter_records(
        self, include: Sequence[str] = ("metadatas",), where: dict[str, Any] | None = None
    ) -> Iterator[tuple[str, dict[str, Any], str | None, Any]]:
        """(id, metadata, document, embedding) for every chunk, paged."""
        offset = 0
        while True:
            page = self.raw.get(include=list(include), limit=PAGE, offset=offset, where=where)
            ids = page["ids"]
            if not ids:
                return
            metas = page.get("metadatas") or [{}] * len(ids)
            docs = page.get("documents") or [None] * len(ids)
            embs = page.get("embeddings")
            if embs is None:
                embs = [None] * len(ids)
            yield from zip(ids, metas, docs, embs, strict=True)
            if len(ids) < PAGE:
                return
            offset += PAGE

    def source_states(self) -> dict[str, SourceState]:
        states: dict[str, SourceState] = {}
        for cid, meta, _, _ in self.iter_records():
            st = states.setdefault(str(meta.get("source", "")), SourceState())
            st.ids.add(cid)
            st.doc_hashes.add(str(meta.get("doc_hash", "")))
            st.n_chunks.add(int(meta.get("n_chunks", -1)))
            st.content_hash_to_id[str(meta.get("content_hash", ""))] = cid
            st.etag = str(meta.get("etag", "")) or st.etag
            st.last_modified = str(meta.get("last_modified", "")) or st.last_modified
        return states

    def embeddings_for(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        got = self.raw.get(ids=list(ids), include=["embeddings"])
        return {
            i: np.asarray(e, dtype=np.float32) for i, e in zip(got["ids"], got["embeddings"], strict=True)
        }

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        if ids:
            self.raw.upsert(
                ids=list(ids),
                embeddings=embeddings,
                documents=list(documents),
                metadatas=list(metadatas),
            )

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), PAGE):
            self.raw.delete(ids=list(ids)[start : start + PAGE])

    def relabel(self, manifest: CorpusManifest) -> int:
        """Apply a manifest's changed audience/sensitivity to every chunk without re-embedding."""
        ids, metas = [], []
        for cid, meta, _, _ in self.iter_records():
            if meta.get("audience") != manifest.audience or meta.get("sensitivity") != (
                manifest.sensitivity
            ):
                ids.append(cid)
                metas.append(
                    {**meta, "audience": str(manifest.audience), "sensitivity": str(manifest.sensitivity)}
                )
        for start in range(0, len(ids), PAGE):
            self.raw.update(ids=ids[start : start + PAGE], metadatas=metas[start : start + PAGE])
        return len(ids)

    def set_corpus_metadata(self, manifest: CorpusManifest, embedder_name: str, **extra: Any) -> None:
        meta = corpus_metadata(manifest, embedder_name)
        meta.update({k: v for k, v in extra.items() if v is not None})
        self.raw.modify(metadata=meta)


def corpus_metadata(manifest: CorpusManifest, embedder_name: str) -> dict[str, Any]:
    return {
        "corpus": manifest.name,
        "title": manifest.title,
        "description": manifest.description,
        "audience": str(manifest.audience),
        "sensitivity": str(manifest.sensitivity),
        "languages": ",".join(manifest.languages),
        "license": manifest.license.name,
        "attribution": manifest.license.attribution,
        "embedder": embedder_name,
    }


class ChromaStore:
    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> ChromaStore:
        return cls(make_client(settings))

    def heartbeat(self) -> bool:
        try:
            self.client.heartbeat()
            return True
        except Exception:
            return False

    def collection_names(self) -> list[str]:
        return sorted(c if isinstance(c, str) else c.name for c in self.client.list_collections())

    def get(self, name: str) -> CorpusCollection | None:
        if name not in self.collection_names():
            return None
        return CorpusCollection(self.client.get_collection(name, embedding_function=None))

    def open_for_ingest(
        self, manifest: CorpusManifest, embedder_name: str, rebuild: bool = False
    ) -> CorpusCollection:
        existing = self.get(manifest.name)
        if existing is not None and rebuild:
            self.client.delete_collection(manifest.name)
            existing = None
        if existing is not None:
            stored = existing.metadata.get("embedder")
            if stored and stored != embedder_name:
                raise EmbedderMismatchError(manifest.name, str(stored), embedder_name)
            return existing
        col = self.client.get_or_create_collection(
            manifest.name,
            metadata=corpus_metadata(manifest, embedder_name),
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        return CorpusCollection(col)

    def drop(self, name: str) -> None:
        if name in self.collection_names():
            self.client.delete_collection(name)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
