"""The UI's only way to the bot: its HTTP API (no imports from bot/)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx


class BotUnavailableError(Exception):
    pass


class BotRequestError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status}: {detail}")


@dataclass
class BotClient:
    base_url: str
    api_key: str | None = None
    timeout_s: float = 120.0
    client_ip: str | None = None  # the end user's address, for the bot's per-address limit
    token: str | None = None  # a signed-in person's ID token (OpenID Connect)

    def _headers(self) -> dict[str, str]:
        if self.token:
            h = {"Authorization": f"Bearer {self.token}"}
        else:
            h = {"X-API-Key": self.api_key} if self.api_key else {}
        if self.client_ip:
            h["X-Forwarded-For"] = self.client_ip
        return h

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = httpx.request(method, f"{self.base_url.rstrip('/')}{path}",
                              headers=self._headers(), timeout=self.timeout_s, **kw)
        except httpx.HTTPError as exc:
            raise BotUnavailableError(self.base_url) from exc
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise BotRequestError(r.status_code, str(detail))
        return r

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url.rstrip('/')}/healthz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def corpora(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/corpora").json())

    def audit(self, level: str | None = None, provider: str | None = None,
              refused: bool | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The redacted audit log (admin keys only; 403 otherwise)."""
        params: dict[str, Any] = {"limit": limit}
        if level:
            params["level"] = level
        if provider:
            params["provider"] = provider
        if refused is not None:
            params["refused"] = str(refused).lower()
        return list(self._call("GET", "/v1/audit", params=params).json())

    def feedback(self, request_id: str, token: str, rating: int, comment: str | None) -> None:
        """Rate an answer; ``token`` is the answer's feedback token (proof of who asked)."""
        self._call("POST", "/v1/feedback",
                   json={"request_id": request_id, "token": token, "rating": rating,
                         "comment": comment or None})

    def me(self) -> dict[str, Any]:
        """Who the bot takes the caller for: role, admin, signed_in, name."""
        return dict(self._call("GET", "/v1/me").json())

    def conversations(self) -> list[dict[str, Any]]:
        """The signed-in person's stored conversations, newest first."""
        return list(self._call("GET", "/v1/conversations").json())

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        """One stored conversation with its messages."""
        return dict(self._call("GET", f"/v1/conversations/{quote(conversation_id, safe='')}")
                    .json())

    def delete_conversation(self, conversation_id: str) -> None:
        self._call("DELETE", f"/v1/conversations/{quote(conversation_id, safe='')}")

    def delete_conversations(self) -> int:
        """Delete all of the person's conversations; how many went."""
        return int(self._call("DELETE", "/v1/conversations").json().get("deleted", 0))

    def export(self) -> bytes:
        """Everything the bot keeps about the signed-in person, as JSON."""
        return self._call("GET", "/v1/me/export").content

    def chat_stream(self, messages: list[dict[str, str]], conversation_id: str | None = None
                    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """("token", {"text"}) events while the answer is written, then ("final", result).
        ``conversation_id``: the stored conversation this turn continues (signed in).

        No ``lang``: the bot answers in the question's language (it detects it); the UI's
        language is the user's choice for the page, not for the answers."""
        body: dict[str, Any] = {"messages": messages, "stream": True}
        if conversation_id:
            body["conversation_id"] = conversation_id
        try:
            with httpx.stream("POST", f"{self.base_url.rstrip('/')}/v1/chat", json=body,
                              headers=self._headers(), timeout=self.timeout_s) as r:
                if r.status_code >= 400:
                    r.read()
                    try:
                        detail = r.json().get("detail", r.text)
                    except ValueError:
                        detail = r.text
                    raise BotRequestError(r.status_code, str(detail))
                kind = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:].strip()
                    elif line.startswith("data: ") and kind:
                        yield kind, json.loads(line[6:])
        except httpx.HTTPError as exc:
            raise BotUnavailableError(self.base_url) from exc

