from __future__ import annotations

import os
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from gbg.settings import Settings  # noqa: E402
from ingest.embedders import E5Embedder, Embedder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CORPORA = REPO / "corpora"
PYTHON = sys.executable


@pytest.fixture(scope="session")
def e5() -> Embedder:
    return E5Embedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    s.data_dir = tmp_path / "data"
    s.corpora_dir = tmp_path / "corpora"
    s.chunking.max_tokens = 128
    s.chunking.overlap_tokens = 16
    s.web.min_delay_s = 0.0
    return s


MANIFEST = """\
name = "{name}"
title = "Testkorpus {name}"
description = "Korpus för tester."
audience = "{audience}"
sensitivity = "{sensitivity}"
languages = ["sv", "en"]

[license]
name = "CC BY 4.0"

[[sources]]
type = "files"
include = ["docs/**/*"]
"""


def write_corpus(
    corpora_dir: Path,
    name: str,
    files: dict[str, str | bytes],
    audience: str = "public",
    sensitivity: str = "public",
    manifest: str | None = None,
) -> Path:
    root = corpora_dir / name
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "corpus.toml").write_text(
        manifest or MANIFEST.format(name=name, audience=audience, sensitivity=sensitivity),
        encoding="utf-8",
    )
    for rel, content in files.items():
        p = root / "docs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(textwrap.dedent(content), encoding="utf-8")
    return root


@pytest.fixture
def make_corpus(settings: Settings) -> Callable[..., Path]:
    def _make(name: str, files: dict[str, str | bytes], **kw: str) -> Path:
        return write_corpus(settings.corpora_dir, name, files, **kw)

    return _make


@contextmanager
def serve_in_thread(app: object, **config: object) -> Iterator[str]:
    """``app`` served by a real uvicorn in a daemon thread on a free loopback port (after its
    start-up, warm-up included); yields the base URL and stops the server afterwards."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,  # type: ignore[arg-type]
                                           log_level="warning", **config))  # type: ignore[arg-type]
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_pdf(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    story = [Paragraph(title, styles["Heading1"])]
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


@pytest.fixture(scope="session")
def bundled_store(tmp_path_factory: pytest.TempPathFactory, e5: Embedder) -> Settings:
    """All bundled corpora ingested once per test session into a temporary embedded store."""
    from ingest.manifest import discover_manifests
    from ingest.pipeline import ingest_all
    from ingest.store import ChromaStore

    s = Settings(_env_file=None)  # type: ignore[call-arg]
    # Kept between sessions: the incremental ingest re-embeds only what changed.
    s.data_dir = REPO / ".gbg" / "test-bundled"
    s.corpora_dir = CORPORA
    report = ingest_all(s, discover_manifests(CORPORA), ChromaStore.from_settings(s), e5)
    assert report.errors == [], report.errors
    return s


def make_service(store_settings: Settings, data_dir: Path, providers: dict | None = None,
                 e5: Embedder | None = None, **overrides: object) -> object:
    """A real ChatService over the bundled store, with its own audit database and key file."""
    from bot.api import build_detector
    from bot.audit import AuditStore
    from bot.llm.registry import build_providers
    from bot.retrieval.retriever import HybridRetriever
    from bot.service import ChatService
    from ingest.embedders import get_embedder
    from ingest.store import ChromaStore

    s = store_settings.model_copy(deep=True)
    s.audit.url = f"sqlite:///{data_dir / 'audit.db'}"
    s.auth.keys_file = data_dir / "keys.json"
    # Tests send many requests from one address; the rate-limit tests set their own limits.
    s.bot.rate_per_key = s.bot.rate_per_address = None
    for k, v in overrides.items():
        setattr(s.bot, k, v)
    if providers is not None:
        s.llm.providers = providers
    emb = e5 or get_embedder(s.embedder)
    retriever = HybridRetriever(ChromaStore.from_settings(s), emb, s.retrieval)
    return s, ChatService(s, retriever, build_providers(s), AuditStore(s.audit_url),
                          build_detector(retriever))
