"""The chat pipeline: rewrite -> retrieve -> classify -> route -> generate -> verify -> audit.

Decisions (classification, routing) are pure functions in ``bot.sensitivity``; this module is the
thin layer with side effects around them. It never imports FastAPI.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.access import Role
from bot.audit import AuditRecord, AuditStore
from bot.citations import CitationVerifier, Verification
from bot.llm.base import ChatProvider, GenerationRequest, ProviderError, Source
from bot.llm.extractive import extractive_answer
from bot.relevance import question_coverage, same_language
from bot.retrieval.retriever import HybridRetriever, RetrievedChunk
from bot.rewrite import rewrite
from bot.sensitivity import Classification, Detector, ProviderOption, classify, route
from gbg.settings import Settings
from ingest.lang import detect_language
from ingest.manifest import Sensitivity

log = logging.getLogger(__name__)

REFUSAL = {
    "sv": "Jag vet tyvärr inte svaret på det utifrån mina källor. Kontakta {contact}, så hjälper de "
    "dig vidare.",
    "en": "I'm sorry, I don't know the answer to that from my sources. Please contact {contact} "
    "and they will help you.",
}
NO_PROVIDER = {
    "sv": "Frågan innehåller känsliga uppgifter och kan bara besvaras av stadens egen AI-modell, "
    "som inte är tillgänglig just nu. Försök igen senare eller kontakta {contact}.",
    "en": "Your question contains sensitive information and can only be answered by the city's "
    "own AI model, which is not available right now. Please try again later or contact "
    "{contact}.",
}
NOTICE_REPLACED = {
    "sv": "Det genererade svaret kunde inte beläggas med källorna och har ersatts av utdrag ur "
    "källorna.",
    "en": "The generated answer could not be verified against the sources and was replaced by "
    "passages from the sources.",
}
NOTICE_DROPPED = {
    "sv": "Meningar som inte stöddes av källorna har tagits bort.",
    "en": "Sentences that the sources did not support were removed.",
}
ELIGIBILITY = {
    "sv": "Assistenten kan inte avgöra om du har rätt till en insats. Det beslutar en "
    "biståndshandläggare efter en utredning; kontakta {contact} för att ansöka.",
    "en": "The assistant cannot decide whether you are entitled to a service. A needs assessor "
    "(biståndshandläggare) decides after an assessment; contact {contact} to apply.",
}
_ELIGIBILITY_Q = re.compile(
    r"(har\s+jag\s+rätt\s+till|får\s+jag\s+(?:hemtjänst|färdtjänst|bistånd|plats)|"
    r"kommer\s+jag\s+att\s+få|beviljas\s+jag|am\s+i\s+(?:eligible|entitled)|do\s+i\s+qualify|"
    r"will\s+i\s+(?:get|be\s+granted))",
    re.I,
)


class ServiceUnavailableError(Exception):
    """A dependency (the store) did not answer in time."""


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    content: str


@dataclass
class ChatRequest:
    messages: list[Message]
    role: Role = Role.public
    corpora: list[str] | None = None
    lang: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Citation:
    number: int
    title: str
    source: str
    url: str
    snippet: str
    corpus: str
    section: str


@dataclass
class ChatResult:
    request_id: str
    answer: str
    citations: list[Citation]
    provider: str | None
    model: str | None
    location: str | None
    sensitivity: str
    sensitivity_reasons: list[str]
    refused: bool
    refusal_reason: str | None
    grounded: bool
    notice: str | None
    lang: str
    query: str
    latency_ms: float
    stages_ms: dict[str, float]
    ai_generated: bool = True
    chunk_ids: list[str] = field(default_factory=list)
    corpora: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    req: ChatRequest
    lang: Literal["sv", "en"]
    question: str
    query: str
    hits: list[RetrievedChunk]
    classification: Classification
    provider: ChatProvider | None
    refusal: str | None
    sources: list[Source]
    stages: dict[str, float]
    started: float


class ChatService:
    def __init__(
        self,
        settings: Settings,
        retriever: HybridRetriever,
        providers: dict[str, ChatProvider],
        audit: AuditStore,
        detector: Detector | None = None,
        verifier: CitationVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.providers = providers
        self.audit = audit
        self.detector = detector or Detector()
        self.verifier = verifier or CitationVerifier(retriever.embedder)
        self._health: dict[str, tuple[float, bool]] = {}
        self._health_lock = threading.Lock()

    # --- helpers ---------------------------------------------------------------------------

    def provider_available(self, name: str) -> bool:
        ttl = self.settings.llm.health_ttl_s
        with self._health_lock:
            at, ok = self._health.get(name, (-1e9, False))
            if time.monotonic() - at < ttl:
                return ok
        ok = self.providers[name].healthy()
        with self._health_lock:
            self._health[name] = (time.monotonic(), ok)
        return ok

    def mark_down(self, name: str) -> None:
        with self._health_lock:
            self._health[name] = (time.monotonic(), False)

    def _options(self) -> list[ProviderOption]:
        return [
            ProviderOption(name, p.clearance, self.provider_available(name))
            for name, p in self.providers.items()
        ]

    def _lang(self, req: ChatRequest, question: str, asked: str | None) -> Literal["sv", "en"]:
        lang = asked or req.lang or detect_language(question)
        return "en" if lang == "en" else "sv"

    # --- planning --------------------------------------------------------------------------

    def plan(self, req: ChatRequest) -> _Plan:
        started = time.perf_counter()
        stages: dict[str, float] = {}
        question = req.messages[-1].content
        earlier_user = [m.content for m in req.messages[:-1] if m.role == "user"]
        history = [m.content for m in req.messages[:-1]]
        rw = rewrite(question, earlier_user)
        lang = self._lang(req, question, rw.lang)

        t = time.perf_counter()
        hits = self.retriever.retrieve(rw.query, req.role, corpora=req.corpora)
        stages["retrieve"] = (time.perf_counter() - t) * 1000

        # Sensitivity comes from everything this request touches, also the weakly related
        # chunks, so that a question near a client's plan is never treated as public.
        classification = classify(
            rw.query if rw.rewritten else question,
            history,
            [(h.corpus, str(h.metadata.get("sensitivity", "sensitive"))) for h in hits],
            req.role.value,
            self.detector,
        )
        if rw.rewritten and rw.query != question:
            more = classify(question, [], [], req.role.value, self.detector)
            if more.level.rank > classification.level.rank:
                classification = more

        top_dense = max((h.dense for h in hits if h.dense is not None), default=None)
        relevant = bool(hits) and (
            top_dense is None or top_dense >= self.settings.bot.min_relevance
        )
        refusal = None if relevant else "no_relevant_sources"
        provider = None
        if refusal is None:
            decision = route(
                classification.level, self._options(), self.settings.llm.preference
            )
            if decision.provider is None:
                refusal = decision.reason
            else:
                provider = self.providers[decision.provider]
        if provider is not None and same_language(hits, lang):
            coverage = question_coverage(rw.query, hits[:3], lang)
            need = (self.settings.bot.min_coverage_extractive if provider.kind == "extractive"
                    else self.settings.bot.min_coverage)
            if coverage < need:
                refusal, provider = "no_relevant_sources", None
        sources = [
            Source(
                n=i,
                title=str(h.metadata.get("title", "")),
                text=h.text,
                lang=str(h.metadata.get("lang", "sv")),
                section=str(h.metadata.get("section", "")),
            )
            for i, h in enumerate(hits, start=1)
        ]
        return _Plan(req, lang, question, rw.query, hits, classification, provider, refusal,
                     sources, stages, started)

    def _generation_request(self, plan: _Plan, provider: ChatProvider) -> GenerationRequest:
        question, sources = plan.question, plan.sources
        if plan.query != plan.question:
            question = f"{plan.query}"
        if provider.location == "cloud":
            # Data minimisation: only the question and the chunk texts, personal data replaced.
            # (A cloud provider is never cleared for `sensitive`; this covers `internal`.)
            question = self.detector.redact(question)
            sources = [
                Source(s.n, self.detector.redact(s.title), self.detector.redact(s.text), s.lang)
                for s in sources
            ]
        return GenerationRequest(question=question, lang=plan.lang, sources=sources)

    def _fallbacks(self, plan: _Plan, failed: str) -> ChatProvider | None:
        self.mark_down(failed)
        decision = route(plan.classification.level, self._options(),
                         self.settings.llm.preference)
        return self.providers[decision.provider] if decision.provider else None

    # --- answering -------------------------------------------------------------------------

    def stream(self, req: ChatRequest) -> Iterator[dict[str, Any]]:
        """Events: {"type": "token", "text"} while generating, then {"type": "final", ...}."""
        plan = self.plan(req)
        if plan.refusal is not None or plan.provider is None:
            yield {"type": "final", "result": self._finish(plan, None, "")}
            return
        provider: ChatProvider | None = plan.provider
        text = ""
        t = time.perf_counter()
        while provider is not None:
            try:
                gen_req = self._generation_request(plan, provider)
                for piece in provider.stream(gen_req):
                    text += piece
                    yield {"type": "token", "text": piece}
                break
            except ProviderError as exc:
                log.warning("%s; trying the next cleared provider", exc)
                text = ""
                yield {"type": "reset"}
                provider = self._fallbacks(plan, provider.name)
        plan.stages["generate"] = (time.perf_counter() - t) * 1000
        if provider is None:
            plan.refusal = "no_cleared_provider"
        yield {"type": "final", "result": self._finish(plan, provider, text)}

    def answer(self, req: ChatRequest) -> ChatResult:
        final: ChatResult | None = None
        for ev in self.stream(req):
            if ev["type"] == "final":
                final = ev["result"]
        assert final is not None
        return final

    def _finish(self, plan: _Plan, provider: ChatProvider | None, text: str) -> ChatResult:
        contact = self.settings.bot.contact
        notice: str | None = None
        grounded = False
        if plan.refusal is not None or provider is None:
            reason = plan.refusal or "no_cleared_provider"
            template = NO_PROVIDER if reason == "no_cleared_provider" else REFUSAL
            answer = template[plan.lang].format(contact=contact)
            used: list[int] = []
            refused = True
        else:
            refused, reason = False, None
            t = time.perf_counter()
            verification = self.verifier.verify(text, plan.sources)
            plan.stages["verify"] = (time.perf_counter() - t) * 1000
            answer, notice, grounded = self._apply_verification(plan, text, verification)
            used = sorted({int(n) for n in re.findall(r"\[(\d{1,2})\]", answer)})
            if not used:
                refused, reason = True, "no_relevant_sources"
                answer = REFUSAL[plan.lang].format(contact=contact)
                notice = None
        if _ELIGIBILITY_Q.search(plan.question) and not refused:
            answer = f"{answer}\n\n{ELIGIBILITY[plan.lang].format(contact=contact)}"
        by_n = {s.n: (s, h) for s, h in zip(plan.sources, plan.hits, strict=True)}
        citations = [
            Citation(
                number=n,
                title=by_n[n][0].title,
                source=by_n[n][1].source,
                url=str(by_n[n][1].metadata.get("url", "")),
                snippet=_snippet(by_n[n][0].text),
                corpus=by_n[n][1].corpus,
                section=by_n[n][0].section,
            )
            for n in used
            if n in by_n
        ]
        latency = (time.perf_counter() - plan.started) * 1000
        result = ChatResult(
            request_id=plan.req.request_id,
            answer=answer,
            citations=citations,
            provider=provider.name if provider and not refused else None,
            model=provider.model if provider and not refused else None,
            location=provider.location if provider and not refused else None,
            sensitivity=plan.classification.level.value,
            sensitivity_reasons=list(plan.classification.reasons),
            refused=refused,
            refusal_reason=reason,
            grounded=grounded,
            notice=notice,
            lang=plan.lang,
            query=plan.query,
            latency_ms=round(latency, 1),
            stages_ms={k: round(v, 1) for k, v in plan.stages.items()},
            chunk_ids=[h.id for h in plan.hits],
            corpora=sorted({h.corpus for h in plan.hits}),
        )
        return result

    def _apply_verification(
        self, plan: _Plan, text: str, v: Verification
    ) -> tuple[str, str | None, bool]:
        if v.grounded:
            return text.strip(), None, True
        kept = [c for c in v.checks if c.supported]
        unsupported = v.unsupported
        if v.cited_any and any(c.cited for c in kept) and len(unsupported) <= len(kept):
            return " ".join(c.sentence for c in kept), NOTICE_DROPPED[plan.lang], True
        fallback = extractive_answer(
            GenerationRequest(question=plan.query, lang=plan.lang, sources=plan.sources)
        )
        return fallback, NOTICE_REPLACED[plan.lang], False

    def audit_record(self, result: ChatResult, role: Role, endpoint: str = "chat",
                     status: int = 200) -> AuditRecord:
        q = None
        # A sensitive request's question is not stored at all: redaction could miss an
        # encoded value, and the level and reasons already say why it stayed local.
        if self.settings.audit.store_question == "redacted" and result.sensitivity != "sensitive":
            q = self.detector.redact(result.query)
        return AuditRecord(
            request_id=result.request_id, endpoint=endpoint, status=status, role=role.value,
            level=result.sensitivity, reasons=result.sensitivity_reasons,
            provider=result.provider, model=result.model, location=result.location,
            corpora=result.corpora, chunk_ids=result.chunk_ids, refused=result.refused,
            refusal_reason=result.refusal_reason, grounded=result.grounded, lang=result.lang,
            latency_ms=result.latency_ms, question=q,
        )


def _snippet(text: str, n: int = 240) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1].rsplit(" ", 1)[0] + "…"


__all__ = ["ChatService", "ChatRequest", "ChatResult", "Message", "Sensitivity"]
