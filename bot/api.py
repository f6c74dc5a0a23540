"""The HTTP API (FastAPI). Routes are thin: they authenticate, validate, call the service and
translate its errors to status codes. Bad input gets a 4xx with a reason, never a 500."""


import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.access import Role, can_read
from bot.audit import AuditRecord, AuditStore, UnknownRequestError
from bot.auth import InvalidCredentialsError, KeyStore, Principal
from bot.ratelimit import RateLimiter
from bot.retrieval.retriever import CorpusNotPermittedError, UnknownCorpusError
from bot.schemas import AuditOut, ChatIn, ChatOut, CorpusOut, ErrorOut, FeedbackIn
from bot.service import ChatRequest, ChatResult, ChatService
from bot.service import Message as ChatMessage
from gbg.settings import Settings

log = logging.getLogger("bot.api")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, also when no Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_json(send, 413, {"detail": f"request body over {self.limit} bytes"})
                return
        if any(name == b"content-length" for name, _ in scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        # No length announced (chunked upload): read it all, counting, then replay it.
        body: list[Message] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                body.append(msg)
                break
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                await _send_json(send, 413, {"detail": f"request body over {self.limit} bytes"})
                return
            body.append(msg)
            if not msg.get("more_body"):
                break

        async def replay() -> Message:
            return body.pop(0) if body else await receive()

        await self.app(scope, replay, send)


class _TooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def store_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean "the document store did not answer" (down, hung, restarting)."""
    import httpx
    from chromadb.errors import ChromaError

    from ingest.errors import StoreUnavailableError

    return (StoreUnavailableError, ChromaError, httpx.HTTPError, ConnectionError, TimeoutError)


def create_app(settings: Settings | None = None, service: ChatService | None = None) -> FastAPI:
    settings = settings or Settings()
    state: dict[str, Any] = {"service": service, "audit": service.audit if service else None}
    unavailable = store_errors()

    build_lock, audit_lock = threading.Lock(), threading.Lock()

    def get_service() -> ChatService:
        """The service, built once on first use; when Chroma is down that fails with 503 and
        the next request tries again (no restart needed when Chroma returns)."""
        if state["service"] is None:
            try:
                with build_lock:
                    if state["service"] is None:
                        state["service"] = build_service(settings, audit=get_audit())
            except unavailable as exc:
                log.warning("service not ready: %s", type(exc).__name__)
                raise HTTPException(
                    503, "the document store is unavailable; try again shortly",
                    headers={"Retry-After": "5"},
                ) from exc
        svc: ChatService = state["service"]
        return svc

    def get_audit() -> AuditStore:
        if state["audit"] is None:
            with audit_lock:
                if state["audit"] is None:
                    state["audit"] = AuditStore(settings.audit_url)
        audit: AuditStore = state["audit"]
        return audit

    limiter = RateLimiter(settings.bot)
    keys = KeyStore(settings.keys_path)
    def warm_up() -> None:
        """Build the service and every role's BM25 index before the worker takes traffic: a
        worker that built them inside its first requests kept those waiting for seconds under
        load (measured: client timeouts at 30 s with 50 users). Chroma being down is not fatal:
        the worker starts, answers 503 and builds on a later request."""
        started = time.perf_counter()
        try:
            svc = get_service()
            for role in Role:
                svc.retriever.index_for(role)
        except (HTTPException, *unavailable) as exc:  # type: ignore[misc]
            log.warning("warm-up skipped: %s", getattr(exc, "detail", type(exc).__name__))
            return
        log.info("warm-up done in %.1f s", time.perf_counter() - started)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Requests are CPU-bound Python (the GIL): dozens of threads competing for it starve
        # some requests for tens of seconds under load (measured p99 21 s at 50 users). A small
        # pool makes the rest wait in anyio's first-come, first-served queue instead.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.bot.threads
        if settings.bot.warm_up:
            await run_in_threadpool(warm_up)
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="gbg-assist",
        version="0.1.0",
        description="Göteborgs Stad's assistant API: cited answers from the city's documents; "
        "personal and sensitive data stays on the city's machines. Every answer is AI-generated.",
        responses={422: {"model": ErrorOut}},
    )
    app.add_middleware(BodyLimit, limit=settings.bot.max_body_bytes)

    @app.middleware("http")
    async def audit_every_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = uuid.uuid4().hex
        request.state.role = Role.public
        request.state.audited = False
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        if not request.state.audited and request.url.path not in ("/healthz",):
            try:
                get_audit().write(AuditRecord(
                    request_id=request.state.request_id, endpoint=request.url.path[:32],
                    status=response.status_code, role=request.state.role.value,
                    latency_ms=round((time.perf_counter() - started) * 1000, 1),
                ))
            except Exception:  # the audit store being down must not hide the answer's status
                log.exception("audit write failed")
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        parts = []
        for e in errs[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("document store unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"detail": f"the document store is unavailable: {type(exc).__name__}"},
            status_code=503, headers={"Retry-After": "5"},
        )

    for exc_type in unavailable:
        app.add_exception_handler(exc_type, store_unavailable)

    def principal(
        request: Request,
        x_api_key: Annotated[str | None, Header(description="API key for staff roles.")] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        key = x_api_key
        if not key and authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        address = request.client.host if request.client else "unknown"
        try:
            p = keys.authenticate(key)
        except InvalidCredentialsError as exc:
            limited(limiter.hit("address", address))  # guessing keys counts against the address
            raise HTTPException(
                401, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
            ) from exc
        request.state.role = p.role
        if key:
            limited(limiter.hit("key", p.name))
        else:
            limited(limiter.hit("address", address))
        return p

    def limited(verdict: Any) -> None:
        if not verdict.allowed:
            raise HTTPException(
                429, f"rate limit {verdict.limit} exceeded; retry in {verdict.retry_after_s} s",
                headers={"Retry-After": str(verdict.retry_after_s)},
            )

    def admin(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if not caller.admin:
            raise HTTPException(403, "the audit log needs an admin key")
        return caller

    Caller = Annotated[Principal, Depends(principal)]
    Svc = Annotated[ChatService, Depends(get_service)]

    # Probes must answer while every request thread is busy (a load balancer that times out
    # on /readyz under load would take a healthy worker out): /healthz runs on the event loop,
    # /readyz on threads of its own.
    probe_threads = anyio.CapacityLimiter(2)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorOut}})
    async def readyz() -> JSONResponse:
        """Chroma and the configured providers answer."""

        def check() -> tuple[bool, dict[str, bool]]:
            svc = get_service()
            return (svc.retriever.store.heartbeat(),
                    {name: svc.provider_available(name) for name in svc.providers})

        chroma, providers = await anyio.to_thread.run_sync(check, limiter=probe_threads)
        ok = chroma and any(providers.values())
        return JSONResponse(
            {"status": "ready" if ok else "unavailable", "chroma": chroma, "providers": providers},
            status_code=200 if ok else 503,
        )

    @app.get("/v1/corpora", response_model=list[CorpusOut], tags=["chat"])
    def corpora(svc: Svc, caller: Caller) -> list[CorpusOut]:
        """The corpora the caller may read, with their labels."""
        out = []
        for name, meta in sorted(svc.retriever.corpora().items()):
            if not can_read(caller.role, str(meta.get("audience"))):
                continue
            out.append(CorpusOut(
                name=name, title=str(meta.get("title", name)),
                description=str(meta.get("description", "")),
                audience=str(meta.get("audience")), sensitivity=str(meta.get("sensitivity")),
                languages=[x for x in str(meta.get("languages", "")).split(",") if x],
                chunks=int(meta.get("chunks", 0)),
                documents=int(meta["documents"]) if "documents" in meta else None,
                last_ingest=str(meta.get("last_ingest")) if meta.get("last_ingest") else None,
                readable=True,
            ))
        return out

    def to_request(body: ChatIn, caller: Principal, request: Request) -> ChatRequest:
        s = settings.bot
        if len(body.messages) > s.max_turns:
            raise HTTPException(422, f"too many turns: {len(body.messages)} > {s.max_turns}")
        for i, m in enumerate(body.messages):
            if len(m.content) > s.max_message_chars:
                raise HTTPException(
                    422, f"messages[{i}].content longer than {s.max_message_chars} characters"
                )
            if not m.content.strip():
                raise HTTPException(422, f"messages[{i}].content is blank")
        if body.messages[-1].role != "user":
            raise HTTPException(422, "the last message must be the user's question")
        return ChatRequest(
            messages=[ChatMessage(m.role, m.content) for m in body.messages],
            role=caller.role, corpora=body.corpora, lang=body.lang,
            request_id=request.state.request_id,
        )

    def plan_errors(exc: Exception) -> HTTPException:
        if isinstance(exc, UnknownCorpusError):
            return HTTPException(422, str(exc))
        if isinstance(exc, CorpusNotPermittedError):
            return HTTPException(403, str(exc))
        return HTTPException(503, f"the document store is unavailable: {type(exc).__name__}",
                             headers={"Retry-After": "5"})

    @app.post(
        "/v1/chat",
        response_model=ChatOut,
        tags=["chat"],
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
            401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 413: {"model": ErrorOut},
            503: {"model": ErrorOut},
        },
    )
    def chat(body: ChatIn, request: Request, caller: Caller, svc: Svc) -> Response:
        """Answer the last user message from the documents the caller may read, with citations."""
        req = to_request(body, caller, request)
        headers = {"X-AI-Generated": "true", "X-Request-ID": req.request_id}
        events = svc.stream(req)
        try:
            first = next(events)  # plans the request: bad corpora etc. surface here as 4xx
        except (UnknownCorpusError, CorpusNotPermittedError) as exc:
            raise plan_errors(exc) from exc
        except unavailable as exc:
            log.warning("chat planning: document store unavailable (%s)", type(exc).__name__)
            raise plan_errors(exc) from exc

        def finish(result: ChatResult) -> dict[str, Any]:
            svc.audit.write(svc.audit_record(result, caller.role))
            request.state.audited = True
            payload = asdict(result)
            for k in ("query", "chunk_ids", "corpora"):
                payload.pop(k, None)
            return payload

        if not body.stream:
            final = first
            for ev in events:
                final = ev
            payload = finish(final["result"])
            return JSONResponse(payload, headers={**headers, "X-AI-Provider": str(payload["provider"]),
                                                   "X-AI-Model": str(payload["model"])})

        request.state.audited = True  # the stream writes its own record when it ends

        def sse() -> Iterator[bytes]:
            done = False
            try:
                for ev in [first, *[]]:
                    yield _sse_event(ev, finish)
                    done = ev["type"] == "final"
                for ev in events:
                    yield _sse_event(ev, finish)
                    done = done or ev["type"] == "final"
            finally:
                if not done:
                    log.info("client left before the end of request %s", req.request_id)

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    @app.get("/v1/audit", response_model=list[AuditOut], tags=["ops"],
             responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
    def audit_log(
        _: Annotated[Principal, Depends(admin)],
        level: Annotated[Literal["public", "internal", "sensitive"] | None,
                         Query(description="Only this sensitivity level.")] = None,
        provider: Annotated[str | None, Query(max_length=64, description="Only this provider.")
                            ] = None,
        refused: Annotated[bool | None, Query(description="Only refused (or answered).")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[AuditOut]:
        """The newest audit records (admin keys only). Questions and comments are stored
        redacted; questions of sensitive requests are not stored at all."""
        rows = get_audit().query(level=level, provider=provider, refused=refused, limit=limit)
        return [AuditOut.model_validate(r) for r in rows]

    @app.post("/v1/feedback", tags=["chat"], status_code=201,
              responses={404: {"model": ErrorOut}})
    def feedback(body: FeedbackIn, caller: Caller, svc: Svc) -> dict[str, str]:
        """Rate an answer by its request id."""
        comment = svc.detector.redact(body.comment) if body.comment else None
        try:
            svc.audit.feedback(body.request_id, body.rating, comment)
        except UnknownRequestError as exc:
            raise HTTPException(404, f"unknown request id {body.request_id}") from exc
        return {"status": "stored", "request_id": body.request_id}

    return app


def _sse_event(ev: dict[str, Any], finish: Callable[[ChatResult], dict[str, Any]]) -> bytes:
    if ev["type"] == "final":
        data = finish(ev["result"])
        return f"event: final\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
    if ev["type"] == "reset":
        return b"event: reset\ndata: {}\n\n"
    return f"event: token\ndata: {json.dumps({'text': ev['text']}, ensure_ascii=False)}\n\n".encode()


def build_service(settings: Settings, audit: Any = None) -> ChatService:
    from bot.llm.registry import build_providers
    from bot.retrieval.retriever import HybridRetriever
    from ingest.embedders import get_embedder
    from ingest.store import ChromaStore

    store = ChromaStore.from_settings(settings)
    embedder = get_embedder(settings.embedder)
    retriever = HybridRetriever(store, embedder, settings.retrieval)
    detector = build_detector(retriever)
    return ChatService(settings, retriever, build_providers(settings),
                       audit or AuditStore(settings.audit_url), detector)


def build_detector(retriever: Any) -> Any:
    """Client names from the sensitive corpora; capitalised words of public corpora as places."""
    import re

    from bot.sensitivity import Detector

    names: set[str] = set()
    public_caps: set[str] = set()
    public_pairs: set[str] = set()
    low, up = r"[^\W\d_A-ZÅÄÖ]", r"[A-ZÅÄÖČĆŠŽ]"
    name_re = re.compile(rf"\b{up}{low}+(?:-{up}{low}+)? {up}{low}+\b")
    for name, meta in retriever.corpora().items():
        col = retriever.store.get(name)
        if col is None:
            continue
        sens = str(meta.get("sensitivity"))
        for _, m, doc, _ in col.iter_records(include=["metadatas", "documents"]):
            text = f"{m.get('title', '')}\n{doc or ''}"
            if sens == "sensitive":
                names.update(name_re.findall(text))
            elif sens == "public":
                public_caps.update(w.lower() for w in re.findall(r"\b[A-ZÅÄÖ][\wåäöé]+", text))
                public_pairs.update(n.lower() for n in name_re.findall(text))
    # A "name" that public texts also use (a statue, a street) is not a client's, nor is one
    # that starts with a medicine ("Insulin Lantus").
    from bot.sensitivity import _health_word

    names = {
        n for n in names
        if n.lower() not in public_pairs and not _health_word(n.split()[0].lower())
    }
    return Detector(client_names=frozenset(names), public_terms=frozenset(public_caps))


def app_factory() -> FastAPI:
    """For `uvicorn --factory bot.api:app_factory` (several workers)."""
    return create_app(Settings())
