"""Operations: rate limits per key and per address, the admin audit view, and a document store
that is not there (503 with a reason, never a 500, never a hang)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bot.auth import KeyStore
from bot.http.app import create_app
from gbg.labels import Role
from gbg.settings import Settings
from ingest.embedders import Embedder
from tests.helpers import Bot, ask, free_port, make_bot, serve_in_thread


@dataclass(frozen=True)
class Ops:
    client: TestClient
    bot: Bot
    staff_key: str
    admin_key: str


@pytest.fixture(scope="module")
def ops(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Ops]:
    bot = make_bot(bundled_store, tmp_path_factory.mktemp("ops"), e5=e5)
    keys = KeyStore(bot.settings.keys_path)
    staff = keys.create(Role.staff, "anna")
    admin = keys.create(Role.staff, "ops-team", admin=True)
    with TestClient(create_app(bot.settings, bot.service)) as client:
        yield Ops(client, bot, staff, admin)


def limited_app(ops: Ops, **rates: str | None) -> TestClient:
    s = ops.bot.settings.model_copy(deep=True)
    for k, v in rates.items():
        setattr(s.bot, k, v)
    return TestClient(create_app(s, ops.bot.service))


def test_rate_limit_per_address_answers_429_with_retry_after(ops: Ops) -> None:
    client = limited_app(ops, rate_per_address="3/minute", rate_per_key=None)
    codes = [client.get("/v1/corpora").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = client.get("/v1/corpora")
    assert r.status_code == 429
    assert "rate limit 3 per 1 minute" in r.json()["detail"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # Health and readiness are never limited (load balancers poll them).
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    # The 429 is audited like every other request.
    rid = r.headers["X-Request-ID"]
    rec = ops.bot.service.audit.get(rid)
    assert rec is not None and rec["status"] == 429


def test_rate_limit_per_key_is_separate_from_the_address(ops: Ops) -> None:
    client = limited_app(ops, rate_per_address="2/minute", rate_per_key="4/minute")
    staff = {"X-API-Key": ops.staff_key}
    assert [client.get("/v1/corpora", headers=staff).status_code for _ in range(5)] == [
        200, 200, 200, 200, 429]
    # The address (anonymous) still has its own budget, and another key its own.
    assert client.get("/v1/corpora").status_code == 200
    admin = {"X-API-Key": ops.admin_key}
    assert client.get("/v1/corpora", headers=admin).status_code == 200


def test_guessing_keys_counts_against_the_address(ops: Ops) -> None:
    client = limited_app(ops, rate_per_address="3/minute", rate_per_key="100/minute")
    bad = {"X-API-Key": "gbg_not-a-key"}
    assert [client.get("/v1/corpora", headers=bad).status_code for _ in range(4)] == [
        401, 401, 401, 429]


def test_forwarded_address_from_a_trusted_proxy_is_the_client(ops: Ops) -> None:
    """Behind the UI or a load balancer every request comes from one peer; uvicorn's proxy
    headers (trusted for GBG_BOT__FORWARDED_ALLOW_IPS) make each end user count separately."""
    import httpx

    s = ops.bot.settings.model_copy(deep=True)
    s.bot.rate_per_address = "2/minute"
    with serve_in_thread(create_app(s, ops.bot.service), proxy_headers=True,
                         forwarded_allow_ips=s.bot.forwarded_allow_ips) as base:
        url = f"{base}/v1/corpora"

        def get(ip: str) -> int:
            return httpx.get(url, headers={"X-Forwarded-For": ip}, timeout=30).status_code

        assert [get("198.51.100.7") for _ in range(3)] == [200, 200, 429]
        assert [get("203.0.113.9") for _ in range(2)] == [200, 200]


def test_bad_rate_setting_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="rate_per_key.*not a rate"):
        Settings(_env_file=None, bot={"rate_per_key": "lots"})
    s = Settings(_env_file=None, bot={"rate_per_address": "off"})
    assert s.bot.rate_per_address is None


def test_several_workers_need_a_chroma_server() -> None:
    with pytest.raises(ValueError, match="needs a Chroma server"):
        Settings(_env_file=None, bot={"workers": 2})
    s = Settings(_env_file=None, bot={"workers": 2},
                 chroma={"host": "chroma.internal"})
    assert s.bot.workers == 2


def test_audit_view_needs_an_admin_key(ops: Ops) -> None:
    client = ops.client
    assert client.get("/v1/audit").status_code == 403
    r = client.get("/v1/audit", headers={"X-API-Key": ops.staff_key})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert client.get("/v1/audit", headers={"X-API-Key": "gbg_wrong"}).status_code == 401


def test_audit_view_filters_and_is_redacted(ops: Ops) -> None:
    client, admin = ops.client, {"X-API-Key": ops.admin_key}
    staff = {"X-API-Key": ops.staff_key}
    public = ask(client, "Vilken spårvagn går till Saltholmen?")
    with_pnr = ask(client, "Min granne 19121212-1212 undrar hur man söker hemtjänst?")
    internal = ask(client, "Hur ofta ska handskar bytas vid basal hygien?", headers=staff)
    unknown = ask(client, "Vad kostar en biljett till månen?")
    assert {r.status_code for r in (public, with_pnr, internal, unknown)} == {200}
    fb = client.post("/v1/feedback", json={
        "request_id": public.json()["request_id"], "rating": -1,
        "token": public.json()["feedback_token"],
        "comment": "Ring mig på 070-123 45 67, jag heter Sven"})
    assert fb.status_code == 201

    rows = client.get("/v1/audit", headers=admin, params={"limit": 1000}).json()
    by_id = {r["request_id"]: r for r in rows}
    for resp in (public, with_pnr, internal, unknown):
        assert resp.json()["request_id"] in by_id
    rec = by_id[public.json()["request_id"]]
    assert rec["level"] == "public" and rec["provider"] == "extractive"
    assert rec["feedback_rating"] == -1 and "070" not in (rec["feedback_comment"] or "")
    sens = by_id[with_pnr.json()["request_id"]]
    assert sens["level"] == "sensitive" and sens["question"] is None
    text = str(rows)
    assert "19121212" not in text and "1212-1212" not in text

    def ids(**params: Any) -> set[str]:
        got = client.get("/v1/audit", headers=admin, params={"limit": 1000, **params})
        assert got.status_code == 200
        return {r["request_id"] for r in got.json()}

    assert internal.json()["request_id"] in ids(level="internal")
    assert internal.json()["request_id"] not in ids(level="public")
    sensitive_rows = client.get("/v1/audit", headers=admin, params={"level": "sensitive"}).json()
    assert sensitive_rows and all(r["level"] == "sensitive" for r in sensitive_rows)
    assert unknown.json()["request_id"] in ids(refused=True)
    assert unknown.json()["request_id"] not in ids(refused=False)
    assert public.json()["request_id"] in ids(provider="extractive")
    assert ids(provider="no-such-provider") == set()
    bad = client.get("/v1/audit", headers=admin, params={"level": "secret"})
    assert bad.status_code == 422 and "level" in bad.json()["detail"]
    assert client.get("/v1/audit", headers=admin, params={"limit": 0}).status_code == 422


def test_no_chroma_server_gives_503_with_reason_within_the_timeout(tmp_path: Path) -> None:
    s = Settings(_env_file=None)
    s.data_dir = tmp_path
    s.chroma.host, s.chroma.port, s.chroma.timeout_s = "127.0.0.1", free_port(), 2.0
    s.bot.rate_per_address = None
    client = TestClient(create_app(s))
    assert client.get("/healthz").status_code == 200
    for method, path, body in (
        ("POST", "/v1/chat", {"messages": [{"role": "user", "content": "Var ligger Liseberg?"}]}),
        ("GET", "/readyz", None),
        ("GET", "/v1/corpora", None),
    ):
        started = time.monotonic()
        r = client.request(method, path, json=body)
        took = time.monotonic() - started
        assert r.status_code == 503, (path, r.text)
        assert "document store is unavailable" in r.json()["detail"]
        assert r.headers["Retry-After"]
        assert took < s.chroma.timeout_s + 3, (path, took)


def test_hung_chroma_at_start_gives_503_within_the_timeout(tmp_path: Path) -> None:
    """A server that accepts connections and never answers (a hung Chroma) while the service is
    first built: 503 after the timeout, not a hang (chromadb's own client has no timeout)."""
    import socket

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)  # the kernel accepts into the backlog; nobody ever reads or answers
    try:
        s = Settings(_env_file=None)
        s.data_dir = tmp_path
        s.chroma.host, s.chroma.port = "127.0.0.1", hung.getsockname()[1]
        s.chroma.timeout_s = 1.5
        s.bot.rate_per_address = None
        client = TestClient(create_app(s))
        started = time.monotonic()
        r = client.post("/v1/chat", json={"messages": [{"role": "user", "content": "Hej?"}]})
        took = time.monotonic() - started
        assert r.status_code == 503 and "document store is unavailable" in r.json()["detail"]
        assert took < s.chroma.timeout_s + 3, took
    finally:
        hung.close()


def test_hung_rate_limit_store_lets_requests_through_quickly(ops: Ops) -> None:
    """A shared counter store (Redis) that hangs costs a request a fraction of a second and the
    request is served (a limit must not take the service down)."""
    import socket

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    try:
        client = limited_app(ops, rate_per_address="5/minute",
                             rate_storage=f"redis://127.0.0.1:{hung.getsockname()[1]}/0")
        started = time.monotonic()
        r = client.get("/v1/corpora")
        assert r.status_code == 200
        assert time.monotonic() - started < 3
    finally:
        hung.close()
