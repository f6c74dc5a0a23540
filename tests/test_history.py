"""Server-side conversation history (issue 19): retention by level with a frozen clock,
encryption at rest (read back through the store and looked for in the raw SQLite file), no
sensitive conversation without a key, isolation between people, the per-person cap, the export,
and the HTTP API with real sign-in tokens from an OpenID Connect provider on loopback."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from bot.audit import AuditStore
from bot.auth import KeyStore
from bot.history import (
    ConversationStore,
    ConversationUnreadableError,
    HistoryKeyError,
    Purger,
)
from bot.http.app import create_app
from bot.models import ChatResult, Citation
from gbg.labels import Role, Sensitivity
from gbg.settings import HistorySettings, OIDCSettings, Settings
from ingest.embedders import Embedder
from tests.helpers import ask, iter_sse, make_bot
from tests.oidc import provider
from tests.pg import PostgresCluster

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


class Clock:
    """A frozen clock that tests move by hand."""

    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta: float) -> None:
        self.t += timedelta(**delta)


def result(level: str = "public", answer: str = "Du ansöker hos staden [1].",
           snippet: str = "Ansökan görs hos staden.", request_id: str = "r" * 32) -> ChatResult:
    return ChatResult(
        request_id=request_id, answer=answer,
        citations=[Citation(number=1, title="Parkeringstillstånd", source="p.md",
                            url="https://goteborg.se/p", snippet=snippet, corpus="goteborg",
                            section="Ansökan")],
        provider="extractive", model="extractive-v1", location="local", sensitivity=level,
        sensitivity_reasons=[], refused=False, refusal_reason=None, grounded=True, notice=None,
        lang="sv", latency_ms=1.0, stages_ms={})


@dataclass
class Db:
    path: Path
    url: str

    def store(self, key: str | None = None, clock: Clock | None = None,
              **history: Any) -> ConversationStore:
        return ConversationStore(AuditStore(self.url).engine, HistorySettings(**history), key,
                                 key_source="GBG_HISTORY_KEY", now=clock or Clock())

    def rows(self, table: str, where: str = "1=1", *args: Any) -> list[tuple[Any, ...]]:
        """Straight from the file, past SQLAlchemy and the store."""
        with sqlite3.connect(self.path) as conn:
            return conn.execute(f"SELECT * FROM {table} WHERE {where}", args).fetchall()

    def dump(self) -> str:
        """Every value of every table, as one text."""
        with sqlite3.connect(self.path) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")]
            return "\n".join(repr(row) for t in tables
                             for row in conn.execute(f"SELECT * FROM {t}"))


@pytest.fixture
def db(tmp_path: Path) -> Db:
    path = tmp_path / "audit.db"
    return Db(path, f"sqlite:///{path}")


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


# -- retention ------------------------------------------------------------------------------

def test_each_level_is_kept_for_its_retention_then_gone(db: Db, key: str) -> None:
    clock = Clock()
    store = db.store(key, clock)
    ids = {lvl: store.append("alice", None, f"fråga {lvl}", result(lvl)) for lvl in
           ("public", "internal", "sensitive")}
    assert all(ids.values())

    def listed() -> set[str]:
        return {c.id for c in store.list("alice")}

    for level, hours in ((Sensitivity.sensitive, 24), (Sensitivity.internal, 168),
                         (Sensitivity.public, 720)):
        cid = ids[level.value]
        clock.t = T0 + timedelta(hours=hours) - SECOND
        assert cid in listed() and store.get("alice", cid) is not None
        assert store.purge() == 0
        clock.t = T0 + timedelta(hours=hours) + SECOND
        assert cid not in listed() and store.get("alice", cid) is None  # before any purge
        assert len(db.rows("conversations", "id = ?", cid)) == 1
        assert store.purge() == 1
        assert db.rows("conversations", "id = ?", cid) == []
        assert db.rows("conversation_turns", "conversation_id = ?", cid) == []
    assert store.count() == 0


def test_a_sensitive_turn_gives_the_conversation_the_sensitive_retention(db: Db,
                                                                         key: str) -> None:
    clock = Clock()
    store = db.store(key, clock)
    cid = store.append("alice", None, "Hur ansöker jag?", result("public"))
    clock.advance(hours=5)
    assert store.append("alice", cid, "Och för min klient?", result("public")) == cid
    clock.advance(hours=1)
    assert store.append("alice", cid, "Kalle, 19121212-1212?", result("sensitive")) == cid
    clock.advance(hours=2)
    assert store.append("alice", cid, "Tack", result("public")) == cid  # stays sensitive
    [listed] = store.list("alice")
    assert listed.level == "sensitive" and listed.turns == 4
    assert listed.expires_at == clock.t + timedelta(hours=24)
    clock.advance(hours=24, seconds=-1)
    assert [c.id for c in store.list("alice")] == [cid]
    clock.advance(seconds=2)
    assert store.list("alice") == [] and store.purge() == 1
    assert db.rows("conversation_turns") == []


def test_a_shortened_retention_applies_to_what_is_stored(db: Db, key: str) -> None:
    clock = Clock()
    cid = db.store(key, clock).append("alice", None, "fråga", result("internal"))
    clock.advance(hours=10)
    shorter = db.store(key, clock, retention_hours={Sensitivity.internal: 8.0})
    assert shorter.list("alice") == [] and shorter.get("alice", str(cid)) is None
    assert shorter.purge() == 1


# -- what is not stored ---------------------------------------------------------------------

def test_without_a_key_only_public_conversations_are_stored(db: Db) -> None:
    """Without a key nothing above public is stored: an internal turn may hold a name or a
    client's street (doubt raises a request to internal), and it would lie there in clear."""
    store = db.store(None)
    assert not store.encrypted
    assert store.append("alice", None, "Kalle, 19121212-1212", result("sensitive")) is None
    assert store.append("alice", None, "Bo på Storgatan 3?", result("internal")) is None
    assert store.count() == 0 and db.rows("conversation_turns") == []
    cid = store.append("alice", None, "Hur ansöker jag?", result("public"))
    assert cid and store.append("alice", cid, "Och parkering?", result("public")) == cid
    assert len(db.rows("conversation_turns")) == 4
    # the conversation rises above public: it goes, earlier turns included
    assert store.append("alice", cid, "Och intern rutin?", result("internal")) is None
    assert store.count() == 0 and db.rows("conversation_turns") == []
    assert store.get("alice", cid) is None


def test_retention_zero_means_not_stored(db: Db, key: str) -> None:
    store = db.store(key, retention_hours={Sensitivity.public: 720.0,
                                           Sensitivity.internal: 0.0,
                                           Sensitivity.sensitive: 24.0})
    assert store.append("alice", None, "intern fråga", result("internal")) is None
    cid = store.append("alice", None, "Hur ansöker jag?", result("public"))
    assert cid is not None
    assert store.append("alice", cid, "intern fråga", result("internal")) is None
    assert store.count() == 0 and db.rows("conversation_turns") == []
    nothing = db.store(key, retention_hours={Sensitivity.public: 0.0})
    assert nothing.append("alice", None, "fråga", result("public")) is None
    # a level left out of the settings keeps its default
    assert nothing.append("alice", None, "intern fråga", result("internal")) is not None


# -- encryption -----------------------------------------------------------------------------

SECRET_Q = "Min klient Kalle Anka 19121212-1212 har fått ny medicinering Zyprexa"
SECRET_A = "Dokumentera ändringen i genomförandeplanen för Kalle [1]."
SECRET_SNIPPET = "Genomförandeplanen uppdateras av kontaktmannen Berit"


def test_content_is_encrypted_at_rest_and_read_back(db: Db, key: str) -> None:
    store = db.store(key)
    assert store.encrypted
    cid = store.append("alice", None, SECRET_Q, result("sensitive", SECRET_A, SECRET_SNIPPET))
    assert cid is not None
    raw = db.dump()
    for secret in (SECRET_Q, SECRET_A, SECRET_SNIPPET, "Kalle", "19121212", "Zyprexa",
                   "Berit", "genomförandeplan", "Parkeringstillstånd"):
        assert secret.lower() not in raw.lower(), secret
    [row] = db.rows("conversations")
    assert cid in row and "alice" in row  # ids, subject and times stay searchable
    [listed] = store.list("alice")
    assert listed.title == SECRET_Q
    detail = store.get("alice", cid)
    assert detail is not None
    assert [m.role for m in detail.messages] == ["user", "assistant"]
    assert detail.messages[0].content == SECRET_Q and detail.messages[1].content == SECRET_A
    cit = detail.messages[1].citations[0]
    assert cit["snippet"] == SECRET_SNIPPET and cit["title"] == "Parkeringstillstånd"
    assert detail.messages[1].provider == "extractive"
    assert detail.messages[1].model == "extractive-v1"


def test_public_conversations_are_encrypted_too(db: Db, key: str) -> None:
    store = db.store(key)
    store.append("alice", None, "Hur tar jag mig till Liseberg?",
                 result("public", "Ta spårvagn 5 [1].", "Spårvagn 5 går till Liseberg."))
    assert "liseberg" not in db.dump().lower() and "spårvagn" not in db.dump().lower()


def test_a_wrong_key_fails_closed(db: Db, key: str) -> None:
    cid = db.store(key).append("alice", None, SECRET_Q, result("sensitive", SECRET_A))
    assert cid is not None
    other = db.store(Fernet.generate_key().decode())
    [listed] = other.list("alice")  # listed, so it can be deleted, but shows nothing
    assert listed.id == cid and listed.title is None and not listed.readable
    with pytest.raises(ConversationUnreadableError) as exc:
        other.get("alice", cid)
    assert "Kalle" not in str(exc.value)
    exported = other.export("alice")
    assert exported["conversations"][0]["readable"] is False
    assert exported["conversations"][0]["messages"] == []
    assert "Kalle" not in json.dumps(exported)
    # without any key an encrypted conversation is unreadable as well
    with pytest.raises(ConversationUnreadableError):
        db.store(None).get("alice", cid)
    assert other.delete("alice", cid) and db.store(key).list("alice") == []


def test_keys_rotate(db: Db, key: str) -> None:
    cid = db.store(key).append("alice", None, SECRET_Q, result("sensitive", SECRET_A))
    assert cid is not None
    rotated = db.store(f"{Fernet.generate_key().decode()}, {key}")
    detail = rotated.get("alice", cid)
    assert detail is not None and detail.messages[1].content == SECRET_A


def test_an_invalid_key_stores_nothing_and_still_expires(db: Db, key: str) -> None:
    clock = Clock()
    cid = db.store(key, clock).append("alice", None, "fråga", result("internal"))
    bad = db.store("not-a-fernet-key", clock)
    with pytest.raises(HistoryKeyError, match="GBG_HISTORY_KEY does not hold a valid Fernet"):
        bad.append("alice", None, "fråga", result("public"))
    # listed as unreadable (so that it can be deleted), never in clear
    (listed,) = bad.list("alice")
    assert listed.id == cid and not listed.readable and listed.title is None
    assert bad.export("alice")["conversations"][0]["readable"] is False
    assert bad.count() == 1
    clock.advance(hours=169)
    assert bad.purge() == 1 and db.rows("conversations", "id = ?", cid) == []


# -- people ---------------------------------------------------------------------------------

def test_nobody_reads_touches_or_continues_anothers_conversation(db: Db, key: str) -> None:
    store = db.store(key)
    cid = store.append("alice", None, "Alices fråga", result("internal"))
    assert cid is not None
    assert store.get("bob", cid) is None and store.list("bob") == []
    assert not store.delete("bob", cid) and store.delete_all("bob") == 0
    new = store.append("bob", cid, "Bobs fråga", result("public"))
    assert new is not None and new != cid
    mine = store.get("alice", cid)
    assert mine is not None and mine.turns == 1
    assert [m.content for m in mine.messages] == ["Alices fråga", "Du ansöker hos staden [1]."]
    assert [c.id for c in store.list("bob")] == [new]
    # an expired id starts a new conversation as well
    clock = Clock(T0 + timedelta(days=8))
    late = db.store(key, clock).append("alice", cid, "igen", result("public"))
    assert late is not None and late != cid


def test_the_oldest_conversations_go_beyond_the_cap(db: Db, key: str) -> None:
    clock = Clock()
    store = db.store(key, clock, max_conversations=3)
    ids = []
    for i in range(4):
        ids.append(store.append("alice", None, f"fråga {i}", result()))
        clock.advance(minutes=1)
    assert [c.id for c in store.list("alice")] == ids[:0:-1]
    assert db.rows("conversations", "id = ?", ids[0]) == []
    assert db.rows("conversation_turns", "conversation_id = ?", ids[0]) == []
    # a continued conversation is recent again: the least recently used goes
    store.append("alice", ids[1], "mer", result())
    clock.advance(minutes=1)
    store.append("alice", None, "ny", result())
    assert ids[2] not in {c.id for c in store.list("alice")}
    assert ids[1] in {c.id for c in store.list("alice")}
    store.append("bob", None, "Bobs", result())  # others' do not count
    assert len(store.list("alice")) == 3 and store.count("bob") == 1


def test_export_has_everything_of_one_person_only(db: Db, key: str) -> None:
    clock = Clock()
    store = db.store(key, clock)
    a1 = store.append("alice", None, "Alices första", result("public", "Svar ett"))
    store.append("alice", a1, "Alices andra", result("sensitive", "Svar två"))
    a2 = store.append("alice", None, "Alices tredje", result("internal", "Svar tre"))
    store.append("bob", None, "Bobs hemlighet", result("public", "Bobs svar"))
    clock.advance(hours=1)
    out = store.export("alice")
    assert out["subject"] == "alice"
    by_id = {c["id"]: c for c in out["conversations"]}
    assert set(by_id) == {a1, a2}
    assert [m["content"] for m in by_id[a1]["messages"]] == [
        "Alices första", "Svar ett", "Alices andra", "Svar två"]
    assert by_id[a1]["level"] == "sensitive" and by_id[a1]["messages"][1]["citations"]
    text = json.dumps(out, ensure_ascii=False)
    assert "Bob" not in text and "bob" not in text
    # the export is of what is stored: an expired conversation is purged first
    clock.advance(hours=24)
    assert {c["id"] for c in store.export("alice")["conversations"]} == {a2}
    assert db.rows("conversations", "id = ?", a1) == []


def _continue_at_once(store: ConversationStore, cid: str, n: int = 8) -> None:
    """``n`` answers continuing one conversation at the same moment, each on its own thread."""
    start = store.get("alice", cid)
    assert start is not None
    barrier = threading.Barrier(n)

    def one(i: int) -> str | None:
        barrier.wait()
        return store.append("alice", cid, f"samtidig {i}", result("public", f"svar {i}"))

    with ThreadPoolExecutor(n) as pool:
        assert list(pool.map(one, range(n))) == [cid] * n
    detail = store.get("alice", cid)
    assert detail is not None and detail.turns == start.turns + n
    assert len(detail.messages) == 2 * detail.turns
    new = detail.messages[2 * start.turns:]
    questions, answers = [m.content for m in new[::2]], [m.content for m in new[1::2]]
    assert sorted(questions) == [f"samtidig {i}" for i in range(n)]
    assert answers == [q.replace("samtidig", "svar") for q in questions]


def test_answers_continuing_one_conversation_at_once_are_all_kept(db: Db, key: str) -> None:
    store = db.store(key)
    cid = store.append("alice", None, "fråga", result())
    assert cid is not None
    _continue_at_once(store, cid)


def test_the_purger_runs_at_once_then_every_interval_and_stops(db: Db, key: str) -> None:
    clock = Clock()
    store = db.store(key, clock)
    store.append("alice", None, "gammal", result("sensitive"))
    clock.advance(hours=25)
    fresh = store.append("alice", None, "ny", result("sensitive"))
    purger = Purger(lambda: store, interval_s=0.05)
    purger.start()
    try:
        _until(lambda: store.count() == 1)
        clock.advance(hours=25)
        _until(lambda: store.count() == 0)
    finally:
        purger.stop()
    assert purger._thread is not None and not purger._thread.is_alive()
    assert store.get("alice", str(fresh)) is None


def test_the_app_purges_expired_conversations_at_start_up(settings: Settings, key: str) -> None:
    settings.bot.warm_up = False
    url = settings.audit_url
    old = ConversationStore(AuditStore(url).engine, settings.history, key,
                            now=Clock(datetime.now(UTC) - timedelta(days=31)))
    old.append("alice", None, "gammal", result("public"))
    assert old.count() == 1
    with TestClient(create_app(settings)):
        _until(lambda: old.count() == 0)


def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


# -- PostgreSQL -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    cluster = PostgresCluster().start()
    try:
        yield cluster.create_database("history")
    finally:
        cluster.stop()


def test_the_store_works_on_postgresql(pg_url: str, key: str) -> None:
    clock = Clock()
    engine = AuditStore(pg_url).engine
    try:
        store = ConversationStore(engine, HistorySettings(max_conversations=2), key, now=clock)
        ConversationStore(engine, HistorySettings(), key)  # a second start on existing tables
        cid = store.append("alice", None, SECRET_Q, result("public", SECRET_A, "a\x00b"))
        assert cid is not None
        clock.advance(minutes=1)
        assert store.append("alice", cid, "och sen?", result("internal")) == cid
        detail = store.get("alice", cid)
        assert detail is not None and detail.level == "internal" and detail.turns == 2
        assert [m.content for m in detail.messages][:2] == [SECRET_Q, SECRET_A]
        assert detail.messages[1].citations[0]["snippet"] == "a\x00b"
        assert detail.updated_at == clock.t and detail.updated_at.tzinfo is not None
        assert store.get("bob", cid) is None
        _continue_at_once(store, cid)
        with engine.connect() as conn:
            raw = repr(conn.exec_driver_sql("SELECT * FROM conversation_turns").all())
        assert "Kalle" not in raw and "Dokumentera" not in raw
        plain = ConversationStore(engine, HistorySettings(), None, now=clock)
        other = plain.append("alice", None, "utan nyckel\x00", result("public"))
        assert other is not None and plain.get("alice", other) is not None
        assert plain.append("alice", other, "Kalle", result("sensitive")) is None
        for i in range(2):
            clock.advance(minutes=1)
            store.append("alice", None, f"fråga {i}", result())
        assert len(store.list("alice")) == 2 and store.count("alice") == 2
        clock.advance(hours=24 * 30 + 1)
        assert store.list("alice") == [] and store.purge() == 2 and store.count() == 0
        store.append("alice", None, "x", result())
        assert store.export("alice")["conversations"][0]["title"] == "x"
        assert store.delete_all("alice") == 1 and store.count() == 0
    finally:
        engine.dispose()


# -- the HTTP API ---------------------------------------------------------------------------

PARKING = "Hur ansöker jag om parkeringstillstånd för rörelsehindrade?"


@dataclass(frozen=True)
class Api:
    client: TestClient
    settings: Settings
    alice: dict[str, str]
    bob: dict[str, str]
    staff_key: dict[str, str]
    key: str

    @property
    def db(self) -> Path:
        return Path(self.settings.audit_url.split("///", 1)[1])


@pytest.fixture(scope="module")
def api(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Api]:
    key = Fernet.generate_key().decode()
    with provider() as p, pytest.MonkeyPatch.context() as mp:
        mp.setenv("GBG_HISTORY_KEY", key)
        p.user("alice", name="Alice Andersson", groups=["gbg-staff"])
        p.user("bob", name="Bo Berg", groups=["gbg-care"])
        bot = make_bot(bundled_store, tmp_path_factory.mktemp("history"), e5=e5)
        bot.settings.auth.oidc = OIDCSettings(
            issuer=p.url, client_id="gbg-ui",
            group_roles={"gbg-care": Role.care, "gbg-staff": Role.staff})
        bot.settings.development = True
        staff = KeyStore(bot.settings.keys_path).create(Role.staff, "script")
        with TestClient(create_app(bot.settings, bot.service)) as client:
            yield Api(client, bot.settings,
                      {"Authorization": f"Bearer {p.id_token('alice')}"},
                      {"Authorization": f"Bearer {p.id_token('bob')}"},
                      {"X-API-Key": staff}, key)


def _count(api: Api) -> int:
    with sqlite3.connect(api.db) as conn:
        return int(conn.execute("SELECT count(*) FROM conversations").fetchone()[0])


def test_api_ask_list_reopen_continue_delete(api: Api) -> None:
    c, alice = api.client, api.alice
    first = ask(c, PARKING, headers=alice)
    assert first.status_code == 200, first.text
    d = first.json()
    cid = d["conversation_id"]
    assert cid and len(cid) == 32
    listed = c.get("/v1/conversations", headers=alice).json()
    mine = next(x for x in listed if x["id"] == cid)
    assert mine["title"] == PARKING and mine["turns"] == 1 and mine["readable"]
    assert mine["level"] == d["sensitivity"]
    assert {"created_at", "updated_at", "expires_at"} <= set(mine)
    conv = c.get(f"/v1/conversations/{cid}", headers=alice).json()
    q, a = conv["messages"]
    assert (q["role"], q["content"]) == ("user", PARKING)
    assert (a["role"], a["content"]) == ("assistant", d["answer"])
    assert a["citations"] == d["citations"] and a["citations"]
    for k in ("provider", "model", "location", "sensitivity", "lang", "refused", "grounded"):
        assert a[k] == d[k], k
    assert a["request_id"] == d["request_id"]
    # continue it, streamed: the final event names the same conversation
    r = c.post("/v1/chat", headers=alice, json={
        "messages": [{"role": "user", "content": PARKING},
                     {"role": "assistant", "content": d["answer"]},
                     {"role": "user", "content": "Vad kostar det?"}],
        "conversation_id": cid, "stream": True})
    assert r.status_code == 200
    final = [data for kind, data in iter_sse(r.text) if kind == "final"]
    assert final and final[0]["conversation_id"] == cid
    conv = c.get(f"/v1/conversations/{cid}", headers=alice).json()
    assert conv["turns"] == 2 and len(conv["messages"]) == 4
    assert [m["content"] for m in conv["messages"]][2:] == ["Vad kostar det?",
                                                            final[0]["answer"]]
    # nothing readable in the database file
    with sqlite3.connect(api.db) as conn:
        raw = "\n".join(repr(r) for t in ("conversations", "conversation_turns")
                        for r in conn.execute(f"SELECT * FROM {t}"))
    assert "parkeringstillstånd" not in raw.lower() and "kostar" not in raw
    assert d["answer"][:40] not in raw
    # delete it
    assert c.delete(f"/v1/conversations/{cid}", headers=alice).status_code == 204
    assert c.get(f"/v1/conversations/{cid}", headers=alice).status_code == 404
    assert c.delete(f"/v1/conversations/{cid}", headers=alice).status_code == 404


def test_api_another_person_gets_404_and_a_new_conversation(api: Api) -> None:
    c = api.client
    cid = ask(c, PARKING, headers=api.alice).json()["conversation_id"]
    assert c.get(f"/v1/conversations/{cid}", headers=api.bob).status_code == 404
    assert c.delete(f"/v1/conversations/{cid}", headers=api.bob).status_code == 404
    theirs = ask(c, PARKING, headers=api.bob, conversation_id=cid).json()["conversation_id"]
    assert theirs and theirs != cid
    assert cid not in {x["id"] for x in c.get("/v1/conversations", headers=api.bob).json()}
    assert c.get(f"/v1/conversations/{cid}", headers=api.alice).json()["turns"] == 1


def test_api_delete_all_and_export(api: Api) -> None:
    c, bob = api.client, api.bob
    c.delete("/v1/conversations", headers=bob)
    ids = [ask(c, q, headers=bob).json()["conversation_id"] for q in
           (PARKING, "How do I get from Landvetter airport to the city centre?")]
    alice_id = ask(c, PARKING, headers=api.alice).json()["conversation_id"]
    export = c.get("/v1/me/export", headers=bob)
    assert export.status_code == 200
    e = export.json()
    assert e["role"] == "care" and e["subject"] and "bob" not in e["subject"].lower()
    assert {x["id"] for x in e["conversations"]} == set(ids)
    assert alice_id not in export.text
    assert all(len(x["messages"]) == 2 for x in e["conversations"])
    requests = {m["request_id"] for x in e["conversations"] for m in x["messages"]}
    audited = {r["request_id"] for r in e["audit"]}
    assert requests <= audited
    assert all(r["subject"] == e["subject"] for r in e["audit"])
    assert "Bo Berg" not in export.text and "Alice" not in export.text
    r = c.delete("/v1/conversations", headers=bob)
    assert r.status_code == 200 and r.json() == {"deleted": 2}
    assert c.get("/v1/conversations", headers=bob).json() == []
    assert c.get(f"/v1/conversations/{alice_id}", headers=api.alice).status_code == 200


@pytest.mark.parametrize("who", ["anonymous", "api_key"])
def test_api_no_history_without_a_signed_in_person(api: Api, who: str) -> None:
    c = api.client
    headers = {} if who == "anonymous" else api.staff_key
    before = _count(api)
    d = ask(c, PARKING, headers=headers).json()
    assert d["conversation_id"] is None and not d["refused"]
    assert _count(api) == before
    for method, path in (("GET", "/v1/conversations"), ("DELETE", "/v1/conversations"),
                         ("GET", "/v1/conversations/" + "a" * 32),
                         ("DELETE", "/v1/conversations/" + "a" * 32), ("GET", "/v1/me/export")):
        r = c.request(method, path, headers=headers)
        assert r.status_code == 401, (method, path)
        assert r.json()["detail"] == "conversation history needs a signed-in user"


def test_api_bad_conversation_ids_are_422(api: Api) -> None:
    c = api.client
    assert ask(c, PARKING, headers=api.alice,
               conversation_id="../../etc").status_code == 422
    assert c.get("/v1/conversations/XYZ", headers=api.alice).status_code == 422


def test_api_a_wrong_key_fails_closed(api: Api) -> None:
    c, state = api.client, api.client.app.state.gbg  # type: ignore[attr-defined]
    cid = ask(c, PARKING, headers=api.alice).json()["conversation_id"]
    store = state.get_history()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GBG_HISTORY_KEY", Fernet.generate_key().decode())
        mp.setattr(state, "history", ConversationStore.from_settings(api.settings,
                                                                     store.engine))
        r = c.get(f"/v1/conversations/{cid}", headers=api.alice)
        assert r.status_code == 503 and "cannot be decrypted" in r.json()["detail"]
        assert "parkering" not in r.text.lower()
        listed = next(x for x in c.get("/v1/conversations", headers=api.alice).json()
                      if x["id"] == cid)
        assert listed["readable"] is False and listed["title"] is None
        mp.setenv("GBG_HISTORY_KEY", "not-a-key")
        mp.setattr(state, "history", ConversationStore.from_settings(api.settings,
                                                                     store.engine))
        r = c.get("/v1/conversations", headers=api.alice)
        assert r.status_code == 503 and "GBG_HISTORY_KEY" in r.json()["detail"]
        assert "not-a-key" not in r.text
        # the answer is given all the same, only not stored
        d = ask(c, PARKING, headers=api.alice).json()
        assert d["answer"] and d["conversation_id"] is None
        # erasure and access requests work whatever happened to the key
        exported = c.get("/v1/me/export", headers=api.alice)
        assert exported.status_code == 200
        assert "parkering" not in json.dumps(exported.json()["conversations"]).lower()
        mine = next(x for x in exported.json()["conversations"] if x["id"] == cid)
        assert mine["readable"] is False
        other = ask(c, "Var ligger Liseberg?", headers=api.bob).json()["conversation_id"]
        assert other is None  # nothing stored with a bad key
    assert c.get(f"/v1/conversations/{cid}", headers=api.alice).status_code == 200
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GBG_HISTORY_KEY", "not-a-key")
        mp.setattr(state, "history", ConversationStore.from_settings(api.settings,
                                                                     store.engine))
        assert c.delete(f"/v1/conversations/{cid}", headers=api.alice).status_code == 204
    assert c.get(f"/v1/conversations/{cid}", headers=api.alice).status_code == 404


def test_api_a_continued_sensitive_conversation_stays_sensitive(api: Api) -> None:
    """The stored level is the floor of the next turn, even when the client sends only the new
    question: a follow-up to a client's care plan never goes out as a public question."""
    c, bob = api.client, api.bob
    first = ask(c, "Vilken insulindos har Gunnel Andersson på kvällen?", headers=bob)
    assert first.status_code == 200 and first.json()["sensitivity"] == "sensitive"
    cid = first.json()["conversation_id"]
    r = c.post("/v1/chat", headers=bob, json={
        "messages": [{"role": "user", "content": "Hur tar jag mig till Liseberg?"}],
        "conversation_id": cid})
    d = r.json()
    assert r.status_code == 200 and d["sensitivity"] == "sensitive"
    assert "conversation:sensitive" in d["sensitivity_reasons"] and d["location"] != "cloud"
    assert d["conversation_id"] == cid


def test_the_audit_file_is_private_and_an_in_memory_store_makes_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQLite file holding questions and conversations is made readable by its owner only;
    an in-memory URL ("sqlite://") makes no file at all (it used to leave one named "sqlite:"
    in the working directory)."""
    monkeypatch.chdir(tmp_path)
    AuditStore("sqlite://")
    AuditStore("sqlite:///:memory:")
    assert list(tmp_path.iterdir()) == []
    AuditStore(f"sqlite:///{tmp_path}/data/audit.db")
    assert oct((tmp_path / "data" / "audit.db").stat().st_mode & 0o777) == "0o600"
