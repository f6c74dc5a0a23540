"""Signed-in people's stored conversations (``bot.history``): list, reopen, delete one or all,
and export everything kept about oneself (a GDPR access request). Only the owner, a signed-in
subject, ever sees or touches a conversation; someone else's is a 404, like a missing one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import Response

from bot.auth import Principal
from bot.history import (
    ID_PATTERN,
    ConversationDetail,
    ConversationOut,
    ConversationUnreadableError,
)
from bot.http.deps import Audit, Caller, History, HistoryAnyKey
from bot.schemas import ErrorOut

router = APIRouter(tags=["history"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 503: {"model": ErrorOut}}
ConversationId = Annotated[str, PathParam(min_length=32, max_length=32, pattern=ID_PATTERN,
                                          description="The conversation's id.")]


def person(who: Caller) -> Principal:
    """The caller, who must be a signed-in person (API keys and anonymous callers keep no
    history)."""
    if who.subject is None:
        raise HTTPException(401, "conversation history needs a signed-in user",
                            headers={"WWW-Authenticate": "Bearer"})
    return who


Person = Annotated[Principal, Depends(person)]


def _subject(who: Principal) -> str:
    assert who.subject is not None  # ``person`` checked it
    return who.subject


@router.get("/v1/conversations", response_model=list[ConversationOut], responses=_ERRORS)
def list_conversations(who: Person, store: History) -> list[ConversationOut]:
    """Your stored conversations, the most recently used first. One stored under an earlier
    key that cannot be decrypted is listed with ``readable: false`` and no title."""
    return store.list(_subject(who))


@router.get("/v1/conversations/{conversation_id}", response_model=ConversationDetail,
            responses={**_ERRORS, 404: {"model": ErrorOut}})
def get_conversation(conversation_id: ConversationId, who: Person,
                     store: History) -> ConversationDetail:
    """One of your conversations with its messages, oldest first."""
    try:
        found = store.get(_subject(who), conversation_id)
    except ConversationUnreadableError as exc:
        raise HTTPException(
            503, "this conversation cannot be decrypted with the server's current key") from exc
    if found is None:
        raise HTTPException(404, "no such conversation")
    return found


@router.delete("/v1/conversations/{conversation_id}", status_code=204,
               responses={**_ERRORS, 404: {"model": ErrorOut}})
def delete_conversation(conversation_id: ConversationId, who: Person,
                        store: HistoryAnyKey) -> Response:
    """Delete one of your conversations."""
    if not store.delete(_subject(who), conversation_id):
        raise HTTPException(404, "no such conversation")
    return Response(status_code=204)


@router.delete("/v1/conversations", responses=_ERRORS)
def delete_conversations(who: Person, store: HistoryAnyKey) -> dict[str, int]:
    """Delete all your conversations."""
    return {"deleted": store.delete_all(_subject(who))}


@router.get("/v1/me/export", responses=_ERRORS)
def export(who: Person, store: HistoryAnyKey, audit: Audit) -> dict[str, Any]:
    """Everything stored about you: your pseudonymous subject, your role, your conversations
    (decrypted) and the audit records of your requests."""
    subject = _subject(who)
    return {
        "exported_at": datetime.now(UTC).isoformat(),
        "subject": subject,
        "role": who.role.value,
        "conversations": store.export(subject)["conversations"],
        "audit": audit.by_subject(subject),
    }
