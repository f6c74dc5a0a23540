"""Dependencies over the app's state (STYLE 5): the service (built once, on first use), the
audit store, the caller (from an API key, with rate limits) and the admin check. Routes declare
them with the ``Annotated`` aliases at the bottom."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from chromadb.errors import ChromaError
from fastapi import Depends, Header, HTTPException, Request

from bot.audit import AuditStore
from bot.auth import InvalidCredentialsError, KeyStore, Principal
from bot.http.trail import AuditTrail
from bot.ratelimit import RateLimiter, Verdict
from bot.service import ChatService
from bot.wiring import build_service
from gbg.settings import Settings
from ingest.errors import EmbedderUnavailableError, StoreUnavailableError

log = logging.getLogger("bot.http")

# Exceptions that mean "the document store did not answer" (down, hung, restarting).
STORE_ERRORS: tuple[type[Exception], ...] = (
    StoreUnavailableError, ChromaError, httpx.HTTPError, ConnectionError, TimeoutError,
    EmbedderUnavailableError,
)


@dataclass
class AppState:
    """What the app holds between requests."""

    settings: Settings
    limiter: RateLimiter
    keys: KeyStore
    service: ChatService | None = None
    audit: AuditStore | None = None
    _build_lock: threading.Lock = field(default_factory=threading.Lock)
    _audit_lock: threading.Lock = field(default_factory=threading.Lock)

    def get_audit(self) -> AuditStore:
        if self.audit is None:
            with self._audit_lock:
                if self.audit is None:
                    self.audit = AuditStore(self.settings.audit_url)
        return self.audit

    def get_service(self) -> ChatService:
        """The service, built once on first use; when Chroma is down that fails with 503 and
        the next request tries again (no restart needed when Chroma returns)."""
        if self.service is None:
            try:
                with self._build_lock:
                    if self.service is None:
                        self.service = build_service(self.settings, audit=self.get_audit())
            except STORE_ERRORS as exc:
                log.warning("service not ready: %s", type(exc).__name__)
                raise HTTPException(
                    503, "the document store is unavailable; try again shortly",
                    headers={"Retry-After": "5"},
                ) from exc
        return self.service


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.gbg
    return state


State = Annotated[AppState, Depends(app_state)]


def service(state: State) -> ChatService:
    return state.get_service()


def audit_store(state: State) -> AuditStore:
    return state.get_audit()


def _limited(verdict: Verdict) -> None:
    if not verdict.allowed:
        raise HTTPException(
            429, f"rate limit {verdict.limit} exceeded; retry in {verdict.retry_after_s} s",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )


def caller(
    request: Request,
    state: State,
    x_api_key: Annotated[str | None, Header(description="API key for staff roles.")] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """Who is asking: an API key's principal, or the public role. Every request was counted
    against its key or address already (``bot.http.limits``); a wrong key also counts against
    the address, so guessing keys is slowed."""
    key = x_api_key
    if not key and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    address = request.client.host if request.client else "unknown"
    try:
        p = state.keys.authenticate(key)
    except InvalidCredentialsError as exc:
        _limited(state.limiter.hit("address", address))
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"}) from exc
    trail(request).role = p.role
    return p


Caller = Annotated[Principal, Depends(caller)]


def admin(who: Caller) -> Principal:
    if not who.admin:
        raise HTTPException(403, "the audit log needs an admin key")
    return who


Admin = Annotated[Principal, Depends(admin)]
Service = Annotated[ChatService, Depends(service)]
Audit = Annotated[AuditStore, Depends(audit_store)]


def trail(request: Request) -> AuditTrail:
    """The request's audit trail (``bot.http.trail``): the one path that writes its record."""
    t: AuditTrail = request.state.trail
    return t


Trail = Annotated[AuditTrail, Depends(trail)]
