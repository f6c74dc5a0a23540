"""The Streamlit chat with AppTest, against the real bot on a loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bot.auth import KeyStore
from bot.http.app import create_app
from gbg.labels import Role
from gbg.settings import Settings
from ingest.embedders import Embedder
from tests.helpers import REPO, Bot, free_port, make_bot, serve_in_thread

APP = str(REPO / "ui" / "app.py")


@dataclass(frozen=True)
class LiveBot:
    bot: Bot
    staff_key: str
    admin_key: str


@pytest.fixture(scope="module")
def live_bot(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[LiveBot]:
    """The bot on a loopback port, GBG_UI__BOT_URL pointing at it while the module runs."""
    bot = make_bot(bundled_store, tmp_path_factory.mktemp("ui"), e5=e5)
    staff_key = KeyStore(bot.settings.keys_path).create(Role.staff, "ui-test")
    admin_key = KeyStore(bot.settings.keys_path).create(Role.staff, "ui-admin", admin=True)
    old = os.environ.get("GBG_UI__BOT_URL")
    with serve_in_thread(create_app(bot.settings, bot.service)) as url:
        os.environ["GBG_UI__BOT_URL"] = url
        try:
            yield LiveBot(bot, staff_key, admin_key)
        finally:
            if old is None:
                os.environ.pop("GBG_UI__BOT_URL", None)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [c.value for c in at.caption]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


@pytest.mark.usefixtures("live_bot")
def test_chat_flow_with_sources_badge_and_ai_notice() -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert "AI-assistent" in texts(at)
    at.chat_input[0].set_value("Hur ansöker jag om parkeringstillstånd för rörelsehindrade?").run()
    assert not at.exception
    body = texts(at)
    assert "[1]" in body or "[2]" in body
    assert any(e.label.startswith("[") for e in at.expander)  # source cards
    assert "Svar från" in body and "utdrag ur källorna" in body
    # new conversation clears it
    at.sidebar.button(key="new_conversation").click().run()
    assert not any(e.label.startswith("[") for e in at.expander)


@pytest.mark.usefixtures("live_bot")
def test_english_ui_and_refusal_looks_different() -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.selectbox(key="lang_choice").set_value("en").run()
    assert "AI assistant" in texts(at)
    at.chat_input[0].set_value("What is the population of Mars colony Alpha?").run()
    assert at.warning and "contact" in at.warning[0].value.lower()


def test_sign_in_and_out(live_bot: LiveBot) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.text_input(key="key_input").input("gbg_not_a_key")
    at.sidebar.button(key="sign_in").click().run()
    assert any("godtogs inte" in e.value for e in at.sidebar.error)
    at.sidebar.text_input(key="key_input").input(live_bot.staff_key)
    at.sidebar.button(key="sign_in").click().run()
    assert any("personal i hemtjänsten" in s.value for s in at.sidebar.success)
    assert at.session_state["role"] == "staff"
    at.chat_input[0].set_value("Vad gäller för basala hygienrutiner?").run()
    assert "hemtjanst-rutiner" in texts(at) or at.session_state["messages"][-1]["result"][
        "sensitivity"] == "internal"
    at.sidebar.button(key="sign_out").click().run()
    assert at.session_state["role"] == "public" and at.session_state["api_key"] is None


def test_feedback_reaches_the_audit_store(live_bot: LiveBot) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.chat_input[0].set_value("Var ligger Feskekôrka?").run()
    result = at.session_state["messages"][-1]["result"]
    rid = result["request_id"]
    fb = at.get("feedback")
    assert fb, "no feedback widget"
    at.session_state[f"fb_{rid}"] = 1
    at.run()
    rec = live_bot.bot.service.audit.get(rid)
    assert rec is not None and rec["feedback_rating"] == 1


def test_bot_unreachable_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBG_UI__BOT_URL", f"http://127.0.0.1:{free_port()}")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert any("går inte att nå" in e.value for e in at.error)


def sign_in(at: AppTest, key: str) -> AppTest:
    at.sidebar.text_input(key="key_input").input(key)
    return at.sidebar.button(key="sign_in").click().run()


def test_audit_page_only_for_admins_with_filters(live_bot: LiveBot) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert "Granskningslogg" not in at.sidebar.radio(key="page").options
    sign_in(at, live_bot.staff_key)
    assert "Granskningslogg" not in at.sidebar.radio(key="page").options  # staff, not admin
    at.sidebar.button(key="sign_out").click().run()

    # Traffic to audit: a public question and a refused one.
    at.chat_input[0].set_value("Var ligger Feskekôrka?").run()
    answered = at.session_state["messages"][-1]["result"]["request_id"]
    at.chat_input[0].set_value("Vad kostar en biljett till månen?").run()
    result = at.session_state["messages"][-1]["result"]
    assert result["refused"], result
    refused = result["request_id"]

    sign_in(at, live_bot.admin_key)
    assert any("administratör" in s.value for s in at.sidebar.success)
    at.sidebar.radio(key="page").set_value("Granskningslogg").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert {answered, refused} <= set(table["request_id"])
    assert at.metric[0].label == "Förfrågningar" and int(at.metric[0].value) >= 2
    at.selectbox(key="audit_refused").set_value("ja").run()
    ids = set(at.dataframe[0].value["request_id"])
    assert refused in ids and answered not in ids
    at.selectbox(key="audit_refused").set_value("alla").run()
    at.selectbox(key="audit_level").set_value("public").run()
    public_rows = at.dataframe[0].value
    assert answered in set(public_rows["request_id"]) and set(public_rows["level"]) == {"public"}
    at.selectbox(key="audit_level").set_value("sensitive").run()
    assert answered not in set(at.dataframe[0].value["request_id"])
    at.sidebar.button(key="sign_out").click().run()
    assert "Granskningslogg" not in at.sidebar.radio(key="page").options


@pytest.mark.usefixtures("live_bot")
def test_evaluation_dashboard_reads_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    for stamp, ndcg in (("20261101T000000Z", 0.81), ("20261102T000000Z", 0.86)):
        (tmp_path / f"eval-{stamp}.json").write_text(json.dumps({
            "created": stamp, "provider": "extractive", "configs": {
                "hybrid": {"retrieval": {"ndcg@10": ndcg, "recall@5": 0.9, "recall_curve": {}},
                           "latency": {"end_to_end_p95_ms": 80.0, "end_to_end_ms": [1, 2]}},
                "dense": {"retrieval": {"ndcg@10": ndcg - 0.05, "recall@5": 0.85}},
            }}), encoding="utf-8")
    (tmp_path / "eval-20261103T000000Z.json").write_text("{broken", encoding="utf-8")
    monkeypatch.setenv("GBG_UI__REPORTS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="page").set_value("Utvärdering").run()
    assert not at.exception
    assert any("20261102T000000Z" in h.value for h in at.subheader)
    latest = at.dataframe[0].value
    assert set(latest["config"]) == {"hybrid", "dense"}
    hybrid = latest[latest["config"] == "hybrid"]
    assert abs(float(hybrid["retrieval.ndcg@10"].iloc[0]) - 0.86) < 1e-9
    assert at.selectbox(key="eval_metric").value == "retrieval.ndcg@10"


def test_dashboard_data_shaping() -> None:
    from ui.admin import audit_summary, flat_metrics, ordered_metrics, run_table

    cfg = {"retrieval": {"n": 40, "ndcg@10": 0.9, "recall_curve": {"1": 0.5}},
           "refusal": {"unanswerable_refused": float("nan"), "answerable_answered": 0.8},
           "items": [{"id": "x"}], "routing": {"cloud_leaks": 0, "ok": True}}
    flat = flat_metrics(cfg)
    assert flat == {"retrieval.n": 40.0, "retrieval.ndcg@10": 0.9,
                    "refusal.answerable_answered": 0.8, "routing.cloud_leaks": 0.0}
    rows = run_table([{"created": "r1", "provider": "extractive", "configs": {"h": cfg}}])
    assert rows[0]["run"] == "r1" and rows[0]["config"] == "h"
    assert ordered_metrics(rows)[:3] == ["retrieval.ndcg@10", "refusal.answerable_answered",
                                         "routing.cloud_leaks"]
    s = audit_summary([{"refused": True, "level": "sensitive", "feedback_rating": -1},
                       {"refused": False, "level": "public", "feedback_rating": 1},
                       {"refused": False, "level": "public"}, {"level": "public"}])
    assert s == {"requests": 4, "refused_share": 0.25, "sensitive_share": 0.25,
                 "thumbs_up": 1, "thumbs_down": 1}


def test_markdown_images_become_links_the_user_must_click() -> None:
    """A document's tracking pixel must not be loaded by every reader's browser (issue 14)."""
    from ui.safe import no_images, no_images_stream

    assert "![" not in no_images("Se ![karta](http://tracker.invalid/p.png) här")
    link = "[karta](http://tracker.invalid/p.png)"
    assert link in no_images(f"!{link}")
    streamed = "".join(no_images_stream(["Se !", link, " ![", "b](y)"]))
    assert "![" not in streamed and link in streamed
    assert no_images("Ring 031-365 00 00!") == "Ring 031-365 00 00!"
