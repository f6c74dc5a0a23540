"""The client-server path: the same pipeline against a real `chroma run` on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gbg.settings import Settings
from ingest.embedders import Embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import ingest_all
from ingest.store import ChromaStore
from tests.helpers import CORPORA
from tests.servers import ChromaServer

pytestmark = pytest.mark.slow


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-server").start()
    try:
        yield server
    finally:
        server.stop()


def test_server_ingest_matches_embedded(
    chroma_server: ChromaServer, settings: Settings, e5: Embedder
) -> None:
    settings.corpora_dir = CORPORA
    manifests = discover_manifests(CORPORA, ["brukare"])

    embedded = ingest_all(settings, manifests, ChromaStore.from_settings(settings), e5)

    remote = settings.model_copy(deep=True)
    remote.chroma.host = "127.0.0.1"
    remote.chroma.port = chroma_server.port
    served = ingest_all(remote, manifests, ChromaStore.from_settings(remote), e5)

    assert served.errors == embedded.errors == []
    n_local = ChromaStore.from_settings(settings).get("brukare").count()  # type: ignore[union-attr]
    n_remote = ChromaStore.from_settings(remote).get("brukare").count()  # type: ignore[union-attr]
    assert n_local == n_remote == embedded.total("chunks_total") > 0

    ids_local = {i for i, *_ in ChromaStore.from_settings(settings).get("brukare").iter_records()}  # type: ignore[union-attr]
    ids_remote = {i for i, *_ in ChromaStore.from_settings(remote).get("brukare").iter_records()}  # type: ignore[union-attr]
    assert ids_local == ids_remote

    again = ingest_all(remote, manifests, ChromaStore.from_settings(remote), e5)
    assert again.total("embedded") == 0
