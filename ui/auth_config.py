"""Streamlit's sign-in (st.login) configured from the project's settings.

Streamlit reads its OpenID Connect client from the ``[auth]`` section of a secrets file. `gbg ui`
and `gbg up` write that file into the data directory from ``Settings.auth.oidc`` and start
Streamlit with ``--secrets.files`` pointing at it, so nothing secret is kept in the repository:
the client secret comes from the environment variable the settings name, the cookie secret is
generated once and kept beside it. Both files are readable by their owner only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from gbg.settings import OIDCSettings, Settings

SECRETS_FILE = "ui-secrets.toml"
COOKIE_KEY_FILE = "ui-cookie.key"


def redirect_uri(oidc: OIDCSettings, ui_port: int) -> str:
    """Where the provider sends the browser back: Streamlit's /oauth2callback."""
    return oidc.redirect_uri or f"http://localhost:{ui_port}/oauth2callback"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner may read (mode 0600, also when it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def cookie_secret(data_dir: Path) -> str:
    """The key that signs the UI's sign-in cookie: made once, then read from the data dir (a new
    one would sign everybody out)."""
    if (shared := os.environ.get("GBG_UI_COOKIE_SECRET", "")) and len(shared) >= 32:
        return shared  # several UI replicas must sign cookies alike
    path = data_dir / COOKIE_KEY_FILE
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if len(value) >= 32:
            return value
    value = secrets.token_urlsafe(32)
    _write_private(path, value + "\n")
    return value


class MissingClientSecretError(ValueError):
    pass


def auth_section(settings: Settings, ui_port: int,
                 env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The ``[auth]`` section for Streamlit, or None without OIDC settings. Streamlit's sign-in
    needs the client secret (it refuses an empty one)."""
    oidc = settings.auth.oidc
    if oidc is None:
        return None
    env = os.environ if env is None else env
    client_secret = env.get(oidc.client_secret_env, "")
    if not client_secret:
        raise MissingClientSecretError(
            f"sign-in is configured but {oidc.client_secret_env} (the UI's client secret) is "
            "not set")
    return {
        "redirect_uri": redirect_uri(oidc, ui_port),
        "cookie_secret": cookie_secret(settings.data_dir),
        "client_id": oidc.client_id,
        "client_secret": client_secret,
        "server_metadata_url": oidc.issuer.rstrip("/") + "/.well-known/openid-configuration",
        "expose_tokens": ["id"],  # the UI sends the ID token to the bot
        "client_kwargs": {"scope": oidc.scopes},
    }


def secrets_toml(section: Mapping[str, Any]) -> str:
    """The secrets file's text: ``[auth]`` and its ``[auth.client_kwargs]`` table."""
    header = "# Written by gbg ui / gbg up from the settings; do not edit or commit.\n"
    return header + tomli_w.dumps({"auth": dict(section)})


def write_ui_secrets(settings: Settings, ui_port: int,
                     env: Mapping[str, str] | None = None) -> Path | None:
    """Write ``<data_dir>/ui-secrets.toml`` for the UI on ``ui_port``; its path, or None (and no
    file left behind) when OIDC is not configured. Raises MissingClientSecretError."""
    path = settings.data_dir.resolve() / SECRETS_FILE
    section = auth_section(settings, ui_port, env)
    if section is None:
        path.unlink(missing_ok=True)
        return None
    _write_private(path, secrets_toml(section))
    return path
