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
from ingest.embedders import Embedder, get_embedder
from ingest.store import ChromaStore


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
    retriever = retriever_cls(
        ChromaStore.from_settings(settings), embedder or get_embedder(settings.embedder),
        settings.retrieval,
    )
    return ChatService(settings, retriever, build_providers(settings),
                       audit or AuditStore(settings.audit_url), build_detector(retriever))
