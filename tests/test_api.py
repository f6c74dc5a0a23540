"""The HTTP API over the bundled corpora: answers, limits (4xx, never 500), auth, feedback,
audit, streaming over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bot.auth import KeyStore
from bot.http.app import create_app
from bot.service import ChatService
from gbg.labels import Role
from gbg.settings import ProviderSettings, Settings
from ingest.embedders import Embedder
from tests.helpers import ask, iter_sse, make_bot, serve_in_thread
from tests.peers import OllamaPeer


@dataclass(frozen=True)
class Api:
    client: TestClient
    service: ChatService
    staff_key: str
    care_key: str


@pytest.fixture(scope="module")
def api(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Api]:
    bot = make_bot(bundled_store, tmp_path_factory.mktemp("api"), e5=e5)
    keys = KeyStore(bot.settings.keys_path)
    staff, care = keys.create(Role.staff, "anna"), keys.create(Role.care, "bo")
    with TestClient(create_app(bot.settings, bot.service)) as client:
        yield Api(client, bot.service, staff, care)


def test_swedish_tourist_question_gets_cited_answer(api: Api) -> None:
    client = api.client
    r = ask(client, "Hur ansöker jag om parkeringstillstånd för rörelsehindrade?")
    assert r.status_code == 200
    d = r.json()
    assert r.headers["X-AI-Generated"] == "true" and d["ai_generated"] is True
    assert d["provider"] == "extractive" and d["model"] and d["location"] == "local"
    assert d["lang"] == "sv" and not d["refused"] and d["grounded"]
    assert d["citations"] and "[1]" in d["answer"] or "[2]" in d["answer"]
    c = d["citations"][0]
    assert {"number", "title", "source", "url", "snippet", "corpus", "section"} <= set(c)
    assert any("parkeringstillstand" in x["source"] for x in d["citations"])
    assert d["sensitivity"] == "public" and d["latency_ms"] > 0


def test_english_tourist_question_gets_english_answer(api: Api) -> None:
    client = api.client
    d = ask(client, "How do I get from Landvetter airport to the city centre?").json()
    assert d["lang"] == "en" and d["citations"] and not d["refused"]
    assert any("airport" in x["source"] for x in d["citations"])


def test_unanswerable_question_is_refused_with_contact(api: Api) -> None:
    client = api.client
    d = ask(client, "Vad kostar en månadskort för hundar i Kiruna 1987?").json()
    assert d["refused"] and d["refusal_reason"] == "no_relevant_sources"
    assert "031-365 00 00" in d["answer"] and d["citations"] == []
    e = ask(client, "What is the population of Mars colony Alpha?").json()
    assert e["refused"] and e["lang"] == "en" and "don't know" in e["answer"]


def test_eligibility_question_gets_referral_not_decision(api: Api) -> None:
    client = api.client
    d = ask(client, "Har jag rätt till hemtjänst om jag är 80 år?").json()
    assert "biståndshandläggare" in d["answer"] and "kan inte avgöra" in d["answer"]


def test_follow_up_is_rewritten(api: Api) -> None:
    client = api.client
    r = client.post("/v1/chat", json={"messages": [
        {"role": "user", "content": "Hur ansöker jag om parkeringstillstånd för rörelsehindrade?"},
        {"role": "assistant", "content": "Du ansöker hos staden [1]."},
        {"role": "user", "content": "och på engelska?"},
    ]})
    d = r.json()
    assert d["lang"] == "en" and any("parkeringstillstand" in c["source"] for c in d["citations"])


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 422, "JSON"),
        (b'{"messages": []}', 422, "messages"),
        (b'{"messages": [{"role": "system", "content": "x"}]}', 422, "role"),
        (b'{"messages": [{"role": "user", "content": ""}]}', 422, "content"),
        (b'{"messages": [{"role": "user", "content": "   "}]}', 422, "blank"),
        (b'{"messages": [{"role": "user", "content": "hej"}], "extra": 1}', 422, "extra"),
        (b'{"messages": [{"role": "assistant", "content": "hej"}]}', 422, "last message"),
        (b'{"messages": [{"role": "user", "content": "hej"}], "lang": "xx"}', 422, "lang"),
        (b'{"messages": [{"role": "user", "content": "hej"}], "corpora": ["finns-inte"]}', 422,
         "unknown corpus"),
        (b'[1, 2]', 422, ""),
    ],
)
def test_bad_requests_are_4xx_with_reason(api: Api, body: bytes, status: int,
                                          fragment: str) -> None:
    client = api.client
    r = client.post("/v1/chat", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert fragment.lower() in r.json()["detail"].lower()


def test_message_length_turns_and_body_limits(api: Api) -> None:
    client, svc = api.client, api.service
    limit = svc.settings.bot
    long = ask(client, "a" * (limit.max_message_chars + 1))
    assert long.status_code == 422 and "longer than" in long.json()["detail"]
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hej"}
             for i in range(limit.max_turns + 1)]
    r = client.post("/v1/chat", json={"messages": turns})
    assert r.status_code == 422 and "too many turns" in r.json()["detail"]
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * limit.max_body_bytes + b'"}]}'
    assert client.post("/v1/chat", content=big,
                       headers={"Content-Type": "application/json"}).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(limit.max_body_bytes // 1000 + 2):
            yield b"x" * 1000
        yield b'"}]}'

    r = client.post("/v1/chat", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "body" in r.json()["detail"]


def test_roles_and_keys(api: Api) -> None:
    client, svc = api.client, api.service
    assert ask(client, "x", headers={"X-API-Key": "gbg_wrong"}).status_code == 401
    r = ask(client, "insulin", corpora=["brukare"])
    assert r.status_code == 403 and "may not read" in r.json()["detail"]
    r = ask(client, "insulin", corpora=["brukare"], headers={"X-API-Key": api.staff_key})
    assert r.status_code == 403
    r = ask(client, "Basala hygienrutiner handdesinfektion", corpora=["hemtjanst-rutiner"],
            headers={"Authorization": f"Bearer {api.staff_key}"})
    assert r.status_code == 200 and r.json()["citations"]
    r = ask(client, "Vilken insulindos har Gunnel Andersson på kvällen?",
            headers={"X-API-Key": api.care_key})
    d = r.json()
    assert r.status_code == 200 and d["sensitivity"] == "sensitive"
    assert any(c["corpus"] == "brukare" for c in d["citations"])
    names = lambda h: {c["name"] for c in client.get("/v1/corpora", headers=h).json()}  # noqa: E731
    assert names({}) == {"turism", "stadens-tjanster"}
    assert names({"X-API-Key": api.staff_key}) == {
        "turism", "stadens-tjanster", "hemtjanst-rutiner"}
    assert "brukare" in names({"X-API-Key": api.care_key})
    stored = Path(svc.settings.keys_path).read_text()
    assert api.staff_key not in stored and api.care_key not in stored


def test_feedback_is_stored_under_the_request_id(api: Api) -> None:
    client, svc = api.client, api.service
    r = ask(client, "Var ligger Feskekôrka?")
    rid = r.headers["X-Request-ID"]
    assert rid == r.json()["request_id"]
    token = r.json()["feedback_token"]
    fb = client.post("/v1/feedback", json={"request_id": rid, "token": token, "rating": 1,
                                           "comment": "Bra, ring 070-123 45 67"})
    assert fb.status_code == 201
    rec = svc.audit.get(rid)
    assert rec is not None
    assert rec["feedback_rating"] == 1 and "070-123 45 67" not in rec["feedback_comment"]
    unknown = client.post("/v1/feedback", json={"request_id": "abcdef0123", "token": token,
                                                "rating": 1})
    assert unknown.status_code == 404
    assert client.post("/v1/feedback", json={"request_id": rid, "token": token,
                                             "rating": 5}).status_code == 422


def test_feedback_belongs_to_whoever_asked(api: Api) -> None:
    """Someone else's request id (without its token) cannot be rated or overwritten
    (issue 14: feedback could be posted for any request id and replaced its rating)."""
    client, svc = api.client, api.service
    mine = ask(client, "Var ligger Feskekôrka?").json()
    other = ask(client, "Hur tar jag mig till Liseberg?").json()
    ok = client.post("/v1/feedback", json={"request_id": mine["request_id"], "rating": 1,
                                           "token": mine["feedback_token"]})
    assert ok.status_code == 201
    stolen = client.post("/v1/feedback", json={
        "request_id": mine["request_id"], "rating": -1, "comment": "ändrat",
        "token": other["feedback_token"]})
    assert stolen.status_code == 403
    missing = client.post("/v1/feedback", json={"request_id": mine["request_id"], "rating": -1})
    assert missing.status_code == 422
    rec = svc.audit.get(mine["request_id"])
    assert rec is not None and rec["feedback_rating"] == 1 and rec["feedback_comment"] is None
    assert "feedback_key" not in client.get("/v1/audit").text


def test_every_request_yields_exactly_one_audit_record(api: Api) -> None:
    client, svc = api.client, api.service
    before = svc.audit.count()
    ids = []
    for call in (
        lambda: ask(client, "Hur tar jag mig till Slottsskogen?"),
        lambda: client.get("/v1/corpora"),
        lambda: client.get("/readyz"),
        lambda: client.post("/v1/chat", content=b"{bad",
                            headers={"Content-Type": "application/json"}),
        lambda: ask(client, "x", headers={"X-API-Key": "nope"}),
        lambda: client.post("/v1/chat", json={"messages": [{"role": "user", "content": "Liseberg"}],
                                              "stream": True}),
    ):
        ids.append(call().headers["X-Request-ID"])
    assert svc.audit.count() == before + len(ids)
    assert all(svc.audit.get(i) is not None for i in ids)
    unauthorised = svc.audit.get(ids[4])
    assert unauthorised is not None and unauthorised["status"] == 401


def test_health_and_readiness(api: Api) -> None:
    client = api.client
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["chroma"] is True


def test_openapi_docs_on(api: Api) -> None:
    client = api.client
    spec = client.get("/openapi.json").json()
    assert "/v1/chat" in spec["paths"] and "/v1/feedback" in spec["paths"]
    assert client.get("/docs").status_code == 200


@pytest.fixture(scope="module")
def live_streaming_bot(bundled_store: Settings, e5: Embedder,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app on a loopback port with a generative provider (a loopback Ollama peer)."""
    peer = OllamaPeer(delay_s=0.15).start()
    data = tmp_path_factory.mktemp("live")
    providers = {"ollama": ProviderSettings(kind="ollama", model=OllamaPeer.model,
                                            base_url=peer.url),
                 "extractive": ProviderSettings(kind="extractive")}
    bot = make_bot(bundled_store, data, providers, e5=e5)
    try:
        with serve_in_thread(create_app(bot.settings, bot.service)) as url:
            yield url
    finally:
        peer.stop()


def test_streaming_first_token_before_answer_is_complete(live_streaming_bot: str) -> None:
    events: list[tuple[float, str, dict[str, Any]]] = []
    body = {"messages": [{"role": "user", "content": "Hur ansöker jag om parkeringstillstånd?"}],
            "stream": True}
    with httpx.stream("POST", f"{live_streaming_bot}/v1/chat", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-ai-generated"] == "true"
        events.extend((time.monotonic(), kind, data) for kind, data in iter_sse(r.iter_lines()))
    kinds = [k for _, k, _ in events]
    assert kinds[0] == "token" and kinds[-1] == "final" and kinds.count("token") >= 3
    first_token_at, final_at = events[0][0], events[-1][0]
    assert final_at - first_token_at > 0.2  # tokens arrived while the model was still writing
    final = events[-1][2]
    assert final["provider"] == "ollama" and final["model"] == OllamaPeer.model
    assert final["citations"] and final["grounded"] and final["ai_generated"]
    streamed = "".join(d["text"] for _, k, d in events if k == "token")
    assert streamed.strip() == final["answer"].strip()
