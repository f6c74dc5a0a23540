"""Staff sign in to the UI with the city's OpenID Connect provider (issue 19).

Fast: the secrets file `gbg ui` writes for Streamlit's st.login, the client's bearer token, the
history helpers, and the app's signed-in sidebar with AppTest against a stub bot (a signed-in
st.user seeded, as Streamlit fills it from its cookie). Slow: the whole flow in a real browser,
through a real provider on loopback, against the real bot."""

from __future__ import annotations

import json
import os
import stat
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from gbg.i18n import text
from gbg.settings import OIDCSettings, Settings
from ingest.embedders import Embedder
from tests.helpers import REPO, free_port, make_bot, serve_in_thread, streamlit_running
from tests.test_browser import ANSWER_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS, screenshot
from ui.auth_config import (
    COOKIE_KEY_FILE,
    SECRETS_FILE,
    MissingClientSecretError,
    write_ui_secrets,
)
from ui.client import BotClient
from ui.history import local_time, plain, short_title, to_messages

APP = str(REPO / "ui" / "app.py")
ISSUER = "https://login.example.org/realms/gbg"
TOKEN = "header.payload.signature"


def oidc_settings(tmp_path: Path, **oidc: Any) -> Settings:
    s = Settings(_env_file=None)
    s.data_dir = tmp_path / "data"
    s.auth.oidc = OIDCSettings(issuer=ISSUER, client_id="gbg-ui", **oidc)
    return s


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


# --- the secrets file ----------------------------------------------------------------------------

def test_secrets_file_configures_streamlit_login(tmp_path: Path) -> None:
    s = oidc_settings(tmp_path)
    path = write_ui_secrets(s, 8765, env={"GBG_OIDC_CLIENT_SECRET": "s3cret"})
    assert path == (s.data_dir / SECRETS_FILE).resolve() and private(path)
    auth = tomllib.loads(path.read_text(encoding="utf-8"))["auth"]
    assert auth["redirect_uri"] == "http://localhost:8765/oauth2callback"
    assert auth["client_id"] == "gbg-ui" and auth["client_secret"] == "s3cret"
    assert auth["server_metadata_url"] == f"{ISSUER}/.well-known/openid-configuration"
    assert auth["expose_tokens"] == ["id"]
    assert auth["client_kwargs"] == {"scope": "openid profile email"}
    # The cookie secret is made once and kept: a restart does not sign everybody out.
    key_file = s.data_dir / COOKIE_KEY_FILE
    assert private(key_file) and len(auth["cookie_secret"]) >= 32
    assert auth["cookie_secret"] == key_file.read_text(encoding="utf-8").strip()
    again = write_ui_secrets(s, 8765, env={"GBG_OIDC_CLIENT_SECRET": "s3cret"})
    assert again and tomllib.loads(again.read_text())["auth"]["cookie_secret"] == \
        auth["cookie_secret"]


def test_secrets_file_options_and_what_it_needs(tmp_path: Path) -> None:
    s = oidc_settings(tmp_path, redirect_uri="https://chat.goteborg.se/oauth2callback",
                      scopes="openid profile", client_secret_env="UI_SECRET")
    (tmp_path / "data").mkdir()
    stale = tmp_path / "data" / SECRETS_FILE
    stale.write_text("old", encoding="utf-8")
    stale.chmod(0o644)
    path = write_ui_secrets(s, 8501, env={"UI_SECRET": "s3cret"})
    assert path and private(path)  # also a file that was there before
    auth = tomllib.loads(path.read_text(encoding="utf-8"))["auth"]
    assert auth["redirect_uri"] == "https://chat.goteborg.se/oauth2callback"
    assert auth["client_secret"] == "s3cret" and auth["client_kwargs"] == {
        "scope": "openid profile"}
    # Streamlit refuses an empty client secret: say which variable is missing.
    with pytest.raises(MissingClientSecretError, match="UI_SECRET"):
        write_ui_secrets(s, 8501, env={"GBG_OIDC_CLIENT_SECRET": "not this one"})
    # Without OIDC settings there is no sign-in, and no file is left behind.
    s.auth.oidc = None
    assert write_ui_secrets(s, 8501) is None and not path.exists()


def test_secrets_file_quotes_values(tmp_path: Path) -> None:
    s = oidc_settings(tmp_path)
    tricky = 'a"b\\c\nd=]'
    path = write_ui_secrets(s, 8501, env={"GBG_OIDC_CLIENT_SECRET": tricky})
    assert path and tomllib.loads(path.read_text())["auth"]["client_secret"] == tricky


def test_gbg_ui_points_streamlit_at_the_secrets(tmp_path: Path) -> None:
    from gbg.cli import _streamlit

    cmd = _streamlit("127.0.0.1", 8501, tmp_path / SECRETS_FILE)
    assert cmd[cmd.index("--secrets.files") + 1] == str(tmp_path / SECRETS_FILE)
    assert "--secrets.files" not in _streamlit("127.0.0.1", 8501)


# --- client and history helpers ------------------------------------------------------------------

def test_client_sends_the_id_token_not_the_key() -> None:
    signed_in = BotClient("http://bot", api_key="gbg_key", token=TOKEN, client_ip="10.0.0.9")
    assert signed_in._headers() == {"Authorization": f"Bearer {TOKEN}",
                                    "X-Forwarded-For": "10.0.0.9"}
    assert BotClient("http://bot", api_key="gbg_key")._headers() == {"X-API-Key": "gbg_key"}


def test_history_helpers() -> None:
    label = plain("Se ![x](http://tracker.invalid/p.png) *nu*")
    assert "![" not in label and "\\!\\[x\\]" in label and "\\*nu\\*" in label
    assert short_title({"title": "a" * 80}).endswith("…") and len(short_title({"title": "a" * 80
                                                                               })) == 48
    assert short_title({"title": None, "created_at": "2026-05-02T12:00:00Z"},
                       "Europe/Stockholm") == "2026-05-02 14:00"
    assert local_time("2026-01-02T23:30:00+00:00") == "2026-01-02 23:30"
    assert local_time("2026-01-02T23:30:00+00:00", "Europe/Stockholm") == "2026-01-03 00:30"
    assert local_time("2026-01-02T23:30:00", "Not/AZone") == "2026-01-02 23:30"
    assert local_time(None) == local_time("yesterday") == ""
    messages = to_messages([
        {"role": "user", "content": "Fråga?", "created_at": "x"},
        {"role": "assistant", "content": "Svar [1].", "provider": "extractive",
         "sensitivity": "internal", "citations": [{"number": 1, "title": "Rutin"}]},
        {"role": "system", "content": "ignored"}])
    assert messages[0] == {"role": "user", "content": "Fråga?"}
    assert messages[1]["result"]["answer"] == "Svar [1]."
    assert messages[1]["result"]["citations"][0]["title"] == "Rutin"
    assert len(messages) == 2


# --- the app, signed in, against a stub bot ------------------------------------------------------

@dataclass
class StubBot:
    """The bot's side of the contract: /v1/me, the history routes and a streamed /v1/chat.
    Accepts only ``token``; records what it was sent."""

    token: str = TOKEN
    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    store: bool = True  # False: /v1/chat keeps nothing (conversation_id null)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    def add(self, cid: str, title: str, messages: list[dict[str, Any]]) -> None:
        self.conversations[cid] = {
            "id": cid, "title": title, "level": "internal", "turns": len(messages) // 2,
            "created_at": "2026-05-01T08:00:00Z", "updated_at": "2026-05-01T08:01:00Z",
            "expires_at": "2026-05-08T08:01:00Z", "messages": messages}


class StubHandler(BaseHTTPRequestHandler):
    bot: StubBot  # set per server

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: Any = None, sse: str | None = None) -> None:
        data = sse.encode() if sse else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream" if sse else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.bot.seen.append((method, self.path, dict(self.headers), body))
        if self.path == "/healthz":
            return self._send(200, {"status": "ok"})
        if self.headers.get("Authorization") != f"Bearer {self.bot.token}":
            return self._send(401, {"detail": "invalid token"})
        if method == "GET" and self.path == "/v1/me":
            return self._send(200, {"role": "care", "admin": False, "signed_in": True,
                                    "name": "Anna Andersson"})
        if self.path.startswith("/v1/conversations"):
            return self._history(method)
        if method == "POST" and self.path == "/v1/chat":
            return self._chat(body or {})
        return self._send(404, {"detail": "not found"})

    def _history(self, method: str) -> None:
        rows = self.bot.conversations
        if self.path == "/v1/conversations":
            if method == "DELETE":
                n = len(rows)
                rows.clear()
                return self._send(200, {"deleted": n})
            return self._send(200, [{k: v for k, v in c.items() if k != "messages"}
                                    for c in rows.values()])
        cid = self.path.rsplit("/", 1)[1]
        if cid not in rows:
            return self._send(404, {"detail": "no such conversation"})
        if method == "DELETE":
            del rows[cid]
            return self._send(204)
        return self._send(200, rows[cid])

    def _chat(self, body: dict[str, Any]) -> None:
        cid = (body.get("conversation_id") or "c" * 32) if self.bot.store else None
        final: dict[str, Any] = {
            "answer": "Svar enligt rutinen [1].", "lang": "sv", "refused": False,
            "provider": "extractive", "location": "local", "model": None,
            "sensitivity": "internal", "notice": None, "request_id": "ab" * 8,
            "feedback_token": "t", "citations": [], "conversation_id": cid}
        self._send(200, sse="event: token\ndata: {\"text\": \"Svar\"}\n\n"
                            f"event: final\ndata: {json.dumps(final)}\n\n")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@pytest.fixture
def stub_bot(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubBot]:
    bot = StubBot()
    handler = type("Handler", (StubHandler,), {"bot": bot})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    bot.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("GBG_UI__BOT_URL", bot.url)
    try:
        yield bot
    finally:
        server.shutdown()
        server.server_close()


def signed_in_app(token: str = TOKEN) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback",
                          "cookie_secret": "x" * 40, "client_id": "gbg-ui", "client_secret": "",
                          "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration"}
    at.user = {"is_logged_in": True, "name": "Anna Andersson", "sub": "anna",
               "tokens": {"id": token}}
    return at


def sidebar_text(at: AppTest) -> str:
    parts = [s.value for s in at.sidebar.success] + [c.value for c in at.sidebar.caption]
    parts += [w.value for w in at.sidebar.warning] + [b.label for b in at.sidebar.button]
    return "\n".join(str(p) for p in parts)


@pytest.mark.usefixtures("stub_bot")
def test_signed_out_with_oidc_offers_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    at = signed_in_app()
    at.user = {}
    at.run()
    assert not at.exception
    assert at.sidebar.button(key="oidc_sign_in").label == text("sign_in", "sv")
    assert text("staff_sign_in_oidc", "sv") in sidebar_text(at)
    # with an identity provider, no API-key field unless development asks for one
    assert not at.sidebar.get("text_input") or all(
        w.key != "key_input" for w in at.sidebar.text_input)
    monkeypatch.setenv("GBG_AUTH__API_KEY_FIELD", "true")
    at.run()
    assert at.sidebar.text_input(key="key_input")  # the development key field, folded away


def test_signed_in_role_history_reopen_and_continue(stub_bot: StubBot) -> None:
    cid = "0123456789abcdef0123456789abcdef"
    stub_bot.add(cid, "Larm ![x](http://t.invalid/p.png) testas?", [
        {"role": "user", "content": "Hur ofta ska trygghetslarmet testas?"},
        {"role": "assistant", "content": "En gång i månaden [1].", "provider": "extractive",
         "sensitivity": "internal", "lang": "sv", "request_id": "cd" * 8,
         "citations": [{"number": 1, "title": "Trygghetslarm", "section": "Test",
                        "snippet": "Testa larmet varje månad.", "corpus": "hemtjanst-rutiner",
                        "source": "docs/larm.md"}]}])
    at = signed_in_app().run()
    assert not at.exception, at.exception
    side = sidebar_text(at)
    assert "Anna Andersson" in side and text("role_care", "sv") in side
    assert at.session_state["role"] == "care"
    me = next(s for s in stub_bot.seen if s[1] == "/v1/me")
    assert me[2]["Authorization"] == f"Bearer {TOKEN}" and "X-API-Key" not in me[2]
    assert text("kept_until", "sv").format(date="") in side  # when it goes, discreetly
    label = at.sidebar.button(key=f"conv_{cid}").label
    assert "![" not in label and label.startswith("Larm") and "testas" in label

    at.sidebar.button(key=f"conv_{cid}").click().run()
    assert not at.exception, at.exception
    assert at.session_state["conversation_id"] == cid
    assert [m["role"] for m in at.session_state["messages"]] == ["user", "assistant"]
    assert any(e.label.startswith("[1] Trygghetslarm") for e in at.expander)

    at.chat_input[0].set_value("Och om det inte fungerar?").run()
    assert not at.exception, at.exception
    chat = next(s for s in stub_bot.seen if s[1] == "/v1/chat")
    assert chat[3]["conversation_id"] == cid and len(chat[3]["messages"]) == 3
    assert at.session_state["conversation_id"] == cid and not at.session_state["not_kept"]

    # A new conversation starts without an id; the bot's answer gives it one.
    at.sidebar.button(key="new_conversation").click().run()
    assert at.session_state["conversation_id"] is None and at.session_state["messages"] == []
    at.chat_input[0].set_value("Vad gäller för nyckelhantering?").run()
    chats = [s[3] for s in stub_bot.seen if s[1] == "/v1/chat"]
    assert len(chats) == 2 and "conversation_id" not in chats[-1]
    assert at.session_state["conversation_id"] == "c" * 32


def test_delete_one_and_all_with_confirmation(stub_bot: StubBot) -> None:
    a, b = "a" * 32, "b" * 32
    stub_bot.add(a, "Första", [{"role": "user", "content": "Första"}])
    stub_bot.add(b, "Andra", [{"role": "user", "content": "Andra"}])
    at = signed_in_app().run()
    at.sidebar.button(key=f"del_{a}").click().run()
    assert not at.exception, at.exception
    assert list(stub_bot.conversations) == [b]
    assert not [x for x in at.sidebar.button if x.key == f"conv_{a}"]
    at.sidebar.button(key="delete_all").click().run()
    assert text("delete_all_confirm", "sv") in sidebar_text(at)
    at.sidebar.button(key="delete_all_no").click().run()  # cancel: nothing goes
    assert list(stub_bot.conversations) == [b]
    at.sidebar.button(key="delete_all").click().run()
    at.sidebar.button(key="delete_all_yes").click().run()
    assert stub_bot.conversations == {}
    assert text("no_history", "sv") in sidebar_text(at)


def test_a_conversation_the_bot_does_not_keep_says_so(stub_bot: StubBot) -> None:
    stub_bot.store = False
    at = signed_in_app()
    at.session_state["lang_choice"], at.session_state["lang_chosen"] = "en", True
    at.run()
    at.chat_input[0].set_value("Brukaren har diabetes, vad gör jag?").run()
    assert not at.exception, at.exception
    assert at.session_state["not_kept"] is True
    assert any(text("not_kept", "en") == i.value for i in at.info)


def test_an_expired_token_signs_out_with_a_message(stub_bot: StubBot) -> None:
    at = signed_in_app(token="expired.token.value").run()
    assert not at.exception, at.exception
    assert at.session_state["expired"] is True and at.session_state["role"] == "public"
    assert text("session_expired", "sv") in sidebar_text(at)
    assert at.sidebar.button(key="oidc_sign_in")
    assert not [x for x in at.sidebar.button if x.key == "sign_out"]
    # Expiring in the middle of a session: the next request's 401 does the same.
    at = signed_in_app().run()
    assert at.session_state["role"] == "care"
    stub_bot.token = "rotated"
    at.chat_input[0].set_value("Hur rapporterar jag en avvikelse?").run()
    assert not at.exception, at.exception
    assert at.session_state["expired"] is True and at.session_state["messages"] == []
    assert text("session_expired", "sv") in sidebar_text(at)


@pytest.mark.usefixtures("stub_bot")
def test_sign_out_clears_the_session() -> None:
    at = signed_in_app().run()
    at.chat_input[0].set_value("Hur rapporterar jag en avvikelse?").run()
    assert at.session_state["messages"]
    at.sidebar.button(key="sign_out").click().run()
    assert not at.exception, at.exception
    assert at.session_state["role"] == "public" and at.session_state["messages"] == []
    assert at.session_state["token"] is None and at.session_state["conversation_id"] is None



# --- the whole flow in a real browser (slow) -----------------------------------------------------

STAFF_QUESTION = "Vad gäller för basala hygienrutiner?"
FOLLOW_UP = "Hur ofta ska jag byta handskar?"


@contextmanager
def signed_in_ui(bot_url: str, secrets: Path, port: int, log_path: Path) -> Iterator[str]:
    """The UI as `gbg ui` starts it (its command line, the generated secrets), talking to
    ``bot_url``; yields its URL by the name the redirect URI uses (localhost)."""
    from gbg.cli import _streamlit

    env = dict(os.environ, GBG_UI__BOT_URL=bot_url, GBG_AUTH__API_KEY_FIELD="false")
    with streamlit_running(_streamlit("127.0.0.1", port, secrets), env, port, log_path):
        yield f"http://localhost:{port}"


@pytest.mark.slow
def test_sign_in_ask_reopen_delete_and_sign_out_in_a_browser(
        bundled_store: Settings, e5: Embedder, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A care worker signs in through the provider's login page, sees her role, asks a staff
    question, reloads the page, reopens the conversation from the history and continues it,
    deletes it and signs out."""
    from playwright.sync_api import expect, sync_playwright

    from bot.http.app import create_app
    from tests.oidc import CLIENT_SECRET, provider

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's `chromium` package")
    from cryptography.fernet import Fernet

    # a staff routine is internal: kept only encrypted
    monkeypatch.setenv("GBG_HISTORY_KEY", Fernet.generate_key().decode())
    sv = {key: text(key, "sv") for key in ("sign_in", "sign_out", "role_care", "no_history",
                                           "history", "answer_from")}
    with provider() as idp:
        idp.user("anna", name="Anna Andersson", email="anna@stad.example", groups=["gbg-care"])
        made = make_bot(bundled_store, tmp_path / "bot", e5=e5)
        s = made.settings.model_copy(deep=True)
        s.data_dir, s.development = tmp_path / "bot", True
        s.auth.oidc = OIDCSettings(issuer=idp.url, client_id="gbg-ui",
                                   group_roles={"gbg-care": "care", "gbg-staff": "staff"})
        ui_settings = s.model_copy(deep=True)
        ui_settings.data_dir = tmp_path / "ui"
        port = free_port()
        secrets = write_ui_secrets(ui_settings, port,
                                   env={s.auth.oidc.client_secret_env: CLIENT_SECRET})
        assert secrets is not None
        with serve_in_thread(create_app(s, made.service)) as bot_url, \
                signed_in_ui(bot_url, secrets, port, tmp_path / "streamlit.log") as url, \
                sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                                          locale="sv-SE")
                ctx.set_default_timeout(30_000)
                page = ctx.new_page()
                sidebar = page.get_by_test_id("stSidebar")

                # Sign in through the provider's own login page.
                page.goto(url)
                page.locator(".st-key-oidc_sign_in button").click()
                page.wait_for_url(f"{idp.url}/oauth2/authorize**")
                page.fill("input[name=sub]", "anna")
                page.get_by_role("button", name="Authorize").click()
                page.wait_for_url(f"{url}/**")
                who = sidebar.get_by_test_id("stAlertContentSuccess")
                expect(who).to_contain_text("Anna Andersson", timeout=60_000)
                expect(who).to_contain_text(sv["role_care"])
                expect(page.locator(".st-key-oidc_sign_in")).to_have_count(0)

                # A staff question: answered from the routines, and kept in the history.
                ask_and_wait(page, STAFF_QUESTION)
                entries = sidebar.locator("[class*='st-key-conv_'] button")
                expect(entries).to_have_count(1, timeout=30_000)
                expect(entries.first).to_contain_text(STAFF_QUESTION[:30])

                # After a reload (a new session) the person is still signed in, the chat is
                # empty, and the conversation is reopened from the history.
                page.reload()
                expect(who).to_contain_text("Anna Andersson", timeout=60_000)
                expect(page.get_by_test_id("stChatMessage")).to_have_count(0)
                entries.first.click()
                question = page.get_by_test_id("stChatMessage").filter(has_text=STAFF_QUESTION)
                expect(question).to_be_visible(timeout=30_000)
                expect(page.get_by_test_id("stChatMessage")).to_have_count(2)
                ask_and_wait(page, FOLLOW_UP)  # the same conversation, not a new one
                expect(page.get_by_test_id("stChatMessage")).to_have_count(4)
                expect(entries).to_have_count(1)
                screenshot(page, "signed-in-history-1280.png", copy_to=tmp_path)

                # Everything kept about her, as a download: the one conversation, both turns.
                with page.expect_download() as download:
                    sidebar.locator(".st-key-export button").click()
                exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
                [kept] = exported["conversations"]
                assert [m["content"] for m in kept["messages"] if m["role"] == "user"] == [
                    STAFF_QUESTION, FOLLOW_UP]

                # Delete it: gone from the list and from the chat.
                sidebar.locator("[class*='st-key-del_'] button").first.click()
                expect(sidebar.get_by_text(sv["no_history"])).to_be_visible(timeout=30_000)
                expect(entries).to_have_count(0)
                expect(page.get_by_test_id("stChatMessage")).to_have_count(0)

                # Sign out: through the provider's end-session page, back to "Logga in".
                page.locator(".st-key-sign_out button").click()
                page.wait_for_url(f"{idp.url}/oauth2/end_session**")
                page.get_by_role("button", name="End session").click()
                page.wait_for_url(f"{url}/**")
                expect(page.locator(".st-key-oidc_sign_in button")).to_be_visible(
                    timeout=60_000)
                expect(sidebar.get_by_test_id("stAlertContentSuccess")).to_have_count(0)
                page.reload()  # the sign-in cookie is gone too
                expect(page.locator(".st-key-oidc_sign_in button")).to_be_visible(
                    timeout=60_000)
            finally:
                browser.close()


def ask_and_wait(page: Any, question: str) -> None:
    """Ask in the chat input and wait until the answer is complete (its feedback row)."""
    from playwright.sync_api import expect

    chat_input = page.get_by_test_id("stChatInputTextArea")
    expect(chat_input).to_be_visible(timeout=60_000)
    chat_input.fill(question)
    chat_input.press("Enter")
    answer = page.get_by_test_id("stChatMessage").filter(
        has=page.get_by_test_id("stChatMessageAvatarAssistant")).last
    expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(answer).to_contain_text(text("answer_from", "sv"))
