"""The web loader against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gbg.settings import Settings
from ingest.embedders import Embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import ingest_all
from ingest.store import ChromaStore

PAGE = """<html lang="{lang}"><head><title>{title}</title></head><body>
<nav><a href="/">Hem</a> <a href="/om">Om oss</a> Meny</nav>
<div class="cookie-banner">Vi använder kakor.</div>
<main><article><h1>{title}</h1><h2>Fakta</h2><p>{body}</p></article></main>
<footer>Sidfot med kontaktuppgifter och länkar.</footer></body></html>"""

PAGES = {
    "/turism/liseberg": ("Liseberg", "en", "Liseberg is an amusement park near Korsvägen with "
                         "rides, concerts and a large Christmas market in winter."),
    "/turism/haga": ("Haga", "sv", "Haga är en stadsdel med trähus, kaféer och stora "
                     "kanelbullar. Skansen Kronan ligger på berget ovanför."),
    "/privat/intern": ("Intern sida", "sv", "Den här sidan får aldrig hämtas av roboten."),
}


class Site:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.pages = dict(PAGES)
        self.conditional = True

    def sitemap(self, base: str) -> str:
        locs = "".join(f"<url><loc>{base}{p}</loc></url>" for p in self.pages)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'
        )


@pytest.fixture
def site() -> Iterator[tuple[Site, str]]:
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append((self.command, self.path, dict(self.headers)))
            base = f"http://{self.headers['Host']}"
            if self.path == "/robots.txt":
                self._send(200, b"User-agent: *\nDisallow: /privat/\n", "text/plain")
            elif self.path == "/sitemap.xml":
                self._send(200, state.sitemap(base).encode(), "application/xml")
            elif self.path in state.pages:
                title, lang, body = state.pages[self.path]
                data = PAGE.format(title=title, lang=lang, body=body).encode()
                etag = '"' + hashlib.sha1(data).hexdigest() + '"'
                if state.conditional and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self._send(200, data, "text/html; charset=utf-8", etag)
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, code: int, data: bytes, ctype: str, etag: str = "") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            if etag:
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", "Wed, 01 Oct 2025 10:00:00 GMT")
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_web_corpus(settings: Settings, base: str) -> None:
    root = settings.corpora_dir / "webb"
    root.mkdir(parents=True)
    (root / "corpus.toml").write_text(
        f"""name = "webb"
title = "Webbsidor"
audience = "public"
sensitivity = "public"
languages = ["sv", "en"]
[license]
name = "CC BY 4.0"
[[sources]]
type = "sitemap"
url = "{base}/sitemap.xml"
[[sources]]
type = "urls"
urls = ["{base}/privat/intern", "{base}/saknas"]
""",
        encoding="utf-8",
    )


def test_sitemap_robots_and_conditional_get(
    site: tuple[Site, str], settings: Settings, e5: Embedder
) -> None:
    state, base = site
    settings.web.min_delay_s = 0.05
    settings.web.allow_networks = ["127.0.0.0/8"]  # the test site is on loopback
    write_web_corpus(settings, base)

    def run() -> object:
        return ingest_all(settings, discover_manifests(settings.corpora_dir),
                          ChromaStore.from_settings(settings), e5)

    first = run()
    [c1] = first.corpora  # type: ignore[attr-defined]
    paths = [p for _, p, _ in state.requests]
    assert "/privat/intern" not in paths, "a robots-disallowed page was requested"
    assert paths.count("/robots.txt") == 1
    assert {"/turism/liseberg", "/turism/haga"} <= set(paths)
    assert c1.embedded > 0
    errors = " ".join(c1.errors)
    assert "robots.txt" in errors and "/saknas" in errors and "404" in errors

    col = ChromaStore.from_settings(settings).get("webb")
    assert col is not None
    docs = {m["url"] or m["source"]: (m, d) for _, m, d, _ in
            col.iter_records(include=["metadatas", "documents"])}
    meta, text = docs[f"{base}/turism/liseberg"]
    assert meta["lang"] == "en" and meta["etag"] and "Christmas market" in str(text)
    assert "Meny" not in str(text) and "kakor" not in str(text)

    state.requests.clear()
    second = run()
    [c2] = second.corpora  # type: ignore[attr-defined]
    assert c2.embedded == 0 and c2.chunks_removed == 0
    page_reqs = [(p, h) for _, p, h in state.requests if p.startswith("/turism/")]
    assert len(page_reqs) == 2
    assert all(h.get("If-None-Match") for _, h in page_reqs)
    assert "/privat/intern" not in [p for _, p, _ in state.requests]

    # A page that changes is re-fetched and re-embedded; one that vanishes from the sitemap goes.
    state.pages["/turism/haga"] = ("Haga", "sv", "Haga har nu gågator och fler kaféer än förr.")
    del state.pages["/turism/liseberg"]
    third = run()
    [c3] = third.corpora  # type: ignore[attr-defined]
    assert c3.embedded == 1 and c3.chunks_removed >= 1
    sources = {m["source"] for _, m, _, _ in col.iter_records()}
    assert sources == {f"{base}/turism/haga"}


def test_polite_delay_between_requests(site: tuple[Site, str], settings: Settings) -> None:
    import time

    from ingest.web import PoliteFetcher

    _, base = site
    settings.web.min_delay_s = 0.2
    settings.web.allow_networks = ["127.0.0.0/8"]
    fetcher = PoliteFetcher(settings.web)
    started = time.monotonic()
    for _ in range(3):
        fetcher.fetch(f"{base}/turism/haga")
    elapsed = time.monotonic() - started
    fetcher.close()
    # robots.txt + 3 pages = 4 requests, so at least 3 pauses
    assert elapsed >= 0.6
    assert fetcher.requested[0].endswith("/robots.txt")


def test_unreachable_host_is_reported(settings: Settings, e5: Embedder) -> None:
    from tests.conftest import free_port

    settings.web.allow_networks = ["127.0.0.0/8"]
    write_web_corpus(settings, f"http://127.0.0.1:{free_port()}")
    report = ingest_all(settings, discover_manifests(settings.corpora_dir),
                        ChromaStore.from_settings(settings), e5)
    assert report.corpora[0].errors and report.corpora[0].chunks_total == 0
