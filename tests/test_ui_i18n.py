"""The chat UI in the platform's 14 languages (issue 16), with AppTest and no browser: the
language selector, the browser's language as the default, right-to-left layout and answers, the
badge in the chosen language, and a UI that does not force its language on the bot.

The app needs a bot that answers /healthz to show the chat; a stub on a loopback port does (the
answers are put into the session, as the app stores them)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from gbg.i18n import languages, supported, text, texts
from tests.helpers import REPO
from ui.texts import STAFF_EXAMPLES, badge_text, examples, initial_language, text_direction

APP = str(REPO / "ui" / "app.py")
ARABIC_Q = "كيف أصل من مطار لاندفيتر إلى وسط المدينة؟"
ARABIC_A = ("المصادر باللغة السويدية؛ المقاطع ذات الصلة:\n"
            "Göteborg Landvetter Airport ligger 20 km öster om centrum [1].")
SNIPPET = "Göteborg Landvetter Airport är Göteborgs största flygplats."


class _Health(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()


@pytest.fixture
def healthy_bot(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stub bot that is healthy and nothing else, GBG_UI__BOT_URL pointing at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("GBG_UI__BOT_URL", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def app(locale: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if locale is not None:
        at.context["locale"] = locale
    return at


def arabic_exchange() -> list[dict[str, Any]]:
    """An Arabic question and its answer (Swedish sources), as the app keeps them."""
    result = {"answer": ARABIC_A, "lang": "ar", "refused": False, "provider": "extractive",
              "location": "local", "model": "extractive-v2", "sensitivity": "public",
              "notice": None, "request_id": None,
              "citations": [{"number": 1, "title": "Till och från Landvetter flygplats",
                             "section": "Flygbuss", "snippet": SNIPPET, "corpus": "turism",
                             "url": "", "source": "docs/landvetter-flygplats-sv.md"}]}
    return [{"role": "user", "content": ARABIC_Q},
            {"role": "assistant", "content": ARABIC_A, "result": result}]


def directions(at: AppTest) -> dict[str, str]:
    """The direction containers on the page: {"msg-1": "rtl", "src-1-1": "ltr", ...}."""
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Block) and node.key and node.key.startswith("dir-"):
            _, way, rest = node.key.split("-", 2)
            found[rest] = way
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    return found


def rtl_layout(at: AppTest) -> bool:
    """Whether the page carries the style that lays out the main area and sidebar RTL."""
    return any(".stMain,[data-testid=\"stMain\"],.stSidebar,[data-testid=\"stSidebar\"]"
               "{direction:rtl}" in m.value for m in at.markdown)


def captions(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.caption)


@pytest.mark.usefixtures("healthy_bot")
def test_selector_lists_the_14_languages_by_their_own_names() -> None:
    at = app().run()
    assert not at.exception
    selector = at.sidebar.selectbox(key="lang_choice")
    assert len(selector.options) == 14 == len(supported())
    assert selector.options == [languages()[c].native for c in supported()]
    assert {"Svenska", "English", "العربية", "فارسی", "Soomaali", "Türkçe"} <= set(selector.options)
    assert selector.value == "sv" and selector.label == text("language", "sv")
    assert not rtl_layout(at)


@pytest.mark.usefixtures("healthy_bot")
@pytest.mark.parametrize(("locale", "lang"), [
    ("ar-SA", "ar"), ("nb-NO", "nb"), ("hr", "bs"), ("de-AT", "de"), ("en-US", "en"),
    ("ja-JP", "sv"), (None, "sv"),
])
def test_the_browser_language_is_the_default(locale: str | None, lang: str) -> None:
    at = app(locale).run()
    assert not at.exception
    assert at.sidebar.selectbox(key="lang_choice").value == lang
    assert at.title[0].value == text("title", lang)
    assert at.info[0].value == text("ai_notice", lang)
    assert at.chat_input[0].placeholder == text("placeholder", lang)
    assert sorted(b.label for b in at.button if b.key and b.key.startswith("ex_")) == sorted(
        texts("example_questions", lang))
    assert rtl_layout(at) == (lang == "ar")


@pytest.mark.usefixtures("healthy_bot")
def test_choosing_persian_mirrors_the_layout_and_the_choice_sticks() -> None:
    at = app("en-GB").run()
    assert not rtl_layout(at) and at.info[0].value == text("ai_notice", "en")
    at.sidebar.selectbox(key="lang_choice").set_value("fa").run()
    assert not at.exception
    assert rtl_layout(at)
    assert at.info[0].value == text("ai_notice", "fa")
    assert at.sidebar.selectbox(key="lang_choice").label == text("language", "fa")
    assert at.sidebar.radio(key="page").options == [text(k, "fa") for k in
                                                    ("chat", "corpora", "evaluation")]
    # The user's choice wins over the browser's language from now on.
    at.context["locale"] = "en-GB"
    at.run()
    assert at.sidebar.selectbox(key="lang_choice").value == "fa" and rtl_layout(at)
    at.sidebar.selectbox(key="lang_choice").set_value("sv").run()
    assert not rtl_layout(at) and at.info[0].value == text("ai_notice", "sv")


@pytest.mark.usefixtures("healthy_bot")
def test_the_page_stays_chosen_when_the_language_changes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GBG_UI__REPORTS_DIR", str(tmp_path))
    at = app().run()
    at.sidebar.radio(key="page").set_value(text("evaluation", "sv")).run()
    at.sidebar.selectbox(key="lang_choice").set_value("tr").run()
    assert not at.exception
    assert at.sidebar.radio(key="page").value == text("evaluation", "tr")
    assert at.title[0].value == text("evaluation", "tr")


@pytest.mark.usefixtures("healthy_bot")
def test_answers_and_sources_keep_their_own_direction() -> None:
    """An Arabic answer is right to left in a Swedish UI, its Swedish source left to right in an
    Arabic or Persian UI; the badge and the "Source" line follow the UI's language."""
    at = app()
    at.session_state["messages"] = arabic_exchange()
    at.run()
    assert not at.exception and not rtl_layout(at)
    assert directions(at) == {"msg-0": "rtl", "msg-1": "rtl", "src-1-1": "ltr",
                              "ref-1-1": "ltr"}
    assert text("answer_from", "sv") in captions(at)
    assert text("where_extractive", "sv") in captions(at)
    assert any(m.value == ARABIC_A for m in at.markdown)  # shown as Markdown, not HTML
    assert any(f"{text('source', 'sv')}:" in m.value for m in at.markdown)

    at.sidebar.selectbox(key="lang_choice").set_value("fa").run()
    assert rtl_layout(at)
    assert directions(at) == {"msg-0": "rtl", "msg-1": "rtl", "src-1-1": "ltr",
                              "ref-1-1": "rtl"}
    badge = captions(at)
    assert text("answer_from", "fa") in badge and text("where_extractive", "fa") in badge
    assert text("level_public", "fa") in badge and text("answer_from", "sv") not in badge
    assert any(f"{text('source', 'fa')}:" in m.value for m in at.markdown)

    at.sidebar.selectbox(key="lang_choice").set_value("de").run()
    assert not rtl_layout(at) and directions(at)["msg-1"] == "rtl"
    assert text("answer_from", "de") in captions(at)


@pytest.mark.usefixtures("healthy_bot")
def test_a_swedish_answer_in_an_arabic_ui_reads_left_to_right() -> None:
    result = {"answer": "Flygbussen går från Nils Ericson-terminalen [1].", "lang": "sv",
              "refused": False, "provider": "extractive", "location": "local", "model": None,
              "sensitivity": "public", "notice": None, "request_id": None, "citations": []}
    at = app("ar-EG")
    at.session_state["messages"] = [
        {"role": "user", "content": "Hur tar jag mig från Landvetter?"},
        {"role": "assistant", "content": result["answer"], "result": result}]
    at.run()
    assert rtl_layout(at)
    assert directions(at) == {"msg-0": "ltr", "msg-1": "ltr"}
    assert text("answer_from", "ar") in captions(at)


def test_badge_in_every_language() -> None:
    local = {"provider": "ollama", "location": "local", "model": "qwen", "sensitivity":
             "sensitive"}
    cloud = {"provider": "openai", "location": "cloud", "model": None, "sensitivity": "internal"}
    refused = {"refused": True, "provider": None, "sensitivity": "public"}
    for lang in supported():
        assert badge_text(lang, local) == (f"🤖 {text('answer_from', lang)}: "
                                           f"{text('where_local', lang)} (qwen) · "
                                           f"{text('level_sensitive', lang)}")
        assert text("where_cloud", lang) in badge_text(lang, cloud)
        assert text("level_internal", lang) in badge_text(lang, cloud)
        assert f": – · {text('level_public', lang)}" in badge_text(lang, refused)
    assert "?" in badge_text("sv", {"location": "mars", "sensitivity": "public"})


def test_example_questions_and_language_helpers() -> None:
    assert examples("public", "so") == texts("example_questions", "so")
    assert examples("staff", "en") == STAFF_EXAMPLES["en"]
    assert examples("care", "ar") == STAFF_EXAMPLES["sv"]  # staff are Swedish-speaking
    assert initial_language("fa-IR") == "fa" and initial_language("no") == "nb"
    assert initial_language("zh-CN") == "sv" and initial_language(None) == "sv"
    assert text_direction("  «123» سلام Hej") == "rtl"
    assert text_direction("(GOT) Landvetter, مطار") == "ltr"
    assert text_direction("112 …") == "ltr"


def test_the_ui_does_not_choose_the_answer_language(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot answers in the question's language: the UI sends the conversation only."""
    import ui.client

    sent: list[dict[str, Any]] = []

    class _Response:
        status_code = 200

        def iter_lines(self) -> Iterator[str]:
            yield "event: final"
            yield "data: " + json.dumps({"answer": "مرحبا", "lang": "ar"})

    @contextmanager
    def fake_stream(method: str, url: str, **kw: Any) -> Iterator[_Response]:
        sent.append({"method": method, "url": url, **kw["json"]})
        yield _Response()

    monkeypatch.setattr(ui.client.httpx, "stream", fake_stream)
    events = list(ui.client.BotClient("http://bot.invalid").chat_stream(
        [{"role": "user", "content": ARABIC_Q}]))
    assert events == [("final", {"answer": "مرحبا", "lang": "ar"})]
    assert sent == [{"method": "POST", "url": "http://bot.invalid/v1/chat",
                     "messages": [{"role": "user", "content": ARABIC_Q}], "stream": True}]
