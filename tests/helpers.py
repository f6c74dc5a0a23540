"""Helpers shared by the tests: paths, ports, servers, corpora, documents, the bot and its API.

Fixtures live in ``conftest.py``; everything here is a plain function or class that a test
module imports by name.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gbg.settings import ProviderSettings, Settings
from ingest.embedders import Embedder

if TYPE_CHECKING:
    # starlette's TestClient is an httpx2 client; its responses are httpx2 responses.
    from fastapi.testclient import TestClient
    from httpx2 import Response

    from bot.service import ChatService

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CORPORA = REPO / "corpora"
PYTHON = sys.executable


# -- network --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[str]:
    """``app`` served by a real uvicorn in a daemon thread on a free loopback port (after its
    start-up, warm-up included); yields the base URL and stops the server afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    try:
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def streamlit_running(cmd: list[str], env: Mapping[str, str], port: int,
                      log_path: Path) -> Iterator[None]:
    """Streamlit started by ``cmd`` (its output in ``log_path``), until it reports healthy on
    ``port``; stopped afterwards. A start that fails shows the log."""
    import subprocess

    import httpx
    import pytest

    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=dict(env), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health",
                             timeout=2).text.strip() == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not become healthy:\n{log_path.read_text()}")
            time.sleep(0.25)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# -- the chat API ---------------------------------------------------------------------------

def ask(client: TestClient, question: str, *, headers: Mapping[str, str] | None = None,
        **body: Any) -> Response:
    """POST one user question to /v1/chat; ``body`` adds request fields (corpora, stream...)."""
    return client.post("/v1/chat",
                       json={"messages": [{"role": "user", "content": question}], **body},
                       headers=dict(headers or {}))


def iter_sse(lines: str | Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a server-sent event stream, as soon as each data line arrives."""
    kind = None
    for line in lines.splitlines() if isinstance(lines, str) else lines:
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: ") and kind:
            yield kind, json.loads(line[len("data: "):])


def parse_sse(lines: str | Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    return list(iter_sse(lines))


@dataclass(frozen=True)
class Bot:
    """A real ChatService and the settings it was built from."""

    settings: Settings
    service: ChatService


def make_bot(store_settings: Settings, data_dir: Path,
             providers: dict[str, ProviderSettings] | None = None,
             e5: Embedder | None = None, **overrides: Any) -> Bot:
    """A real ChatService over ``store_settings``' store, with its own audit database and key
    file in ``data_dir``; ``overrides`` set fields of ``settings.bot``."""
    from bot.wiring import build_service

    s = store_settings.model_copy(deep=True)
    s.audit.url = f"sqlite:///{data_dir / 'audit.db'}"
    s.auth.keys_file = data_dir / "keys.json"
    # Tests send many requests from one address; the rate-limit tests set their own limits.
    s.bot.rate_per_key = s.bot.rate_per_address = None
    for k, v in overrides.items():
        setattr(s.bot, k, v)
    if providers is not None:
        s.llm.providers = providers
    return Bot(s, build_service(s, embedder=e5))


def make_service(store_settings: Settings, data_dir: Path,
                 providers: dict[str, ProviderSettings] | None = None,
                 e5: Embedder | None = None, **overrides: Any) -> tuple[Settings, ChatService]:
    """``make_bot`` as a tuple, for the test modules that still unpack one."""
    bot = make_bot(store_settings, data_dir, providers, e5, **overrides)
    return bot.settings, bot.service


# -- corpora --------------------------------------------------------------------------------

def corpus_manifest(name: str, audience: str = "public", sensitivity: str = "public",
                    **fields: Any) -> dict[str, Any]:
    """A valid ``corpus.toml`` as a dict: every file under docs/, Swedish and English."""
    return {
        "name": name,
        "title": f"Testkorpus {name}",
        "description": "Korpus för tester.",
        "audience": audience,
        "sensitivity": sensitivity,
        "languages": ["sv", "en"],
        "license": {"name": "CC BY 4.0"},
        "sources": [{"type": "files", "include": ["docs/**/*"]}],
        **fields,
    }


def to_toml(table: Mapping[str, Any]) -> str:
    """The small subset of TOML that manifests use: scalars, lists, tables, arrays of tables
    (tomli-w would do, but is not a dependency)."""
    out: list[str] = []
    _toml_table(out, table, ())
    text = "\n".join(out).lstrip("\n") + "\n"
    assert tomllib.loads(text) == table, text
    return text


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string (same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}: {value!r}")


def _toml_table(out: list[str], table: Mapping[str, Any], path: tuple[str, ...]) -> None:
    nested = {k: v for k, v in table.items() if isinstance(v, Mapping) or _is_table_array(v)}
    out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if k not in nested)
    for key, value in nested.items():
        header = ".".join(_toml_key(p) for p in (*path, key))
        for sub in [value] if isinstance(value, Mapping) else value:
            out.append(f"\n[{header}]" if isinstance(value, Mapping) else f"\n[[{header}]]")
            _toml_table(out, sub, (*path, key))


class MakeCorpus(Protocol):
    """The ``make_corpus`` fixture: ``write_corpus`` into the test's corpora folder."""

    def __call__(self, name: str, files: Mapping[str, str | bytes], audience: str = "public",
                 sensitivity: str = "public", manifest: Mapping[str, Any] | str | None = None
                 ) -> Path: ...


def write_corpus(
    corpora_dir: Path,
    name: str,
    files: Mapping[str, str | bytes],
    audience: str = "public",
    sensitivity: str = "public",
    manifest: Mapping[str, Any] | str | None = None,
) -> Path:
    """``corpora_dir/name`` with ``files`` under docs/ (text dedented) and a ``corpus.toml``:
    ``manifest`` as a dict, as raw text (for broken TOML), or by default ``corpus_manifest``."""
    root = corpora_dir / name
    (root / "docs").mkdir(parents=True, exist_ok=True)
    if manifest is None:
        manifest = corpus_manifest(name, audience, sensitivity)
    text = manifest if isinstance(manifest, str) else to_toml(manifest)
    (root / "corpus.toml").write_text(text, encoding="utf-8")
    for rel, content in files.items():
        p = root / "docs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(textwrap.dedent(content), encoding="utf-8")
    return root


# -- documents ------------------------------------------------------------------------------

def make_pdf(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    story: list[Flowable] = [Paragraph(title, styles["Heading1"])]
    for heading, paras in sections:
        story.append(Paragraph(heading, styles["Heading2"]))
        story.extend(Paragraph(p, styles["BodyText"]) for p in paras)
    SimpleDocTemplate(str(path), pagesize=A4, title=title).build(story)


def make_docx(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = title
    d.core_properties.language = "sv-SE"
    d.add_heading(title, level=1)
    for heading, paras in sections:
        d.add_heading(heading, level=2)
        for p in paras:
            d.add_paragraph(p)
    d.save(str(path))
