"""Limits every request meets before any route: header size and count (431), body size (413)
and the rate limit (429), for 404s and malformed requests too, so that noise costs the sender,
not the service. Probes are exempt."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.ratelimit import RateLimiter
from gbg.settings import BotSettings

PROBES = frozenset({"/healthz", "/readyz"})


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _credential(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-api-key" and value:
            return value.decode("latin-1")
        if name == b"authorization" and value.lower().startswith(b"bearer "):
            return value[7:].decode("latin-1").strip()
    return None


class RequestLimits:
    """Header, body and rate limits as one ASGI middleware."""

    def __init__(self, app: ASGIApp, settings: BotSettings, limiter: RateLimiter) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        s = self.settings
        if len(headers) > s.max_headers or sum(len(k) + len(v) for k, v in headers) > (
            s.max_header_bytes
        ):
            await send_json(send, 431, {"detail": f"request headers over {s.max_headers} lines "
                                                  f"or {s.max_header_bytes} bytes"})
            return
        if str(scope.get("path", "")) not in PROBES and not await self._allowed(scope, send):
            return
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > s.max_body_bytes:
                await self._too_large(send)
                return
        if any(name == b"content-length" for name, _ in headers):
            await self.app(scope, receive, send)
            return
        await self._chunked(scope, receive, send)

    async def _allowed(self, scope: Scope, send: Send) -> bool:
        """Count the request against its key (by the key's hash: it is not checked yet) or,
        without one, its address; the route's own check counts a wrong key against the
        address too."""
        key = _credential(scope.get("headers", []))
        if key:
            verdict = self.limiter.hit("key", hashlib.sha256(key.encode()).hexdigest()[:24])
        else:
            client = scope.get("client")
            verdict = self.limiter.hit("address", client[0] if client else "unknown")
        if verdict.allowed:
            return True
        await send_json(
            send, 429,
            {"detail": f"rate limit {verdict.limit} exceeded; retry in {verdict.retry_after_s} s"},
            [(b"retry-after", str(verdict.retry_after_s).encode())],
        )
        return False

    async def _chunked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No length announced (chunked upload): read it all, counting, then replay it."""
        body: list[Message] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                body.append(msg)
                break
            seen += len(msg.get("body", b""))
            if seen > self.settings.max_body_bytes:
                await self._too_large(send)
                return
            body.append(msg)
            if not msg.get("more_body"):
                break

        async def replay() -> Message:
            return body.pop(0) if body else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await send_json(send, 413, {"detail": f"request body over {self.settings.max_body_bytes} "
                                              "bytes"})
