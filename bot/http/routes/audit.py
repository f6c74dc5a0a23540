"""The audit log, for admin keys."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from bot.audit import AuditEntry
from bot.http.deps import Admin, Audit
from bot.schemas import ErrorOut

router = APIRouter(tags=["ops"])


@router.get("/v1/audit", response_model=list[AuditEntry],
            responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
def audit_log(
    _: Admin,
    store: Audit,
    level: Annotated[Literal["public", "internal", "sensitive"] | None,
                     Query(description="Only this sensitivity level.")] = None,
    provider: Annotated[str | None, Query(max_length=64, description="Only this provider.")] = None,
    refused: Annotated[bool | None, Query(description="Only refused (or answered).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntry]:
    """The newest audit records (admin keys only). Questions and comments are stored
    redacted; questions of sensitive requests are not stored at all."""
    rows = store.query(level=level, provider=provider, refused=refused, limit=limit)
    return [AuditEntry.model_validate(r) for r in rows]
