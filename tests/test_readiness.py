"""Start without waiting (issue 18): a corpus still being ingested is reported as such by
/readyz and /v1/corpora, is not answered from (the ready ones are), and a request that names it
is told to come back instead of getting an answer from half of it. A real ingest runs in a
thread with its embedder held at a gate, against the real store the bot reads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from bot.http.app import create_app
from gbg.settings import Settings
from ingest.embedders import Embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import ingest_all
from ingest.store import ChromaStore
from tests.helpers import ask, make_bot, write_corpus


class Gated(Embedder):
    """e5, but passages wait at a gate once ``hold`` is set (the ingest "takes long")."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.hold = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if self.hold:
            self.reached.set()
            assert self.release.wait(60)
        return self.inner.embed_passages(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def test_answers_come_only_from_ready_corpora_while_another_is_ingesting(
        settings: Settings, e5: Embedder, tmp_path: Path) -> None:
    settings.retrieval.refresh_s = 0.0
    write_corpus(settings.corpora_dir, "parker", {"slottsskogen.md": """
        # Slottsskogen
        Slottsskogen är Göteborgs största park med djurpark och lekplatser.
        Parken har fri entré och är öppen dygnet runt.
        """})
    gated = Gated(e5)
    store = ChromaStore.from_settings(settings)
    ingest_all(settings, discover_manifests(settings.corpora_dir), store, gated)
    # A second corpus arrives; its ingest is held half-way (the first documents are stored).
    files = {f"bad-{i}.md": f"# Badplats {i}\nBadplats {i} i Göteborg har sandstrand och "
             f"brygga, och vattnet provtas varje vecka under sommaren.\n" for i in range(40)}
    write_corpus(settings.corpora_dir, "badplatser", files)
    gated.hold = True
    worker = threading.Thread(target=ingest_all, args=(
        settings, discover_manifests(settings.corpora_dir, ["badplatser"]), store, gated))
    worker.start()
    try:
        assert gated.reached.wait(60)
        bot = make_bot(settings, tmp_path / "bot", e5=e5)
        with TestClient(create_app(bot.settings, bot.service)) as client:
            corpora = {c["name"]: c for c in client.get("/v1/corpora").json()}
            assert corpora["parker"]["state"] == "ready"
            assert corpora["badplatser"]["state"] == "ingesting"
            assert corpora["badplatser"]["progress"].endswith("/40")
            ready = client.get("/readyz").json()
            assert ready["corpora"] == {"badplatser": "ingesting", "parker": "ready"}

            d = ask(client, "Var kan jag bada i Göteborg, finns det sandstrand?").json()
            assert {c["corpus"] for c in d["citations"]} <= {"parker"}, d
            d = ask(client, "Har Slottsskogen fri entré?").json()
            assert not d["refused"] and {c["corpus"] for c in d["citations"]} == {"parker"}

            r = ask(client, "Finns det brygga?", corpora=["badplatser"])
            assert r.status_code == 503 and r.headers["retry-after"]
            assert "still being ingested" in r.json()["detail"]
            assert "of 40 documents" in r.json()["detail"]

            gated.release.set()
            worker.join(60)
            assert client.get("/readyz").json()["corpora"]["badplatser"] == "ready"
            d = ask(client, "Finns det brygga vid badplatsen?", corpora=["badplatser"]).json()
            assert {c["corpus"] for c in d["citations"]} == {"badplatser"}, d
    finally:
        gated.release.set()
        worker.join(60)


def test_an_interrupted_ingest_leaves_the_corpus_not_ready_until_it_is_rerun(
        settings: Settings, e5: Embedder) -> None:
    write_corpus(settings.corpora_dir, "parker", {"a.md": "# A\nSlottsskogen har djurpark.\n"})
    store = ChromaStore.from_settings(settings)

    class Crash(Gated):
        def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
            raise KeyboardInterrupt(f"killed while embedding {len(texts)} passages")

    with contextlib.suppress(KeyboardInterrupt):
        ingest_all(settings, discover_manifests(settings.corpora_dir), store, Crash(e5))
    col = store.get("parker")
    assert col is not None and col.metadata["state"] == "ingesting"
    ingest_all(settings, discover_manifests(settings.corpora_dir), store, e5)
    col = store.get("parker")
    assert col is not None and col.metadata["state"] == "ready"
