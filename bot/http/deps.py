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
from bot.history import ConversationStore, HistoryKeyError
from bot.http.trail import AuditTrail
from bot.oidc import (
    InvalidTokenError,
    ProviderUnavailableError,
    SubjectHasher,
    TokenVerifier,
    looks_like_jwt,
)
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
    history: ConversationStore | None = None
    _history_lock: threading.Lock = field(default_factory=threading.Lock)
    verifier: TokenVerifier | None = None

    def __post_init__(self) -> None:
        if self.settings.auth.oidc is not None and self.verifier is None:
            self.verifier = TokenVerifier(
                self.settings.auth.oidc,
                SubjectHasher.from_settings(self.settings.auth.subject_key_env,
                                            self.settings.data_dir, self.settings.development),
                https_only=not self.settings.development)

    def get_audit(self) -> AuditStore:
        if self.audit is None:
            with self._audit_lock:
                if self.audit is None:
                    self.audit = AuditStore(self.settings.audit_url)
        return self.audit

    def get_history(self) -> ConversationStore:
        """Signed-in people's conversations, in the audit database (``bot.history``)."""
        if self.history is None:
            with self._history_lock:
                if self.history is None:
                    self.history = ConversationStore.from_settings(
                        self.settings, self.get_audit().engine)
        return self.history

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


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def _signed_in(state: AppState, token: str) -> Principal:
    """A person signed in with the city's provider (an ID token)."""
    if state.verifier is None:
        raise _unauthorized("bearer tokens are not accepted: no sign-in provider is configured")
    try:
        return state.verifier.verify(token)
    except InvalidTokenError as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    except ProviderUnavailableError as exc:
        log.warning("sign-in provider unavailable: %s", exc)
        raise HTTPException(503, f"the sign-in provider is unavailable: {exc}",
                            headers={"Retry-After": "10"}) from exc


def caller(
    request: Request,
    state: State,
    x_api_key: Annotated[str | None, Header(description="API key for services and scripts.")]
    = None,
    authorization: Annotated[str | None, Header(
        description="Bearer: an ID token from the city's sign-in provider, or an API key.")]
    = None,
) -> Principal:
    """Who is asking: a signed-in person (an ID token), an API key's principal, or the public
    role. Every request was counted against its credential or address already
    (``bot.http.limits``); a wrong credential also counts against the address, so guessing is
    slowed, and a signed-in person is also counted as themself, whichever token they send."""
    key = x_api_key
    if not key and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    address = request.client.host if request.client else "unknown"
    try:
        p = _signed_in(state, key) if key and looks_like_jwt(key) else state.keys.authenticate(key)
    except InvalidCredentialsError as exc:
        _limited(state.limiter.hit("address", address))
        raise _unauthorized("invalid API key") from exc
    except HTTPException as exc:
        if exc.status_code in (401, 503):  # also while the provider is down: no free retries
            _limited(state.limiter.hit("address", address))
        raise
    if p.subject:
        _limited(state.limiter.hit("subject", p.subject))
    t = trail(request)
    t.role, t.subject = p.role, p.subject
    return p


Caller = Annotated[Principal, Depends(caller)]


def admin(who: Caller) -> Principal:
    if not who.admin:
        raise HTTPException(403, "the audit log needs an admin key")
    return who


Admin = Annotated[Principal, Depends(admin)]
Service = Annotated[ChatService, Depends(service)]
Audit = Annotated[AuditStore, Depends(audit_store)]


def history_any_key(state: State) -> ConversationStore:
    """The store even when its key is wrong: deleting needs no key (retention and erasure must
    work whatever happens to the key)."""
    return state.get_history()


def history_store(state: State) -> ConversationStore:
    store = state.get_history()
    try:
        store.check_key()
    except HistoryKeyError as exc:
        raise HTTPException(503, f"conversation history is unavailable: {exc}") from exc
    return store


History = Annotated[ConversationStore, Depends(history_store)]
HistoryAnyKey = Annotated[ConversationStore, Depends(history_any_key)]


def trail(request: Request) -> AuditTrail:
    """The request's audit trail (``bot.http.trail``): the one path that writes its record."""
    t: AuditTrail = request.state.trail
    return t


Trail = Annotated[AuditTrail, Depends(trail)]
