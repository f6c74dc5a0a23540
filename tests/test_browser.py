"""The Streamlit chat in a real browser: headless Chromium (Debian's package) driven by
Playwright, against the real UI process and the real bot on loopback ports.

Slow tier only. Screenshots land in reports/screenshots/ so that a person can look at them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.http.app import create_app
from gbg.i18n import text
from gbg.settings import Settings
from ingest.embedders import Embedder
from tests.helpers import REPO, Bot, free_port, make_bot, serve_in_thread, streamlit_running

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("GBG_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = REPO / "reports" / "screenshots"
SV = {key: text(key, "sv") for key in ("ai_notice", "bot_down", "request_id", "source", "thanks")}
QUESTION = "Hur tar jag mig från Landvetter till centrum?"
# Answered from the Swedish Landvetter page (an Arabic framing line, then the Swedish passage).
ARABIC_QUESTION = "كيف أصل من مطار لاندفيتر إلى وسط المدينة؟"
ARABIC_LETTER = re.compile("[\u0600-\u06ff]")
COMMENT = "Tydligt svar, tack"
ANSWER_TIMEOUT_MS = 120_000


def _squash(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class ServedBot:
    bot: Bot
    url: str


@pytest.fixture(scope="module")
def bot(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServedBot]:
    """The real bot (ChatService + FastAPI) served by uvicorn in a thread.

    These tests are about the UI, so the similarity floor is lowered a little: an Arabic
    question's best (Swedish or English) source scores about 0.80 with e5, on the default floor
    itself (the Arabic Landvetter question: 0.802), where a change in the corpora would flip it
    to a refusal. The calibrated answerability decision is the default one."""
    bot = make_bot(bundled_store, tmp_path_factory.mktemp("browser-bot"), e5=e5,
                   min_relevance=0.75)
    with serve_in_thread(create_app(bot.settings, bot.service)) as url:
        yield ServedBot(bot, url)


@contextmanager
def streamlit_ui(bot_url: str, log_path: Path) -> Iterator[str]:
    """`streamlit run ui/app.py` as a subprocess talking to bot_url; yields the UI's URL."""
    port = free_port()
    env = dict(os.environ, GBG_UI__BOT_URL=bot_url)
    cmd = [sys.executable, "-m", "streamlit", "run", "ui/app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    with streamlit_running(cmd, env, port, log_path):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's `chromium` package "
                    "(or point GBG_TEST_CHROMIUM at a Chromium binary)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """A page in a new browser context; ``locale`` is the browser's language."""
    contexts: list[Any] = []

    def _new(locale: str = "sv-SE") -> Any:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield _new
    for ctx in contexts:
        ctx.close()


def content_height(page: Any) -> int:
    """The window height that shows the whole chat: Streamlit scrolls its main area inside its
    own container, so the document itself never grows past the viewport."""
    return int(page.evaluate(
        """() => {
            const main = document.querySelector('[data-testid="stAppScrollToBottomContainer"]')
                || document.querySelector('.stMain');
            const extra = main ? main.scrollHeight - main.clientHeight : 0;
            return Math.max(document.documentElement.scrollHeight, window.innerHeight + extra);
        }"""
    ))


def screenshot(page: Any, name: str, copy_to: Path | None = None) -> Path:
    """A whole-page PNG. Playwright's full_page only sees the document, which Streamlit keeps at
    viewport height, so the viewport is stretched to the content for the shot and restored.
    ``copy_to``: a folder that gets a copy (the test's own tmp dir)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    size = page.viewport_size
    height = size["height"]
    for _ in range(3):  # an expander still opening grows the page after the first measure
        wanted = min(max(content_height(page), height), 8000)
        if wanted == height:
            break
        height = wanted
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(400)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    page.wait_for_timeout(200)
    if copy_to is not None:
        shutil.copy(path, copy_to / name)
    return path


def assert_png(path: Path, min_bytes: int = 10_000) -> None:
    assert path.exists(), path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) >= min_bytes, f"{path} is only {len(data)} bytes"


def to_phone_width(page: Any) -> None:
    """390 px wide, the sidebar closed as on a phone."""
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(800)
    collapse = page.get_by_test_id("stSidebarCollapseButton")
    if page.get_by_test_id("stSidebar").get_attribute("aria-expanded") == "true" and \
            collapse.count():
        collapse.locator("button").click()
        page.wait_for_timeout(500)


def assert_fits_phone(page: Any) -> None:
    """At 390 px: the chat input is on screen and nothing is wider than the screen."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stChatInput")).to_be_visible()
    expect(page.get_by_test_id("stChatInput")).to_be_in_viewport()
    box = page.get_by_test_id("stChatInput").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 392, box
    scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll_width <= 392, f"horizontal scrollbar at 390 px: scrollWidth={scroll_width}"
    too_wide = page.evaluate(
        """() => Array.from(document.querySelectorAll(
                '[data-testid="stMainBlockContainer"] *, [data-testid="stBottom"] *'))
            .filter(e => e.getClientRects().length && e.scrollWidth > e.clientWidth + 2
                    && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
            .map(e => (e.dataset.testid || e.tagName) + ':' + e.scrollWidth + '>'
                      + e.clientWidth)"""
    )
    assert not too_wide, f"boxes that scroll sideways at 390 px: {too_wide}"


def direction_of(locator: Any) -> str:
    """The computed CSS direction of the (first) element."""
    return str(locator.first.evaluate("e => getComputedStyle(e).direction"))


def wait_for_audit(svc: Any, rid: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    rec = svc.audit.get(rid)
    while (rec is None or rec.get("feedback_rating") is None) and time.monotonic() < deadline:
        time.sleep(0.2)
        rec = svc.audit.get(rid)
    assert rec is not None, f"no audit record for {rid}"
    return dict(rec)


def test_chat_sources_feedback_and_screens(bot: ServedBot, new_page: Callable[..., Any],
                                           tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with streamlit_ui(bot.url, tmp_path / "streamlit.log") as url:
        page = new_page()
        page.goto(url)
        chat_input = page.get_by_test_id("stChatInputTextArea")
        expect(chat_input).to_be_visible(timeout=60_000)

        # The AI notice is at the top, visible, and says what the texts say.
        notice = page.get_by_test_id("stAlertContentInfo").first
        expect(notice).to_be_visible()
        assert _squash(SV["ai_notice"]) in _squash(notice.inner_text())

        # Ask; wait until the streamed answer is complete (the feedback row comes after it).
        chat_input.fill(QUESTION)
        chat_input.press("Enter")
        answer = page.get_by_test_id("stChatMessage").filter(
            has=page.get_by_test_id("stChatMessageAvatarAssistant")).last
        expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        expect(page.get_by_test_id("stChatMessage").filter(has_text=QUESTION)).to_be_visible()
        answer_text = answer.get_by_test_id("stMarkdownContainer").first.inner_text().strip()
        assert len(answer_text) > 20, answer_text
        assert "[1]" in answer_text or "[2]" in answer_text, answer_text

        # A source card: closed at first, the snippet shows when it is opened.
        cards = answer.get_by_test_id("stExpander")
        assert cards.count() >= 1
        card = cards.first
        title = card.locator("summary").get_by_test_id("stMarkdownContainer").inner_text()
        assert title.strip().startswith("[1]"), title
        details = card.get_by_test_id("stExpanderDetails")
        expect(details).to_be_hidden()
        card.locator("summary").click()
        expect(details).to_be_visible()
        expect(details.get_by_text(f"{SV['source']}:", exact=False)).to_be_visible()
        assert len(_squash(details.inner_text())) > 60, details.inner_text()

        # The request id shown for support.
        rid_caption = answer.get_by_test_id("stCaptionContainer").filter(
            has_text=f"{SV['request_id']}:")
        expect(rid_caption).to_be_visible()
        rid = rid_caption.locator("code").inner_text().strip()
        assert len(rid) == 32 and all(ch in "0123456789abcdef" for ch in rid), rid
        before = bot.bot.service.audit.get(rid)
        assert before is not None and before["feedback_rating"] is None

        # Feedback: a comment, then thumbs up; a toast thanks the user.
        comment = answer.get_by_test_id("stTextInput").locator("input")
        comment.fill(COMMENT)
        comment.press("Enter")
        thumbs_up = answer.get_by_role("radio", name="Thumbs up")
        thumbs_up.click()
        expect(thumbs_up).to_have_attribute("aria-checked", "true")
        expect(page.get_by_test_id("stToast").filter(has_text=SV["thanks"])).to_be_visible(
            timeout=15_000)
        rec = wait_for_audit(bot.bot.service, rid)
        assert rec["feedback_rating"] == 1, rec
        assert rec["feedback_comment"] == COMMENT, rec
        expect(page.get_by_test_id("stAlertContentWarning")).to_have_count(0)

        desktop = screenshot(page, "chat-desktop-1280.png")
        assert_png(desktop)

        # Phone width: everything reachable, nothing wider than the screen.
        to_phone_width(page)
        assert_fits_phone(page)
        expect(notice).to_be_attached()
        assert _squash(SV["ai_notice"]) in _squash(notice.inner_text())
        mobile = screenshot(page, "chat-mobile-390.png")
        assert_png(mobile)


def test_bot_unreachable_is_shown_in_the_browser(new_page: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    from playwright.sync_api import expect

    nowhere = f"http://127.0.0.1:{free_port()}"
    with streamlit_ui(nowhere, tmp_path / "streamlit.log") as url:
        page = new_page()
        page.goto(url)
        error = page.get_by_test_id("stAlertContentError")
        expect(error).to_be_visible(timeout=60_000)
        shown = _squash(error.inner_text())
        assert _squash(SV["bot_down"]) in shown, shown
        expect(page.get_by_test_id("stAlertContentInfo").first).to_contain_text(
            SV["ai_notice"][:40])
        expect(page.get_by_test_id("stChatInput")).to_have_count(0)
        assert_png(screenshot(page, "bot-down-desktop-1280.png"), min_bytes=5_000)


def test_arabic_ui_is_right_to_left(bot: ServedBot, new_page: Callable[..., Any],
                                    tmp_path: Path) -> None:
    """An Arabic browser gets the Arabic UI laid out right to left (issue 16): the browser's
    language picks it, the main area, the chat input and the sidebar are RTL, an Arabic
    question's answer is RTL and its Swedish source card LTR. Switching the selector to Swedish
    mirrors the page back while the Arabic answer stays RTL. Screenshots at 1280 and 390 px."""
    from playwright.sync_api import expect

    def ar(key: str) -> str:
        return text(key, "ar")

    with streamlit_ui(bot.url, tmp_path / "streamlit.log") as url:
        page = new_page(locale="ar-SA")
        page.goto(url)
        chat_input = page.get_by_test_id("stChatInputTextArea")
        expect(chat_input).to_be_visible(timeout=60_000)

        # The browser's language chose Arabic: selector, title, AI notice, input, examples.
        sidebar = page.get_by_test_id("stSidebar")
        selector = sidebar.get_by_test_id("stSelectbox")
        expect(selector.get_by_role("combobox")).to_have_value("العربية")
        expect(selector.get_by_test_id("stWidgetLabel")).to_have_text(ar("language"))
        expect(page.get_by_test_id("stHeading").first).to_have_text(ar("title"))
        notice = page.get_by_test_id("stAlertContentInfo").first
        expect(notice).to_be_visible()
        assert _squash(ar("ai_notice")) in _squash(notice.inner_text())
        expect(chat_input).to_have_attribute("placeholder", ar("placeholder"))

        # A right-to-left layout, not only right-aligned text.
        main = page.locator("main.stMain")
        for part in (main, page.get_by_test_id("stMainBlockContainer"),
                     page.get_by_test_id("stBottom"), page.get_by_test_id("stChatInput"),
                     sidebar):
            assert direction_of(part) == "rtl", part
        # The example questions' two columns are mirrored: the first is on the right.
        first, second = (main.locator(f".st-key-ex_{i}").bounding_box() for i in (0, 1))
        assert first and second and first["x"] > second["x"], (first, second)
        heading = page.get_by_test_id("stHeading").first.locator("h1 span").first.bounding_box()
        block = page.get_by_test_id("stMainBlockContainer").bounding_box()
        assert heading and block and block["x"] + block["width"] - (
            heading["x"] + heading["width"]) < 80, (heading, block)  # the title starts right

        # Ask in Arabic; the bot answers in Arabic from a Swedish source.
        chat_input.fill(ARABIC_QUESTION)
        chat_input.press("Enter")
        answer = page.get_by_test_id("stChatMessage").filter(
            has=page.get_by_test_id("stChatMessageAvatarAssistant")).last
        expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        expect(answer.get_by_test_id("stAlertContentWarning")).to_have_count(0)  # not refused
        question = page.get_by_test_id("stChatMessage").filter(has_text=ARABIC_QUESTION)
        expect(question).to_be_visible()
        assert direction_of(question.locator('[class*="st-key-dir-rtl-msg-"]')) == "rtl"
        body = answer.locator('[class*="st-key-dir-rtl-msg-"]')
        expect(body).to_have_count(1)
        assert direction_of(body) == "rtl"
        answer_text = body.inner_text().strip()
        assert ARABIC_LETTER.search(answer_text) and "[" in answer_text, answer_text
        avatar = answer.get_by_test_id("stChatMessageAvatarAssistant").bounding_box()
        content = body.bounding_box()
        assert avatar and content and avatar["x"] > content["x"], (avatar, content)
        expect(answer.get_by_test_id("stCaptionContainer").first).to_contain_text(
            ar("answer_from"))
        expect(answer.get_by_test_id("stCaptionContainer").filter(
            has_text=f"{ar('request_id')}:")).to_be_visible()

        # Its sources: closed cards; a Swedish source reads left to right in the Arabic page.
        cards = answer.get_by_test_id("stExpander")
        assert cards.count() >= 1
        card = cards.first
        source_box = answer.locator('[class*="st-key-dir-ltr-src-"]').first
        assert direction_of(source_box) == "ltr"
        details = card.get_by_test_id("stExpanderDetails")
        expect(details).to_be_hidden()
        card.locator("summary").click()
        expect(details).to_be_visible()
        assert len(_squash(details.inner_text())) > 60, details.inner_text()
        reference = details.locator('[class*="st-key-dir-rtl-ref-"]')
        expect(reference).to_contain_text(f"{ar('source')}:")
        assert direction_of(reference) == "rtl"

        assert_png(screenshot(page, "ui-ar-1280.png", copy_to=tmp_path))

        # The user's choice: Swedish mirrors the page back; the Arabic answer stays RTL.
        selector.get_by_role("combobox").click()
        page.get_by_role("option", name="Svenska").click()
        expect(notice).to_contain_text(text("ai_notice", "sv")[:40])
        assert direction_of(main) == "ltr" and direction_of(sidebar) == "ltr"
        # Retried until the rerun has redrawn the history (an element being replaced has no
        # computed style).
        expect(answer.locator('[class*="st-key-dir-rtl-msg-"]').first).to_have_css(
            "direction", "rtl")
        expect(answer.get_by_test_id("stCaptionContainer").first).to_contain_text(
            text("answer_from", "sv"))
        # ... and back to Arabic by the selector.
        selector.get_by_role("combobox").click()
        page.get_by_role("option", name="العربية").click()
        expect(notice).to_contain_text(ar("ai_notice")[:40])
        assert direction_of(main) == "rtl"

        # Phone width: RTL still, everything reachable, nothing wider than the screen.
        to_phone_width(page)
        assert_fits_phone(page)
        assert direction_of(page.get_by_test_id("stChatInput")) == "rtl"
        assert_png(screenshot(page, "ui-ar-390.png", copy_to=tmp_path))
    for name in ("ui-ar-1280.png", "ui-ar-390.png"):
        assert_png(tmp_path / name)
        assert_png(SHOTS / name)


class _PixelServer:
    """A loopback "tracker" that records every request (it must get none)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_images_in_documents_are_never_loaded_by_the_browser(
        settings: Settings, make_corpus: Any, e5: Embedder, new_page: Callable[..., Any],
        tmp_path: Path) -> None:
    """A document with a Markdown image (a tracking pixel): the answer and its source card are
    shown, and neither the browser's network log nor the image host sees a request for it
    (issue 14)."""
    from playwright.sync_api import expect

    from ingest.manifest import discover_manifests
    from ingest.pipeline import ingest_all
    from ingest.store import ChromaStore

    pixel = _PixelServer()
    make_corpus("museer", {"stadsmuseet.md": f"""\
        # Stadsmuseet

        Stadsmuseet ligger i Ostindiska huset vid Norra Hamngatan.
        ![Ostindiska huset](http://{pixel.host}/pixel.png?who=reader)
        Stadsmuseet visar Göteborgs historia från vikingatiden till i dag.
        """})
    report = ingest_all(settings, discover_manifests(settings.corpora_dir),
                        ChromaStore.from_settings(settings), e5)
    assert report.errors == []
    served = make_bot(settings, tmp_path / "bot", e5=e5)
    requested: list[str] = []
    try:
        with serve_in_thread(create_app(served.settings, served.service)) as bot_url, \
                streamlit_ui(bot_url, tmp_path / "streamlit.log") as url:
            page = new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.goto(url)
            chat_input = page.get_by_test_id("stChatInputTextArea")
            expect(chat_input).to_be_visible(timeout=60_000)
            chat_input.fill("Var ligger Stadsmuseet?")
            chat_input.press("Enter")
            answer = page.get_by_test_id("stChatMessage").filter(
                has=page.get_by_test_id("stChatMessageAvatarAssistant")).last
            expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
            for card in answer.get_by_test_id("stExpander").all():
                card.locator("summary").click()
            page.wait_for_timeout(1500)
            assert answer.locator("img").count() == 0
            assert_png(screenshot(page, "chat-no-remote-images-1280.png"), min_bytes=5_000)
    finally:
        pixel.stop()
    assert not [u for u in requested if pixel.host in u], requested
    assert pixel.hits == []
