"""Signed-in people: ID tokens from the city's OpenID Connect provider (Entra ID, Keycloak, ...).

The provider's discovery document names its JWKS; the keys are fetched, kept for
``jwks_cache_s`` and fetched again when a token is signed with a key the cache does not hold (a
rotation), at most once per ``jwks_refresh_min_s``. joserfc checks the signature (only the
asymmetric algorithms in the settings: never ``none``, never a shared secret) and the claims:
``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` with a small leeway. The role comes from a group
(or role) claim; the person is known to the rest of the bot only by a keyed hash of issuer and
``sub``."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet

from bot.auth import Principal
from gbg.labels import Role
from gbg.settings import OIDCSettings

log = logging.getLogger("bot.oidc")

ROLE_ORDER = (Role.public, Role.staff, Role.care)


class InvalidTokenError(Exception):
    """The token is not acceptable; the message says why (it never echoes the token)."""


class ProviderUnavailableError(Exception):
    """The provider's keys could not be fetched: the token can be neither accepted nor refused."""


def looks_like_jwt(credential: str) -> bool:
    parts = credential.split(".")
    return len(parts) == 3 and all(len(p) > 0 for p in parts[:2])


class SubjectHasher:
    """A keyed hash of (issuer, sub): stable for a person, meaningless without the key. The key
    comes from the environment or, failing that, a file made once in the data directory."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, env_name: str, data_dir: Path, development: bool = False
                      ) -> SubjectHasher:
        """The key from ``env_name``; in development, failing that, a file made once in the
        data directory. Outside development the key must be set: every replica and every
        restart must give a person the same pseudonym (their history, their audit records and
        their rate limit hang on it)."""
        if value := os.environ.get(env_name):
            if len(value) < 32:
                raise ValueError(f"{env_name} is too short: use at least 32 random characters")
            return cls(value.encode())
        if not development:
            raise ValueError(
                f"sign-in needs {env_name}: a secret of at least 32 characters, the same for "
                "every replica (e.g. `python -c \"import secrets; print(secrets.token_hex(32))\"`)")
        path = data_dir / "subject.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_name(f".subject.key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_hex(32).encode())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # the first process's key wins; the others read it
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ValueError(f"{path} does not hold a key; delete it to make a new one")
        return cls(key)

    def __call__(self, issuer: str, sub: str) -> str:
        msg = f"{issuer}\0{sub}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]


class JWKSCache:
    """The provider's signing keys, from its discovery document. One request fetches while the
    others go on with the keys held; a failed fetch is not repeated for ``jwks_refresh_min_s``
    (a provider that is down or slow must not hold up every request)."""

    def __init__(self, s: OIDCSettings, clock: Callable[[], float] = time.monotonic,
                 https_only: bool = True) -> None:
        self.s = s
        self._clock = clock
        self._https_only = https_only
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = -1e18  # last successful fetch
        self._tried = -1e18  # last attempt, successful or not
        self._jwks_uri: str | None = None
        self.fetches = 0

    def _get(self, url: str) -> dict[str, Any]:
        try:
            r = httpx.get(url, timeout=self.s.timeout_s, follow_redirects=False)
            r.raise_for_status()
            data = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailableError(
                f"the sign-in provider did not answer ({type(exc).__name__})") from exc
        if not isinstance(data, dict):
            raise ProviderUnavailableError("the sign-in provider sent an unexpected document")
        return data

    def _fetch(self) -> KeySet:
        if self._jwks_uri is None:
            doc = self._get(self.s.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if doc.get("issuer") != self.s.issuer:
                raise ProviderUnavailableError(
                    "the discovery document names another issuer than the one configured")
            uri = str(doc.get("jwks_uri") or "")
            if not uri or (self._https_only and not uri.startswith("https://")):
                raise ProviderUnavailableError("the discovery document has no HTTPS jwks_uri")
            self._jwks_uri = uri
        data = self._get(self._jwks_uri)
        try:
            keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise ProviderUnavailableError("the provider's key set could not be read") from exc
        self.fetches += 1
        return keys

    def keys(self, *, refresh: bool = False) -> KeySet:
        """The keys held; fetched when there are none, when they are older than the cache time,
        or when ``refresh`` is asked for (a key the set lacks) and the last attempt is not too
        recent."""
        now = self._clock()
        due = self._keys is None or now - self._fetched > self.s.jwks_cache_s or refresh
        if not due or (self._keys is not None and now - self._tried < self.s.jwks_refresh_min_s):
            if self._keys is None:  # the last attempt failed a moment ago
                raise ProviderUnavailableError("the sign-in provider did not answer")
            return self._keys
        # Only one fetch at a time; while it runs, the others use the keys held (if any).
        if not self._lock.acquire(blocking=self._keys is None):
            assert self._keys is not None
            return self._keys
        try:
            if self._keys is not None and self._clock() - self._tried < self.s.jwks_refresh_min_s:
                return self._keys  # another request fetched while this one waited
            self._tried = self._clock()
            try:
                self._keys = self._fetch()
                self._fetched = self._clock()
            except ProviderUnavailableError:
                if self._keys is None:
                    raise
                log.warning("sign-in provider keys could not be refreshed; keeping the held ones")
            return self._keys
        finally:
            self._lock.release()


class TokenVerifier:
    """ID token -> Principal."""

    def __init__(self, s: OIDCSettings, subject: SubjectHasher,
                 now: Callable[[], int] | None = None, https_only: bool = True) -> None:
        self.s = s
        self.jwks = JWKSCache(s, https_only=https_only)
        self._subject = subject
        self._now = now or (lambda: int(time.time()))
        self._audiences = [s.client_id, *s.audiences]

    def _decode(self, token: str) -> jwt.Token:
        algorithms = list(self.s.algorithms)
        try:
            return jwt.decode(token, self.jwks.keys(), algorithms=algorithms)
        except UnsupportedAlgorithmError as exc:
            raise InvalidTokenError("the token's signing algorithm is not accepted") from exc
        except (JoseError, ValueError) as exc:
            if not _may_be_rotation(exc, token):
                raise InvalidTokenError(_reason(exc)) from exc
            first = exc
        # A key the set lacks (a rotation): fetch the keys again (not too often) and try once
        # more.
        try:
            return jwt.decode(token, self.jwks.keys(refresh=True), algorithms=algorithms)
        except UnsupportedAlgorithmError as exc:
            raise InvalidTokenError("the token's signing algorithm is not accepted") from exc
        except (JoseError, ValueError) as exc:
            raise InvalidTokenError(_reason(first)) from exc

    def _id_token_only(self, header: dict[str, Any], claims: dict[str, Any]) -> None:
        """An ID token issued to this application, not an access token and not a token issued
        to another client that names this one among its audiences (OIDC Core 3.1.3.7)."""
        if str(header.get("typ", "")).lower() in ("at+jwt", "application/at+jwt"):
            raise InvalidTokenError("an access token is not accepted; send the ID token")
        if "typ" in claims and str(claims["typ"]).lower() != "id":  # Keycloak marks its tokens
            raise InvalidTokenError("only ID tokens are accepted")
        if "scp" in claims or "scope" in claims:  # access tokens carry scopes, ID tokens do not
            raise InvalidTokenError("an access token is not accepted; send the ID token")
        aud = claims.get("aud")
        several = isinstance(aud, list) and len(aud) > 1
        azp = claims.get("azp")
        if (several or azp is not None) and azp not in self._audiences:
            raise InvalidTokenError("the token was issued to another application")

    def verify(self, token: str) -> Principal:
        decoded = self._decode(token)
        registry = jwt.JWTClaimsRegistry(
            now=self._now, leeway=self.s.leeway_s,
            iss={"essential": True, "value": self.s.issuer},
            aud={"essential": True, "values": self._audiences},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError as exc:
            raise InvalidTokenError("the token has expired; sign in again") from exc
        except (MissingClaimError, InvalidClaimError, JoseError) as exc:
            raise InvalidTokenError(_claim_reason(exc)) from exc
        claims = decoded.claims
        self._id_token_only(dict(decoded.header), claims)
        groups = _groups(claims, self.s.role_claim)
        role = max((self.s.group_roles[g] for g in groups if g in self.s.group_roles),
                   key=ROLE_ORDER.index, default=Role.public)
        admin = any(g in self.s.admin_groups for g in groups)
        name = claims.get("name") or claims.get("preferred_username")
        return Principal(role, "oidc", admin, subject=self._subject(self.s.issuer, claims["sub"]),
                         display_name=str(name) if name else None)


def _may_be_rotation(exc: Exception, token: str) -> bool:
    """Whether fetching the keys again could make ``token`` verify: its key id is not in the
    set, or it names none and its signature did not verify with the keys held."""
    if isinstance(exc, InvalidKeyIdError):
        return True
    if isinstance(exc, BadSignatureError):
        try:
            return "kid" not in jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError):
            return False
    return False


def _groups(claims: dict[str, Any], path: str) -> list[str]:
    """The groups (or roles) at ``path``; a dotted path reaches into objects (Keycloak's
    ``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return [value]  # one group (a group's name may hold spaces)
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _reason(exc: Exception) -> str:
    if isinstance(exc, BadSignatureError):
        return "the token's signature does not verify"
    text = str(exc).lower()
    if "kid" in text or "key" in text:
        return "the token is signed with a key the provider does not publish"
    if "algorithm" in text or "alg" in text:
        return "the token's signing algorithm is not accepted"
    return "the token is malformed"


def _claim_reason(exc: Exception) -> str:
    claim = getattr(exc, "claim", "") or ""
    return {
        "iss": "the token was issued by another provider",
        "aud": "the token is meant for another application",
        "nbf": "the token is not valid yet",
        "iat": "the token was issued in the future",
        "sub": "the token names no subject",
        "exp": "the token has no expiry",
    }.get(claim, "the token's claims are not acceptable")
