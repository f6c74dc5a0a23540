"""Probes: the process is up (``/healthz``), Chroma and a provider answer (``/readyz``)."""

from __future__ import annotations

import anyio
import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from bot.http.deps import STORE_ERRORS, State
from bot.schemas import ErrorOut

router = APIRouter(tags=["ops"])

# Probes must answer while every request thread is busy (a load balancer that times out on
# /readyz under load would take a healthy worker out): /healthz runs on the event loop, /readyz
# on threads of its own.
_PROBE_THREADS = anyio.CapacityLimiter(2)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorOut}})
async def readyz(state: State) -> JSONResponse:
    """Chroma and the configured providers answer."""

    def check() -> tuple[bool, dict[str, bool], dict[str, str]]:
        svc = state.get_service()
        up = svc.retriever.store.heartbeat()
        corpora: dict[str, str] = {}
        if up:
            try:
                corpora = {name: str(meta.get("state") or "ready")
                           for name, meta in sorted(svc.retriever.corpora().items())}
            except STORE_ERRORS:
                up = False
        return up, {name: svc.provider_available(name) for name in svc.providers}, corpora

    chroma, providers, corpora = await anyio.to_thread.run_sync(check, limiter=_PROBE_THREADS)
    ok = chroma and any(providers.values())
    # Ready means the service answers; a corpus still being ingested is listed as such and is
    # not answered from (the others are).
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", "chroma": chroma, "providers": providers,
         "corpora": corpora},
        status_code=200 if ok else 503,
    )
