from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from gbg.settings import Settings
from ingest.embedders import E5Embedder, Embedder

# PYTHON, SHARED_DATA, free_port and make_service: other areas' test modules import them from here.
from tests.helpers import CORPORA, REPO, MakeCorpus, write_corpus
from tests.helpers import PYTHON as PYTHON
from tests.helpers import SHARED_DATA as SHARED_DATA
from tests.helpers import free_port as free_port
from tests.helpers import make_service as make_service


@pytest.fixture(scope="session")
def e5() -> Embedder:
    """The real e5 model, behind the embedding cache's shipped pack (read-only): the bundled
    corpora ingest in seconds, every other text is embedded."""
    from ingest.embed_cache import with_cache

    return with_cache(E5Embedder(), None, CORPORA)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(_env_file=None)
    s.data_dir = tmp_path / "data"
    s.corpora_dir = tmp_path / "corpora"
    s.chunking.max_tokens = 128
    s.chunking.overlap_tokens = 16
    s.web.min_delay_s = 0.0
    return s


@pytest.fixture
def make_corpus(settings: Settings) -> MakeCorpus:
    return functools.partial(write_corpus, settings.corpora_dir)


@pytest.fixture(scope="session")
def bundled_store(e5: Embedder) -> Settings:
    """All bundled corpora ingested once per test session into a temporary embedded store."""
    from ingest.manifest import discover_manifests
    from ingest.pipeline import ingest_all
    from ingest.store import ChromaStore

    s = Settings(_env_file=None)
    # Kept between sessions: the incremental ingest re-embeds only what changed.
    s.data_dir = REPO / ".gbg" / "test-bundled"
    s.corpora_dir = CORPORA
    report = ingest_all(s, discover_manifests(CORPORA), ChromaStore.from_settings(s), e5)
    assert report.errors == [], report.errors
    return s
