"""The one place the chat service is built from settings: the HTTP app, the CLI, the evaluation
suites and the tests all call ``build_service``. Overrides let a caller bring its own embedder
(loaded once per test session), audit store or retriever class."""

from __future__ import annotations

from bot.audit import AuditStore
from bot.llm.registry import build_providers
from bot.pii import Detector, detector_from_corpora
from bot.retrieval.retriever import HybridRetriever
from bot.service import ChatService
from gbg.settings import Settings
from ingest.embed_cache import with_cache
from ingest.embedders import Embedder, check_clearance, get_embedder
from ingest.store import ChromaStore


def _query_embedder(settings: Settings) -> Embedder:
    """The embedder for questions and the reader's spans: recent query vectors kept in memory
    and the shipped pack read, but nothing written to disk per request."""
    base = get_embedder(settings.embedder)
    return with_cache(base, None, settings.corpora_dir) if settings.embedder.cache else base


def build_detector(retriever: HybridRetriever) -> Detector:
    """The personal-data detector, knowing the people of the sensitive corpora."""
    wanted = ("public", "sensitive")  # places and sights; the people of the care plans
    return detector_from_corpora(
        (str(meta.get("sensitivity")), retriever.corpus_texts(name))
        for name, meta in retriever.corpora().items()
        if str(meta.get("sensitivity")) in wanted
    )


def build_service(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    audit: AuditStore | None = None,
    retriever_cls: type[HybridRetriever] = HybridRetriever,
) -> ChatService:
    query_embedder = embedder or _query_embedder(settings)
    check_clearance(query_embedder, {}, questions=True)
    retriever = retriever_cls(ChromaStore.from_settings(settings), query_embedder,
                              settings.retrieval)
    return ChatService(settings, retriever, build_providers(settings),
                       audit or AuditStore(settings.audit_url), build_detector(retriever))
