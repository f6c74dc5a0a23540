"""The sentence-transformers backend, for real and offline, with the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

from gbg.settings import EmbedderSettings, Settings
from ingest.embedders import Embedder, get_embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import ingest_all
from ingest.store import ChromaStore
from tests.helpers import MakeCorpus


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return get_embedder(EmbedderSettings(backend="sentence-transformers", model="all-MiniLM-L6-v2"))


def test_minilm_embeds_offline(minilm: Embedder) -> None:
    assert minilm.dim == 384 and minilm.name == "st:all-MiniLM-L6-v2"
    docs = minilm.embed_passages(
        ["The tram to the amusement park stops at Korsvägen.", "Recycle glass bottles."]
    )
    q = minilm.embed_query_vector("Which tram stop is closest to the amusement park?")
    assert docs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-4)
    assert docs[0] @ q > docs[1] @ q
    assert minilm.count_tokens("hello world") == 2


def test_embedder_contract_same_for_both_backends(minilm: Embedder, e5: Embedder) -> None:
    for emb in (minilm, e5):
        lc = emb.embed_documents(["a", "b"])
        assert len(lc) == 2 and len(lc[0]) == emb.dim
        assert len(emb.embed_query("a")) == emb.dim
        assert emb.embed_passages([]).shape == (0, emb.dim)


def test_pipeline_with_minilm_and_mismatch_guard(
    minilm: Embedder, e5: Embedder, settings: Settings, make_corpus: MakeCorpus
) -> None:
    make_corpus("demo", {"a.md": "# Ferry\n\n## Route\n\nThe free ferry crosses the river."})
    manifests = discover_manifests(settings.corpora_dir)
    report = ingest_all(settings, manifests, ChromaStore.from_settings(settings), minilm)
    assert report.total("embedded") == 1
    from ingest.errors import EmbedderMismatchError

    with pytest.raises(EmbedderMismatchError, match="--rebuild"):
        ingest_all(settings, manifests, ChromaStore.from_settings(settings), e5)
    rebuilt = ingest_all(settings, manifests, ChromaStore.from_settings(settings), e5, rebuild=True)
    assert rebuilt.total("embedded") == 1
