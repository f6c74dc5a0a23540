"""The chat pipeline: rewrite -> retrieve -> classify -> route -> decide -> generate -> verify.

Every decision is a pure function elsewhere (``bot.classify``, ``bot.routing``, ``bot.policy``);
this module is the thin layer with side effects around them. It never imports FastAPI; the
HTTP layer writes the audit record from the result.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bot import policy
from bot.audit import AuditRecord, AuditStore, feedback_key
from bot.citations import CitationVerifier, Verification
from bot.classify import Classification, classify
from bot.llm.base import ChatProvider, GenerationRequest, ProviderError, Source, as_data
from bot.llm.extractive import extractive_answer
from bot.models import (
    ChatRequest,
    ChatResult,
    Citation,
    DecidedEvent,
    FinalEvent,
    ResetEvent,
    StreamEvent,
    TokenEvent,
)
from bot.pii import Detector
from bot.retrieval.retriever import HybridRetriever
from bot.retrieval.types import RetrievalOptions, RetrievedChunk
from bot.rewrite import rewrite
from bot.routing import ProviderOption, route
from bot.texts import text as catalogue_text
from gbg.i18n import canonical
from gbg.i18n.detect import answer_language, detect
from gbg.labels import Role
from gbg.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What a request was decided to be, before any provider is asked."""

    req: ChatRequest
    lang: str  # the answer's language
    question: str
    query: str
    hits: list[RetrievedChunk]
    classification: Classification
    provider: ChatProvider | None
    refusal: str | None
    sources: list[Source]
    stages: dict[str, float]
    started: float
    p_answer: float | None = None  # the calibrated "do the sources answer this?"
    unsupported: bool = False  # the question's language is not one we answer in


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

    # --- providers -------------------------------------------------------------------------

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

    def _route(self, plan_level: Classification) -> ChatProvider | None:
        decision = route(plan_level.level, self._options(), self.settings.llm.preference)
        return self.providers[decision.provider] if decision.provider else None

    # --- planning --------------------------------------------------------------------------

    def _classify(self, req: ChatRequest, question: str, query: str, rewritten: bool,
                  hits: list[RetrievedChunk]) -> Classification:
        """Sensitivity from everything this request touches, also the weakly related chunks,
        so that a question near a client's plan is never treated as public."""
        # The whole conversation is read as one text, with the rewritten query (which can copy
        # an id from an earlier turn) as one more part of it.
        history = [m.content for m in req.messages[:-1]]
        if rewritten and query != question:
            history.append(query)
        chunks = [(h.corpus, str(h.metadata.get("sensitivity", "sensitive"))) for h in hits]
        written = detect(question)[1]  # ISO 639-1: "fr", "da", "it" ...
        return classify(question, history, chunks, req.role.value, self.detector,
                        floor=req.floor, language=canonical(written) or written)

    def plan(self, req: ChatRequest) -> Plan:
        started = time.perf_counter()
        stages: dict[str, float] = {}
        question = req.messages[-1].content
        rw = rewrite(question, [m.content for m in req.messages[:-1] if m.role == "user"])
        # The question is judged in the language it is written in (a language we do not answer
        # in is read as one: "und"); a language asked for only sets the answer's language.
        written, unsupported = self.answer_language(question,
                                                    rw.query if rw.rewritten else None)
        read_lang = "und" if unsupported else written
        asked = canonical(rw.lang) or canonical(req.lang)
        lang = asked or written
        unsupported = unsupported and not asked
        t = time.perf_counter()
        hits = self.retriever.retrieve(rw.query, req.role, RetrievalOptions(
            corpora=req.corpora, mode=policy.retrieval_mode(read_lang)))
        stages["retrieve"] = (time.perf_counter() - t) * 1000
        classification = self._classify(req, question, rw.query, rw.rewritten, hits)

        bot = self.settings.bot
        # The one decision every provider goes through before it is asked: do the sources
        # answer this question? (Made before routing, so no model ever sees sources that do not.)
        refusal = policy.relevance_refusal(hits, policy.relevance_floor(
            read_lang, bot.min_relevance, bot.min_relevance_other_languages))
        p_answer: float | None = None
        if refusal is None:
            t = time.perf_counter()
            # A question in a language we do not answer in is read as one ("und"), though the
            # answer is in English.
            _, evidence = policy.assess(rw.query, read_lang, hits, self.retriever.embedder)
            p_answer = policy.answerability(evidence)
            refusal = policy.answerability_refusal(
                evidence, bot.answerability_threshold,
                threshold_other_languages=bot.answerability_threshold_other_languages)
            stages["decide"] = (time.perf_counter() - t) * 1000
        provider = None
        if refusal is None:
            provider = self._route(classification)
            refusal = None if provider else "no_cleared_provider"
        sources = [
            Source(n=i, title=as_data(str(h.metadata.get("title", ""))), text=as_data(h.text),
                   lang=str(h.metadata.get("lang", "sv")),
                   section=str(h.metadata.get("section", "")), relevance=h.dense)
            for i, h in enumerate(hits, start=1)
        ]
        return Plan(req, lang, question, rw.query, hits, classification, provider, refusal,
                    sources, stages, started, p_answer, unsupported)

    @staticmethod
    def answer_language(question: str, query: str | None = None) -> tuple[str, bool]:
        """The question's own language (a short follow-up is read with the question it
        continues), or English and True when we do not answer in it."""
        return answer_language(query if query and len(question.split()) <= 3 else question)

    def _generation_request(self, plan: Plan, provider: ChatProvider) -> GenerationRequest:
        question, sources = plan.query, plan.sources
        if provider.location == "cloud":
            # Data minimisation: only the question and the chunk texts, personal data replaced.
            # (A cloud provider is never cleared for `sensitive`; this covers `internal`.)
            question = self.detector.redact(question)
            sources = [
                Source(s.n, self.detector.redact(s.title), self.detector.redact(s.text), s.lang)
                for s in sources
            ]
        return GenerationRequest(question=question, lang=plan.lang, sources=sources)

    # --- answering -------------------------------------------------------------------------

    def stream(self, req: ChatRequest) -> Iterator[StreamEvent]:
        """Token events while generating (a reset when a provider fails and the next cleared
        one takes over), then one final event with the result."""
        plan = self.plan(req)
        yield DecidedEvent(self.decision_record(plan))
        if plan.refusal is not None or plan.provider is None:
            yield FinalEvent(self._finish(plan, None, ""))
            return
        provider: ChatProvider | None = plan.provider
        text = ""
        t = time.perf_counter()
        while provider is not None:
            try:
                for piece in provider.stream(self._generation_request(plan, provider)):
                    text += piece
                    yield TokenEvent(piece)
                break
            except ProviderError as exc:
                log.warning("%s; trying the next cleared provider", exc)
                text = ""
                yield ResetEvent()
                self.mark_down(provider.name)
                provider = self._route(plan.classification)
        plan.stages["generate"] = (time.perf_counter() - t) * 1000
        if provider is None:
            plan.refusal = "no_cleared_provider"
        yield FinalEvent(self._finish(plan, provider, text))

    def answer(self, req: ChatRequest) -> ChatResult:
        for ev in self.stream(req):
            if isinstance(ev, FinalEvent):
                return ev.result
        raise AssertionError("a stream always ends with a final event")

    def _refusal_text(self, plan: Plan, reason: str) -> str:
        key = "no_provider" if reason == "no_cleared_provider" else "refusal"
        return catalogue_text(key, plan.lang, contact=self.settings.bot.contact)

    def _finish(self, plan: Plan, provider: ChatProvider | None, text: str) -> ChatResult:
        notice: str | None = None
        grounded = False
        used: list[int] = []
        reason = plan.refusal or (None if provider else "no_cleared_provider")
        if reason is None:
            t = time.perf_counter()
            verification = self.verifier.verify(text, _with_headings(plan.sources))
            plan.stages["verify"] = (time.perf_counter() - t) * 1000
            answer, notice, grounded = self._apply_verification(plan, text, verification)
            answer = _one_number_per_document(plan, answer)
            used = sorted({int(n) for n in re.findall(r"\[(\d{1,2})\]", answer)})
            if not used:
                reason, notice = policy.NO_RELEVANT_SOURCES, None
        refused = reason is not None
        if reason is not None:
            answer = self._refusal_text(plan, reason)
        elif policy.is_eligibility_question(plan.question):
            referral = catalogue_text("eligibility", plan.lang, contact=self.settings.bot.contact)
            answer = f"{answer}\n\n{referral}"
        if plan.unsupported:
            answer = f"{catalogue_text('unsupported_language', plan.lang)}\n\n{answer}"
        answered_by = provider if provider and not refused else None
        return ChatResult(
            request_id=plan.req.request_id,
            feedback_token=plan.req.feedback_token,
            answer=answer,
            citations=_citations(plan, used),
            provider=answered_by.name if answered_by else None,
            model=answered_by.model if answered_by else None,
            location=answered_by.location if answered_by else None,
            sensitivity=plan.classification.level.value,
            sensitivity_reasons=list(plan.classification.reasons),
            refused=refused,
            refusal_reason=reason,
            grounded=grounded,
            notice=notice,
            lang=plan.lang,
            query=plan.query,
            latency_ms=round((time.perf_counter() - plan.started) * 1000, 1),
            stages_ms={k: round(v, 1) for k, v in plan.stages.items()},
            chunk_ids=[h.id for h in plan.hits],
            corpora=sorted({h.corpus for h in plan.hits}),
        )

    def _apply_verification(
        self, plan: Plan, text: str, v: Verification
    ) -> tuple[str, str | None, bool]:
        if v.grounded or (plan.provider is not None and plan.provider.kind == "extractive"):
            # Quotes are the sources' own words: cutting sentences out of a quoted procedure
            # would only break it (a step the verifier cannot place stays, in order).
            return text.strip(), None, v.grounded
        kept = [c for c in v.checks if c.supported]
        if v.cited_any and any(c.cited for c in kept) and len(v.unsupported) <= len(kept):
            return (" ".join(c.sentence for c in kept),
                    catalogue_text("notice_dropped", plan.lang), True)
        fallback = extractive_answer(
            GenerationRequest(question=plan.query, lang=plan.lang, sources=plan.sources)
        )
        return fallback, catalogue_text("notice_replaced", plan.lang), False

    def _stored_question(self, query: str, level: str) -> str | None:
        # A sensitive request's question is not stored at all: redaction could miss an
        # encoded value, and the level and reasons already say why it stayed local.
        if self.settings.audit.store_question == "redacted" and level != "sensitive":
            return self.detector.redact(query)
        return None

    def decision_record(self, plan: Plan) -> AuditRecord:
        """The audit record of a planned request, before any answer text exists."""
        level = plan.classification.level.value
        p = plan.provider
        return AuditRecord(
            request_id=plan.req.request_id, endpoint="chat", status=200,
            role=plan.req.role.value, level=level, reasons=list(plan.classification.reasons),
            provider=p.name if p else None, model=p.model if p else None,
            location=p.location if p else None, corpora=sorted({h.corpus for h in plan.hits}),
            chunk_ids=[h.id for h in plan.hits], refused=plan.refusal is not None,
            refusal_reason=plan.refusal, lang=plan.lang,
            question=self._stored_question(plan.query, level),
            feedback_key=feedback_key(plan.req.feedback_token),
        )

    def audit_record(self, result: ChatResult, role: Role) -> AuditRecord:
        """The audit record of a finished request."""
        return AuditRecord(
            request_id=result.request_id, endpoint="chat", status=200, role=role.value,
            level=result.sensitivity, reasons=result.sensitivity_reasons,
            provider=result.provider, model=result.model, location=result.location,
            corpora=result.corpora, chunk_ids=result.chunk_ids, refused=result.refused,
            refusal_reason=result.refusal_reason, grounded=result.grounded, lang=result.lang,
            latency_ms=result.latency_ms, question=self._stored_question(
                result.query, result.sensitivity),
            outcome="refused" if result.refused else "answered",
            feedback_key=feedback_key(result.feedback_token) if result.feedback_token else None,
        )


def _with_headings(sources: list[Source]) -> list[Source]:
    """The sources as the verifier should read them: a chunk's section headings are part of
    what it says (an answer may quote a procedure's heading)."""
    return [Source(s.n, s.title, f"{s.section.replace(' > ', '. ')}.\n{s.text}" if s.section
                   else s.text, s.lang, s.section) for s in sources]


def _doc_key(hit: RetrievedChunk) -> tuple[str, str]:
    return hit.corpus, hit.source or hit.id


def _one_number_per_document(plan: Plan, answer: str) -> str:
    """Markers of chunks of one document become the marker of its first cited chunk, so each
    document is one source card (adjacent repeats of a marker are folded)."""
    first: dict[tuple[str, str], int] = {}
    alias: dict[int, int] = {}
    for m in re.finditer(r"\[(\d{1,2})\]", answer):
        n = int(m.group(1))
        if 1 <= n <= len(plan.hits):
            alias[n] = first.setdefault(_doc_key(plan.hits[n - 1]), n)
    out = re.sub(r"\[(\d{1,2})\]", lambda m: f"[{alias.get(int(m.group(1)), int(m.group(1)))}]",
                 answer)
    return re.sub(r"(\[\d{1,2}\])(?:\s*\1)+", r"\1", out)


def _citations(plan: Plan, used: list[int]) -> list[Citation]:
    """One citation per document; its snippet joins the snippets of the document's chunks that
    were retrieved."""
    by_n = {s.n: (s, h) for s, h in zip(plan.sources, plan.hits, strict=True)}
    out: list[Citation] = []
    seen: set[tuple[str, str]] = set()
    for n in used:
        if n not in by_n:
            continue
        src, hit = by_n[n]
        key = _doc_key(hit)
        if key in seen:
            continue
        seen.add(key)
        snippets = [_snippet(s.text) for s, h in by_n.values() if _doc_key(h) == key]
        out.append(Citation(
            number=n, title=src.title, source=hit.source, url=str(hit.metadata.get("url", "")),
            snippet=" … ".join(dict.fromkeys(snippets[:3])), corpus=hit.corpus,
            section=src.section,
        ))
    return out


def _snippet(text: str, n: int = 240) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1].rsplit(" ", 1)[0] + "…"
