"""The Streamlit chat with AppTest, against the real bot on a loopback port."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from streamlit.testing.v1 import AppTest

from bot.access import Role
from bot.api import create_app
from bot.auth import KeyStore
from gbg.settings import Settings
from ingest.embedders import Embedder
from tests.conftest import REPO, free_port, make_service

APP = str(REPO / "ui" / "app.py")


@pytest.fixture(scope="module")
def live_bot(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Any]]:
    s, svc = make_service(bundled_store, tmp_path_factory.mktemp("ui"), e5=e5)
    staff_key = KeyStore(s.keys_path).create(Role.staff, "ui-test")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(s, svc), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    old = os.environ.get("GBG_UI__BOT_URL")
    os.environ["GBG_UI__BOT_URL"] = f"http://127.0.0.1:{port}"
    try:
        yield {"svc": svc, "staff_key": staff_key}
    finally:
        if old is None:
            os.environ.pop("GBG_UI__BOT_URL", None)
        server.should_exit = True
        thread.join(timeout=10)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [c.value for c in at.caption]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def test_chat_flow_with_sources_badge_and_ai_notice(live_bot: dict[str, Any]) -> None:
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


def test_english_ui_and_refusal_looks_different(live_bot: dict[str, Any]) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="lang_choice").set_value("English").run()
    assert "AI assistant" in texts(at)
    at.chat_input[0].set_value("What is the population of Mars colony Alpha?").run()
    assert at.warning and "contact" in at.warning[0].value.lower()


def test_sign_in_and_out(live_bot: dict[str, Any]) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.text_input(key="key_input").input("gbg_not_a_key")
    at.sidebar.button(key="sign_in").click().run()
    assert any("godtogs inte" in e.value for e in at.sidebar.error)
    at.sidebar.text_input(key="key_input").input(live_bot["staff_key"])
    at.sidebar.button(key="sign_in").click().run()
    assert any("personal i hemtjänsten" in s.value for s in at.sidebar.success)
    assert at.session_state["role"] == "staff"
    at.chat_input[0].set_value("Vad gäller för basala hygienrutiner?").run()
    assert "hemtjanst-rutiner" in texts(at) or at.session_state["messages"][-1]["result"][
        "sensitivity"] == "internal"
    at.sidebar.button(key="sign_out").click().run()
    assert at.session_state["role"] == "public" and at.session_state["api_key"] is None


def test_feedback_reaches_the_audit_store(live_bot: dict[str, Any]) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.chat_input[0].set_value("Var ligger Feskekôrka?").run()
    result = at.session_state["messages"][-1]["result"]
    rid = result["request_id"]
    fb = at.get("feedback")
    assert fb, "no feedback widget"
    at.session_state[f"fb_{rid}"] = 1
    at.run()
    rec = live_bot["svc"].audit.get(rid)
    assert rec is not None and rec["feedback_rating"] == 1


def test_bot_unreachable_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBG_UI__BOT_URL", f"http://127.0.0.1:{free_port()}")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert any("går inte att nå" in e.value for e in at.error)
