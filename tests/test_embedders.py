"""One contract for every embedder backend (issue 17): in-process e5 and embedding servers
(Ollama's /api/embed, OpenAI-compatible /v1/embeddings) over real HTTP on loopback, where the
peer runs the real e5 model as a city's GPU node would run a larger one. The tests assert what
went over the wire, batching, retries, clear errors that never echo the texts, and that a cloud
embedding endpoint is refused for corpora that are not public and for the bot's questions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gbg.settings import EmbedderSettings, Settings
from ingest.embedders import (
    Embedder,
    IngestError,
    OllamaEmbedder,
    OpenAIEmbedder,
    check_clearance,
)
from tests.helpers import free_port
from tests.peers import OllamaPeer, OpenAIPeer, Peer, e5_vectors

PASSAGES = [
    "Flygbussarna går från Landvetter flygplats till Nils Ericson-terminalen i centrum.",
    "Liseberg är en nöjespark vid Korsvägen med berg- och dalbanor.",
    "Grovsopor lämnar du på en återvinningscentral, till exempel Alelyckan.",
]
QUESTION = "Hur tar jag mig från flygplatsen till centrum?"
SECRET = "Anna Andersson 19380514-2449 har diabetes"


def _http(kind: str, peer: Peer, **extra: object) -> Embedder:
    fields: dict[str, object] = {"timeout_s": 5, **extra}
    cfg = EmbedderSettings(backend=kind, model="multilingual-e5-large",
                           base_url=peer.url + ("/v1" if kind == "openai" else ""),
                           query_prefix="query: ", passage_prefix="passage: ",
                           api_key_env="GBG_TEST_EMBED_KEY" if kind == "openai" else None,
                           **fields)
    return OllamaEmbedder(cfg) if kind == "ollama" else OpenAIEmbedder(cfg)


@pytest.fixture(params=["e5", "ollama", "openai"])
def backend(request: pytest.FixtureRequest, e5: Embedder, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[Embedder, Peer | None]]:
    if request.param == "e5":
        yield e5, None
        return
    monkeypatch.setenv("GBG_TEST_EMBED_KEY", "test-key")
    peer_cls = OllamaPeer if request.param == "ollama" else OpenAIPeer
    peer = peer_cls(embed=e5_vectors(e5)).start()
    try:
        yield _http(request.param, peer), peer
    finally:
        peer.stop()


def test_rows_are_normalised_float32_of_one_dimension(backend: tuple[Embedder, Peer | None]
                                                      ) -> None:
    emb, _ = backend
    p, q = emb.embed_passages(PASSAGES), emb.embed_queries([QUESTION])
    assert p.shape == (3, emb.dim) and q.shape == (1, emb.dim) and p.dtype == np.float32
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-4)
    assert emb.embed_passages([]).shape == (0, emb.dim)


def test_the_question_is_nearest_the_passage_that_answers_it(
        backend: tuple[Embedder, Peer | None]) -> None:
    emb, _ = backend
    sims = emb.embed_passages(PASSAGES) @ emb.embed_queries([QUESTION])[0]
    assert int(np.argmax(sims)) == 0, sims
    assert np.array_equal(emb.embed_passages(PASSAGES[:1]), emb.embed_passages(PASSAGES[:1]))


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_http_backends_match_the_in_process_model(kind: str, e5: Embedder,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBG_TEST_EMBED_KEY", "test-key")
    peer = (OllamaPeer if kind == "ollama" else OpenAIPeer)(embed=e5_vectors(e5)).start()
    try:
        emb = _http(kind, peer)
        assert np.allclose(emb.embed_passages(PASSAGES), e5.embed_passages(PASSAGES),
                           atol=1e-5)
        assert np.allclose(emb.embed_queries([QUESTION]), e5.embed_queries([QUESTION]),
                           atol=1e-5)
    finally:
        peer.stop()


def test_ollama_wire_protocol_and_batches(e5: Embedder) -> None:
    peer = OllamaPeer(embed=e5_vectors(e5)).start()
    try:
        emb = _http("ollama", peer, batch_size=2)
        emb.embed_passages(PASSAGES)
        emb.embed_queries([QUESTION])
        reqs = [r for r in peer.requests if r["json"] is not None][1:]  # after the probe
        assert [r["path"] for r in reqs] == ["/api/embed"] * 3
        assert [len(r["json"]["input"]) for r in reqs] == [2, 1, 1]
        assert reqs[0]["json"]["model"] == "multilingual-e5-large"
        assert reqs[0]["json"]["input"][0] == "passage: " + PASSAGES[0]
        assert reqs[-1]["json"]["input"] == ["query: " + QUESTION]
        assert emb.name == "ollama:multilingual-e5-large"
    finally:
        peer.stop()


def test_openai_wire_protocol_key_and_vectors_placed_by_index(
        e5: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBG_TEST_EMBED_KEY", "test-key")
    peer = OpenAIPeer(embed=e5_vectors(e5)).start()
    try:
        emb = _http("openai", peer)
        got = emb.embed_passages(PASSAGES)  # the peer lists the vectors in reverse
        assert np.allclose(got, e5.embed_passages(PASSAGES), atol=1e-5)
        req = [r for r in peer.requests if r["json"] is not None][-1]
        assert req["path"] == "/v1/embeddings"
        assert {k.lower(): v for k, v in req["headers"].items()}["authorization"] == \
            "Bearer test-key"
        assert req["json"]["encoding_format"] == "float"
        monkeypatch.delenv("GBG_TEST_EMBED_KEY")
        with pytest.raises(IngestError, match="set GBG_TEST_EMBED_KEY"):
            emb.embed_passages(["x"])
    finally:
        peer.stop()


def test_a_busy_server_is_retried_and_a_dead_one_is_a_clear_error(e5: Embedder) -> None:
    peer = OllamaPeer(embed=e5_vectors(e5), fail_first=2).start()
    try:
        emb = _http("ollama", peer, retries=2)  # the probe succeeds on the third attempt
        assert emb.dim == e5.dim
        peer.fail_first = 5
        with pytest.raises(IngestError) as info:
            emb.embed_passages([SECRET])
        assert "HTTP 503" in str(info.value) and "19380514" not in str(info.value)
    finally:
        peer.stop()
    dead = EmbedderSettings(backend="ollama", model="m", timeout_s=1, retries=0,
                            base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(IngestError, match="failed after 1 attempts"):
        OllamaEmbedder(dead)
    with pytest.raises(IngestError, match="needs a server and a model"):
        OllamaEmbedder(EmbedderSettings(backend="ollama"))


def test_a_cloud_endpoint_is_refused_for_corpora_that_are_not_public_and_for_questions(
        e5: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBG_TEST_EMBED_KEY", "test-key")
    peer = OpenAIPeer(embed=e5_vectors(e5)).start()
    try:
        cloud = _http("openai", peer, location="cloud")
        check_clearance(cloud, {"turism": "public"}, questions=False)  # allowed
        with pytest.raises(IngestError, match="brukare is not public"):
            check_clearance(cloud, {"turism": "public", "brukare": "sensitive"}, questions=False)
        with pytest.raises(IngestError, match="questions can carry personal data"):
            check_clearance(cloud, {}, questions=True)
        check_clearance(e5, {"brukare": "sensitive"}, questions=True)  # local: cleared
        from bot.wiring import build_service

        s = Settings(_env_file=None)
        with pytest.raises(IngestError, match="cloud endpoint"):
            build_service(s, embedder=cloud)
        sent = len(peer.requests)
        from ingest.manifest import discover_manifests
        from ingest.pipeline import ingest_all
        from ingest.store import ChromaStore
        from tests.helpers import CORPORA

        s.data_dir = tmp_path
        with pytest.raises(IngestError, match="not public"):
            ingest_all(s, discover_manifests(CORPORA), ChromaStore.from_settings(s), cloud)
        assert len(peer.requests) == sent  # refused before any text went out
    finally:
        peer.stop()


def test_an_openai_compatible_endpoint_counts_as_cloud_unless_said_local() -> None:
    assert EmbedderSettings(backend="openai").where == "cloud"
    assert EmbedderSettings(backend="openai", location="local").where == "local"
    assert EmbedderSettings(backend="ollama").where == "local"


def test_an_embedding_server_that_goes_down_is_a_503_not_a_500(
        bundled_store: Settings, e5: Embedder, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bot.http.app import create_app
    from tests.helpers import ask, make_bot

    peer = OllamaPeer(embed=e5_vectors(e5)).start()
    emb = _http("ollama", peer, retries=0, timeout_s=2)
    bot = make_bot(bundled_store, tmp_path, e5=emb)
    with TestClient(create_app(bot.settings, bot.service)) as client:
        try:
            assert ask(client, "Var ligger Liseberg?").status_code == 200
            peer.fail_first = 100  # the GPU node is restarting: every request a 503
            r = ask(client, "Var ligger Feskekôrka?")
            assert r.status_code == 503 and r.headers.get("retry-after"), r.text
            assert "Feskekôrka" not in r.text
        finally:
            peer.stop()
