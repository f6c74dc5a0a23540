"""The app factory: state, middleware (body limit, audit trail), error handlers and routes.
Bad input gets a 4xx with a reason, never a 500."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bot.auth import KeyStore
from bot.history import Purger
from bot.http.deps import STORE_ERRORS, AppState
from bot.http.limits import RequestLimits
from bot.http.routes import audit, chat, corpora, feedback, history, me, ops
from bot.http.trail import AuditMiddleware
from bot.ratelimit import RateLimiter
from bot.schemas import ErrorOut
from bot.service import ChatService
from gbg.i18n.detect import warm as detect_warm
from gbg.labels import Role
from gbg.settings import Settings

log = logging.getLogger("bot.http")


_WARM_UP_ERRORS: tuple[type[Exception], ...] = (HTTPException, *STORE_ERRORS)


def _warm_up(state: AppState) -> None:
    """Build the service and every role's BM25 index before the worker takes traffic: a
    worker that built them inside its first requests kept those waiting for seconds under load
    (measured: client timeouts at 30 s with 50 users). Chroma being down is not fatal: the
    worker starts, answers 503 and builds on a later request."""
    started = time.perf_counter()
    detect_warm()  # the language models (a few seconds), not inside the first question
    try:
        svc = state.get_service()
        for role in Role:
            svc.retriever.index_for(role)
    except _WARM_UP_ERRORS as exc:
        log.warning("warm-up skipped: %s", getattr(exc, "detail", type(exc).__name__))
        return
    log.info("warm-up done in %.1f s", time.perf_counter() - started)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("document store unavailable: %s", type(exc).__name__)
    return JSONResponse(
        {"detail": f"the document store is unavailable: {type(exc).__name__}"},
        status_code=503, headers={"Retry-After": "5"},
    )


def create_app(settings: Settings | None = None, service: ChatService | None = None) -> FastAPI:
    settings = settings or Settings()
    state = AppState(settings, RateLimiter(settings.bot), KeyStore(settings.keys_path),
                     service=service, audit=service.audit if service else None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Requests are CPU-bound Python (the GIL): dozens of threads competing for it starve
        # some requests for tens of seconds under load (measured p99 21 s at 50 users). A small
        # pool makes the rest wait in anyio's first-come, first-served queue instead.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.bot.threads
        if settings.bot.warm_up:
            await run_in_threadpool(_warm_up, state)
        # Expired conversations go at start-up and then hourly (also those stored before the
        # history was turned off).
        purger = Purger(state.get_history)
        purger.start()
        try:
            yield
        finally:
            purger.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="gbg-assist",
        version="0.1.0",
        description="Göteborgs Stad's assistant API: cited answers from the city's documents; "
        "personal and sensitive data stays on the city's machines. Every answer is AI-generated.",
        responses={422: {"model": ErrorOut}},
    )
    app.state.gbg = state
    app.add_middleware(RequestLimits, settings=settings.bot, limiter=state.limiter)
    app.add_middleware(AuditMiddleware, audit=state.get_audit)  # outermost: sees every answer
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in STORE_ERRORS:
        app.add_exception_handler(exc_type, _store_unavailable)
    for module in (ops, corpora, chat, audit, feedback, me, history):
        app.include_router(module.router)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory bot.http.app:app_factory` (several workers)."""
    return create_app(Settings())


