"""A real OpenID Connect provider on loopback (the ``oidc-provider-mock`` package: discovery,
JWKS, the authorization-code flow, the token endpoint and a login form), and ID tokens obtained
from it the way a relying party gets them: authorize, then exchange the code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import oidc_provider_mock

CLIENT_ID = "gbg-ui"
CLIENT_SECRET = "test-secret"  # the mock accepts any client secret


@dataclass
class Provider:
    port: int

    @property
    def url(self) -> str:
        """The issuer: the provider names itself after the host it is reached by."""
        return f"http://localhost:{self.port}"

    def user(self, sub: str, **claims: Any) -> None:
        """Create or replace a user and the claims their tokens carry (e.g. ``groups``)."""
        r = httpx.put(f"{self.url}/users/{quote(sub, safe='')}", json=claims, timeout=10)
        r.raise_for_status()

    def tokens(self, sub: str, *, client_id: str = CLIENT_ID, host: str = "localhost",
               scope: str = "openid profile email") -> dict[str, Any]:
        """The token response for ``sub`` after the authorization-code flow. ``host`` is the
        name the provider is reached by (it becomes the token's issuer)."""
        base = f"http://{host}:{self.port}"
        redirect = "http://localhost/callback"
        r = httpx.post(f"{base}/oauth2/authorize", params={
            "client_id": client_id, "redirect_uri": redirect, "response_type": "code",
            "scope": scope, "state": "s"}, data={"sub": sub}, timeout=10)
        assert r.status_code in (302, 303), r.text[:300]
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        t = httpx.post(f"{base}/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
            "client_id": client_id, "client_secret": CLIENT_SECRET}, timeout=10)
        t.raise_for_status()
        tokens: dict[str, Any] = t.json()
        return tokens

    def id_token(self, sub: str, **kw: Any) -> str:
        return str(self.tokens(sub, **kw)["id_token"])


@contextmanager
def provider(port: int = 0, token_max_age: timedelta = timedelta(hours=1)) -> Iterator[Provider]:
    """A provider on a thread of this process; a new one on the same port has a new signing
    key (a key rotation, as the bot sees it)."""
    with oidc_provider_mock.run_server_in_thread(
        port=port, access_token_max_age=token_max_age
    ) as server:
        yield Provider(server.server_port)


class SigningIssuer:
    """An issuer whose tokens the test shapes itself (claims and headers that real providers
    send but the mock does not: several audiences with ``azp``, Keycloak's and Entra's access
    tokens, key ids), served like a provider: discovery and JWKS over HTTP on loopback, tokens
    signed with its own RSA keys."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from joserfc.jwk import RSAKey

        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
        self.requests: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests.append(self.path)
                body: dict[str, Any]
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [k.as_dict(private=False) for k in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def rotate(self) -> None:
        from joserfc.jwk import RSAKey

        kid = f"k{len(self.keys) + 1}"
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": kid})]

    def token(self, sub: str = "anna", header: dict[str, Any] | None = None,
              key_index: int = 0, **claims: Any) -> str:
        import time

        from joserfc import jwt

        now = int(time.time())
        body = {"iss": self.url, "sub": sub, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                **claims}
        key = self.keys[key_index]
        head = {"alg": "RS256", "kid": key.kid, **(header or {})}
        return jwt.encode(head, {k: v for k, v in body.items() if v is not None}, key)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
