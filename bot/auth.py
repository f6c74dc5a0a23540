"""API keys mapped to roles, stored hashed (SHA-256 of a 256-bit random key: a fast hash is
enough for keys of that entropy). No key means the public role; an unknown key is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbg.labels import Role

PREFIX = "gbg_"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    role: Role
    name: str  # the key's label (never the key); "oidc" for a signed-in person
    admin: bool = False  # may read the audit log
    # A signed-in person (OIDC): a keyed hash of the issuer and ``sub``, never the name, e-mail
    # or ``sub`` itself. The audit record, the rate limit and the conversation history use it.
    subject: str | None = None
    display_name: str | None = None  # shown back to the person only; never audited or logged


class InvalidCredentialsError(Exception):
    pass


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._cache: tuple[float, dict[str, dict[str, Any]]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        mtime = self.path.stat().st_mtime
        with self._lock:
            if self._cache and self._cache[0] == mtime:
                return self._cache[1]
            data: dict[str, dict[str, Any]] = json.loads(
                self.path.read_text(encoding="utf-8") or "{}")
            self._cache = (mtime, data)
            return data

    def create(self, role: Role, name: str, admin: bool = False) -> str:
        """A new key for ``role``; only its hash is stored, the key is returned once.
        ``admin`` keys may also read the (redacted) audit log."""
        key = PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            data = dict(self._load()) if self.path.is_file() else {}
            entry: dict[str, Any] = {"role": role.value, "name": name}
            if admin:
                entry["admin"] = True
            data[hash_key(key)] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            tmp.chmod(0o600)
            tmp.replace(self.path)
            self._cache = None
        return key

    def revoke(self, name: str) -> int:
        with self._lock:
            data = {h: v for h, v in self._load().items() if v.get("name") != name}
            removed = len(self._load()) - len(data)
            self.path.write_text(json.dumps(data, indent=1), encoding="utf-8")
            self._cache = None
        return removed

    def authenticate(self, key: str | None) -> Principal:
        if not key:
            return Principal(Role.public, "anonymous")
        h = hash_key(key.strip())
        for stored, entry in self._load().items():
            if hmac.compare_digest(stored, h):
                return Principal(Role(entry["role"]), entry.get("name", ""),
                                 entry.get("admin") is True)
        raise InvalidCredentialsError("invalid API key")
