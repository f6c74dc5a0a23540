"""``POST /v1/chat``: answer the last user message from the documents the caller may read."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response, StreamingResponse

from bot.auth import Principal
from bot.http import sse
from bot.http.deps import STORE_ERRORS, AppState, Caller, Service, State, Trail
from bot.models import ChatRequest, ChatResult, DecidedEvent, FinalEvent, Message, StreamEvent
from bot.retrieval.types import CorpusNotPermittedError, CorpusNotReadyError, UnknownCorpusError
from bot.schemas import ChatIn, ErrorOut
from gbg.labels import Role, Sensitivity
from gbg.settings import BotSettings

log = logging.getLogger("bot.http")
router = APIRouter(tags=["chat"])


def to_request(body: ChatIn, role: Role, request_id: str, limits: BotSettings,
               floor: Sensitivity = Sensitivity.public) -> ChatRequest:
    """The service's request, or a 422 that says what is wrong."""
    if len(body.messages) > limits.max_turns:
        raise HTTPException(422, f"too many turns: {len(body.messages)} > {limits.max_turns}")
    for i, m in enumerate(body.messages):
        if len(m.content) > limits.max_message_chars:
            raise HTTPException(
                422, f"messages[{i}].content longer than {limits.max_message_chars} characters"
            )
        if not m.content.strip():
            raise HTTPException(422, f"messages[{i}].content is blank")
    if body.messages[-1].role != "user":
        raise HTTPException(422, "the last message must be the user's question")
    return ChatRequest(
        messages=[Message(m.role, m.content) for m in body.messages],
        role=role, corpora=body.corpora, lang=body.lang, request_id=request_id, floor=floor,
    )


def _decide(events: Iterator[StreamEvent]) -> DecidedEvent:
    """Plan the request (the stream's first event); bad corpora and a down store surface
    here, as 4xx and 503."""
    try:
        first = next(events)
    except UnknownCorpusError as exc:
        raise HTTPException(422, str(exc)) from exc
    except CorpusNotPermittedError as exc:
        raise HTTPException(403, str(exc)) from exc
    except CorpusNotReadyError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "10"}) from exc
    except STORE_ERRORS as exc:
        log.warning("chat planning: document store unavailable (%s)", type(exc).__name__)
        raise HTTPException(503, f"the document store is unavailable: {type(exc).__name__}",
                            headers={"Retry-After": "5"}) from exc
    assert isinstance(first, DecidedEvent)
    return first


def _floor(state: AppState, who: Principal, body: ChatIn) -> Sensitivity:
    """The level the continued conversation reached: its next turn is classified no lower
    (even if the client leaves the earlier turns out). When the history cannot be read, assume
    the worst: the turn stays on the city's machines."""
    if who.subject is None or not body.conversation_id:
        return Sensitivity.public
    try:
        return state.get_history().level(who.subject, body.conversation_id) or Sensitivity.public
    except Exception as exc:
        log.warning("conversation history: level of a continued conversation unknown (%s)",
                    type(exc).__name__)
        return Sensitivity.sensitive


def _remember(state: AppState, who: Principal, body: ChatIn, result: ChatResult) -> None:
    """Store the turn in the signed-in caller's conversation history and put its id in the
    result. A failure leaves the answer as it is: logged by type only (no content)."""
    if who.subject is None or not state.settings.history.enabled:
        return
    try:
        result.conversation_id = state.get_history().append(
            who.subject, body.conversation_id, body.messages[-1].content, result)
    except Exception as exc:  # the answer matters more than its history
        log.warning("conversation history: storing request %s failed (%s)",
                    result.request_id, type(exc).__name__)


@router.post(
    "/v1/chat",
    response_model=ChatResult,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
        401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 413: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
def chat(body: ChatIn, who: Caller, svc: Service, state: State,
         trail: Trail) -> Response:
    """Answer the last user message from the documents the caller may read, with citations."""
    req = to_request(body, who.role, trail.request_id, state.settings.bot,
                     _floor(state, who, body))
    headers = {"X-AI-Generated": "true"}  # X-Request-ID: the audit middleware
    events = svc.stream(req)
    trail.decided(_decide(events).record)

    def finished(result: ChatResult) -> ChatResult:
        trail.finished(svc.audit_record(result, who.role))
        _remember(state, who, body, result)
        return result

    if not body.stream:
        final = next(ev for ev in events if isinstance(ev, FinalEvent))
        result = finished(final.result)
        return Response(sse.result_payload(result), media_type="application/json", headers={
            **headers, "X-AI-Provider": str(result.provider), "X-AI-Model": str(result.model)})

    def stream() -> Iterator[bytes]:
        for ev in events:
            if isinstance(ev, FinalEvent):
                finished(ev.result)
            yield sse.encode(ev)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache"})
