"""The one path that writes audit records. A middleware gives every request an ``AuditTrail``;
the chat route writes the record when the request is decided (before any answer text is sent)
and completes it when the answer ends; when the request ends the trail writes what is still
missing: a plain record for every other request, ``client_disconnected`` for an answer the
client left, ``error`` for one that failed."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.audit import AuditRecord, AuditStore
from gbg.labels import Role

log = logging.getLogger("bot.http")

UNAUDITED_PATHS = frozenset({"/healthz"})
# Responses that answer nothing (no such path or method): rate-limited like every request, but
# not worth an audit row each (a scanner would fill the log).
NOISE = frozenset({404, 405})


class AuditTrail:
    def __init__(self, audit: AuditStore | None, request_id: str, endpoint: str) -> None:
        self._audit = audit
        self.request_id = request_id
        self.endpoint = endpoint[:32]
        self.role = Role.public
        self.subject: str | None = None  # a signed-in person's pseudonymous id
        self.started = time.perf_counter()
        self._written: AuditRecord | None = None
        self._finished = False

    def _safe(self, write: str, record: AuditRecord) -> None:
        if self._audit is None:
            return
        if self.subject and record.subject is None:
            record = record.model_copy(update={"subject": self.subject})
        try:
            getattr(self._audit, write)(record)
        except Exception:  # the audit store being down must not hide the answer's status
            log.exception("audit %s failed", write)

    def decided(self, record: AuditRecord) -> None:
        """Write the record of a planned request (before anything is streamed)."""
        self._safe("write", record)
        self._written = record

    def finished(self, record: AuditRecord) -> None:
        """Complete the record with the answer's outcome."""
        if self._written is None:
            self._safe("write", record)
        else:
            self._safe("complete", record)
        self._written, self._finished = record, True

    def close(self, status: int, body_sent: bool, failed: bool = False) -> None:
        """The request is over: write what the route did not."""
        latency = round((time.perf_counter() - self.started) * 1000, 1)
        if self._written is None and status in NOISE:
            log.info("not audited: %s %s", status, self.endpoint)  # probes for paths, typos
            return
        if self._written is None:
            self._safe("write", AuditRecord(
                request_id=self.request_id, endpoint=self.endpoint, status=status,
                role=self.role.value, subject=self.subject, latency_ms=latency,
            ))
        elif not self._finished or not body_sent:
            outcome = "error" if failed or status >= 500 else "client_disconnected"
            self._safe("complete", self._written.model_copy(update={
                "status": status, "latency_ms": latency, "outcome": outcome}))


class AuditMiddleware:
    """Gives each request an id (``X-Request-ID``) and an audit trail, closed when the response
    is sent or the client has gone."""

    def __init__(self, app: ASGIApp, audit: Callable[[], AuditStore]) -> None:
        self.app = app
        self._audit = audit  # built on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        path = str(scope.get("path", ""))
        trail = AuditTrail(None if path in UNAUDITED_PATHS else self._audit(), request_id, path)
        scope.setdefault("state", {})["trail"] = trail
        scope["state"]["request_id"] = request_id
        status, body_sent = 500, False

        async def tracked(message: Message) -> None:
            nonlocal status, body_sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = message.setdefault("headers", [])
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                body_sent = True
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, tracked)
        except BaseException:
            failed = True
            raise
        finally:
            trail.close(status, body_sent, failed)
