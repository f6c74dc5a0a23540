"""Hostile sources: SSRF through web sources, symlinks out of a corpus, bombs and bad files.

Web tests run real HTTP servers on loopback. The "admin" server (127.0.0.1) holds a secret and
records every request; it must record none. The "public" site listens on 127.0.0.2, which the
tests that need it allow explicitly (``web.allow_networks``); the others use the default, which
allows no private network at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gbg.settings import Settings
from ingest.embedders import Embedder
from ingest.manifest import discover_manifests
from ingest.pipeline import IngestReport, ingest_all
from ingest.store import ChromaStore
from tests.conftest import write_corpus

SECRET = "admin-secret-0xC0FFEE"
GOOD = "# Badplatser\n\nVid Delsjön finns badplatser med bryggor och grillplatser.\n"
PAGE = (
    "<html lang='sv'><head><title>{t}</title></head><body><main><article><h1>{t}</h1>"
    "<p>{b}</p></article></main></body></html>"
)


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        self.sent: dict[str, int] = {}
        self.slow: dict[str, float] = {}  # path -> seconds between body bytes (endless)
        super().__init__((host, 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append(self.path)
        if self.path in srv.slow:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            sent = 0
            try:
                while sent < 600:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    sent += 1
                    srv.sent[self.path] = sent
                    time.sleep(srv.slow[self.path])
            except OSError:
                pass
            return
        code, headers, body = srv.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        chunked = headers.get("Transfer-Encoding") == "chunked"
        if not chunked:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        try:
            step = 65536
            for i in range(0, len(body), step):
                piece = body[i : i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
                srv.sent[self.path] = sent
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass


def html(title: str, body: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "text/html; charset=utf-8"}, PAGE.format(t=title, b=body).encode()


@pytest.fixture
def admin() -> Iterator[Recorder]:
    srv = Recorder("127.0.0.1", {"/admin": html("Admin", f"Hemlig nyckel: {SECRET}")})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def public() -> Iterator[Recorder]:
    srv = Recorder("127.0.0.2", {
        "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nAllow: /\n"),
        "/page": html("Badplatser", "Vid Delsjön finns badplatser med bryggor och grill."),
    })
    try:
        yield srv
    finally:
        srv.stop()


def web_manifest(name: str, sources: str) -> str:
    return f"""name = "{name}"
title = "{name}"
audience = "public"
sensitivity = "public"
languages = ["sv"]
[license]
name = "CC BY 4.0"
[[sources]]
type = "files"
include = ["docs/**/*"]
{sources}
"""


def run(settings: Settings, e5: Embedder) -> IngestReport:
    return ingest_all(settings, discover_manifests(settings.corpora_dir),
                      ChromaStore.from_settings(settings), e5)


def stored(settings: Settings, corpus: str) -> dict[str, str]:
    """source -> all of its stored text."""
    col = ChromaStore.from_settings(settings).get(corpus)
    assert col is not None
    out: dict[str, str] = {}
    for _, meta, doc, _ in col.iter_records(include=["metadatas", "documents"]):
        src = str(meta["source"])
        out[src] = out.get(src, "") + str(doc) + " " + str(meta["title"])
    return out


def all_text(settings: Settings, corpus: str) -> str:
    return " ".join(stored(settings, corpus).values())


# --- SSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "0177.0.0.1",
                                  "localhost"])
def test_url_list_to_a_loopback_address_is_never_requested(
    settings: Settings, e5: Embedder, admin: Recorder, host: str
) -> None:
    port = admin.server_address[1]
    write_corpus(settings.corpora_dir, "ssrf", {"good.md": GOOD}, manifest=web_manifest(
        "ssrf", f'[[sources]]\ntype = "urls"\nurls = ["http://{host}:{port}/admin"]\n'))
    report = run(settings, e5)
    assert admin.requests == []
    assert SECRET not in all_text(settings, "ssrf")
    [error] = report.errors
    assert "not allowed" in error and "127.0.0.1" in error, error
    assert "docs/good.md" in stored(settings, "ssrf")


def test_sitemap_listing_another_host_is_never_requested(
    settings: Settings, e5: Embedder, admin: Recorder, public: Recorder
) -> None:
    settings.web.allow_networks = ["127.0.0.2/32"]
    port = admin.server_address[1]
    locs = "".join(f"<url><loc>{u}</loc></url>" for u in [
        f"{public.base}/page", f"http://127.0.0.1:{port}/admin", f"http://localhost:{port}/admin",
        f"http://[::ffff:127.0.0.1]:{port}/admin", f"http://2130706433:{port}/admin"])
    public.routes["/sitemap.xml"] = (200, {"Content-Type": "application/xml"}, (
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' + locs + "</urlset>"
    ).encode())
    write_corpus(settings.corpora_dir, "ssrf", {"good.md": GOOD}, manifest=web_manifest(
        "ssrf", f'[[sources]]\ntype = "sitemap"\nurl = "{public.base}/sitemap.xml"\n'))
    report = run(settings, e5)
    assert admin.requests == []
    assert SECRET not in all_text(settings, "ssrf")
    assert len(report.errors) == 4 and all("not named in the manifest" in e for e in report.errors)
    assert f"{public.base}/page" in stored(settings, "ssrf")


def test_redirect_to_loopback_is_not_followed(
    settings: Settings, e5: Embedder, admin: Recorder, public: Recorder
) -> None:
    settings.web.allow_networks = ["127.0.0.2/32"]
    public.routes["/go"] = (302, {"Location": f"{admin.base}/admin"}, b"")
    decimal = f"http://2130706433:{admin.server_address[1]}/admin"
    public.routes["/go2"] = (302, {"Location": decimal}, b"")
    write_corpus(settings.corpora_dir, "ssrf", {"good.md": GOOD}, manifest=web_manifest(
        "ssrf", f'[[sources]]\ntype = "urls"\nurls = ["{public.base}/go", "{public.base}/go2"]\n'))
    report = run(settings, e5)
    assert admin.requests == []
    assert set(public.requests) >= {"/go", "/go2"}
    assert SECRET not in all_text(settings, "ssrf")
    assert len(report.errors) == 2 and all("redirect" in e for e in report.errors), report.errors


def test_address_policy_table() -> None:
    import ipaddress

    from ingest.web import address_refusal

    refused = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
               "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.1", "::1", "::",
               "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
               "64:ff9b::a9fe:a9fe", "2002:7f00:1::"]
    for a in refused:
        assert address_refusal(ipaddress.ip_address(a), []) is not None, a
    for a in ["8.8.8.8", "193.180.109.18", "2606:4700::1111", "::ffff:8.8.8.8"]:
        assert address_refusal(ipaddress.ip_address(a), []) is None, a
    allow = [ipaddress.ip_network("10.0.0.0/8")]
    assert address_refusal(ipaddress.ip_address("10.1.2.3"), allow) is None
    assert address_refusal(ipaddress.ip_address("::ffff:10.1.2.3"), allow) is None
    assert address_refusal(ipaddress.ip_address("169.254.169.254"), allow) is not None


def test_allow_networks_must_be_networks() -> None:
    from pydantic import ValidationError

    from gbg.settings import WebSettings

    assert WebSettings(allow_networks=["127.0.0.0/8", "::1"]).allow_networks == [
        "127.0.0.0/8", "::1/128"]
    with pytest.raises(ValidationError, match="allow_networks"):
        WebSettings(allow_networks=["intranet"])


# --- web limits and redirects ----------------------------------------------------------------


def test_body_over_the_limit_is_refused_while_streaming(
    settings: Settings, public: Recorder
) -> None:
    from ingest.errors import LoaderError
    from ingest.web import PoliteFetcher

    settings.web.allow_networks = ["127.0.0.2/32"]
    settings.web.max_bytes = 100_000
    big = b"<html><body>" + b"a" * 30_000_000
    public.routes["/big"] = (200, {"Content-Type": "text/html", "Transfer-Encoding": "chunked"},
                             big)
    public.routes["/declared"] = (200, {"Content-Type": "text/html"}, big)
    fetcher = PoliteFetcher(settings.web)
    try:
        for path in ("/big", "/declared"):
            with pytest.raises(LoaderError, match="larger than 100000 bytes"):
                fetcher.fetch(f"{public.base}{path}")
    finally:
        fetcher.close()
    # The client hung up early; only socket buffers' worth was written.
    assert public.sent.get("/big", 0) < 10_000_000
    assert public.sent.get("/declared", 0) < 10_000_000


def test_a_dripping_server_is_cut_off_at_the_deadline(
    settings: Settings, public: Recorder
) -> None:
    from ingest.errors import LoaderError
    from ingest.web import PoliteFetcher

    settings.web.allow_networks = ["127.0.0.2/32"]
    settings.web.deadline_s = 1.0
    public.slow["/drip"] = 0.1
    fetcher = PoliteFetcher(settings.web)
    try:
        with pytest.raises(LoaderError, match="deadline"):
            fetcher.fetch(f"{public.base}/drip")
    finally:
        fetcher.close()
    time.sleep(0.5)
    assert public.sent["/drip"] < 100  # 600 bytes at 10 a second would take a minute


def test_redirected_page_is_tracked_under_its_listed_url(
    settings: Settings, e5: Embedder, public: Recorder
) -> None:
    settings.web.allow_networks = ["127.0.0.2/32"]
    public.routes["/moved"] = (301, {"Location": "/page"}, b"")
    write_corpus(settings.corpora_dir, "webb", {"good.md": GOOD}, manifest=web_manifest(
        "webb", f'[[sources]]\ntype = "urls"\nurls = ["{public.base}/moved"]\n'))
    for i in range(3):
        report = run(settings, e5)
        [c] = report.corpora
        assert c.errors == []
        assert set(stored(settings, "webb")) == {"docs/good.md", f"{public.base}/moved"}
        if i:
            assert c.chunks_removed == 0 and c.embedded == 0, (i, c)


# --- local files ---------------------------------------------------------------------------


def test_symlinks_out_of_the_corpus_are_refused(
    settings: Settings, e5: Embedder, tmp_path: Path
) -> None:
    root = write_corpus(settings.corpora_dir, "lankar", {"good.md": GOOD}, manifest=web_manifest(
        "lankar", "").replace('["docs/**/*"]', '["docs/**/*", "docs/*/*"]'))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(f"# Hemligt\n\n{SECRET} finns här.\n", encoding="utf-8")
    (root / "docs" / "passwd.txt").symlink_to("/etc/passwd")
    (root / "docs" / "ute").symlink_to(outside, target_is_directory=True)
    (root / "docs" / "inne.md").symlink_to(root / "docs" / "good.md")  # inside: fine
    report = run(settings, e5)
    text = all_text(settings, "lankar")
    assert SECRET not in text and "root:x:0:0" not in text
    assert set(stored(settings, "lankar")) == {"docs/good.md", "docs/inne.md"}
    errors = report.errors
    assert {e.split(":")[0] for e in errors} == {
        "docs/passwd.txt", "docs/ute", "docs/ute/secret.md"}
    assert len(errors) == 3 and all("outside the corpus folder" in e for e in errors), errors


def test_each_bad_file_is_its_own_error_and_later_corpora_are_ingested(
    settings: Settings, e5: Embedder, tmp_path: Path
) -> None:
    """The whole hostile folder of bench/hostile_ingest.py, with smaller bombs and limits."""
    from bench.hostile_ingest import GOOD_SOURCES, SECRET, build_hostile_corpora, missing_reports
    from ingest.limits import FileLimits

    limits = FileLimits(max_unpacked_bytes=10_000_000, max_chars=500_000)
    build_hostile_corpora(settings.corpora_dir, tmp_path / "outside", scale=0.1)
    report = ingest_all(settings, discover_manifests(settings.corpora_dir),
                        ChromaStore.from_settings(settings), e5, limits=limits)
    assert missing_reports(report.errors) == [], report.errors
    assert len(report.errors) == 9, report.errors
    for corpus, sources in GOOD_SOURCES.items():
        assert set(stored(settings, corpus)) == sources
    text = all_text(settings, "a-hostile")
    assert SECRET not in text and "root:x:0:0" not in text and "lol" not in text


def test_docx_zip_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    from bench.hostile_ingest import _W, _docx_with_body
    from ingest.errors import LoaderError
    from ingest.loaders import load_file

    p = tmp_path / "bomb.docx"
    para = b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>" * 10_000

    def body(fh: object) -> None:
        fh.write(f"<w:document {_W}><w:body>".encode())  # type: ignore[attr-defined]
        for _ in range(300):  # ~110 MB of XML
            fh.write(para)  # type: ignore[attr-defined]
        fh.write(b"</w:body></w:document>")  # type: ignore[attr-defined]

    _docx_with_body(p, body)
    assert p.stat().st_size < 2_000_000
    started = time.monotonic()
    [err] = load_file(p, "bomb.docx")
    assert isinstance(err, LoaderError) and "uncompressed" in err.message, err
    assert time.monotonic() - started < 5


def test_yaml_alias_bomb_in_front_matter_is_refused(tmp_path: Path) -> None:
    from ingest.errors import LoaderError
    from ingest.loaders import load_file

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = tmp_path / "bomb.md"
    p.write_text("---\n" + "\n".join(lines) + "\ntitle: *i\n---\n" + GOOD, encoding="utf-8")
    [err] = load_file(p, "bomb.md")
    assert isinstance(err, LoaderError) and "alias" in err.message, err
    # A plain anchor-free front matter still works, and a long title is cut.
    p.write_text("---\ntitle: " + "T" * 5000 + "\n---\n" + GOOD, encoding="utf-8")
    [doc] = load_file(p, "ok.md")
    assert not isinstance(doc, LoaderError) and 0 < len(doc.title) <= 300


def test_jsonl_with_invalid_utf8_keeps_its_good_rows(tmp_path: Path) -> None:
    from ingest.errors import LoaderError
    from ingest.loaders import LoadedDocument, load_file

    p = tmp_path / "rows.jsonl"
    p.write_bytes(json.dumps({"id": "a", "text": "Första raden om bad."}).encode() + b"\n"
                  + b'{"id": "b", "text": "\xff\xfe"}\n'
                  + json.dumps({"id": "c", "text": "Tredje raden om bibliotek."}).encode() + b"\n")
    out = load_file(p, "rows.jsonl")
    assert [d.doc_id for d in out if isinstance(d, LoadedDocument)] == ["a", "c"]
    [err] = [d for d in out if isinstance(d, LoaderError)]
    assert err.source == "rows.jsonl:2" and "UTF-8" in err.message


def test_one_line_without_breaks_is_hard_split() -> None:
    from ingest.chunking import Chunker, approx_tokens

    run_of_chars = "abcdefghij" * 20_000
    chunker = Chunker(max_tokens=64, overlap_tokens=8)
    started = time.monotonic()
    chunks = chunker.chunk("# Rad\n\n" + run_of_chars, "Rad")
    assert time.monotonic() - started < 10
    assert len(chunks) > 100
    assert all(approx_tokens(c.text) <= 64 and len(c.text) <= 64 * 8 for c in chunks)
    assert "".join(c.text for c in chunks) == run_of_chars


def test_a_huge_markdown_file_is_refused_by_its_character_budget(tmp_path: Path) -> None:
    from ingest.errors import LoaderError
    from ingest.limits import FileLimits
    from ingest.loaders import load_file

    p = tmp_path / "one.md"
    p.write_text("# Rad\n\n" + "x" * 2_000_000, encoding="utf-8")
    [err] = load_file(p, "one.md", FileLimits(max_chars=1_000_000))
    assert isinstance(err, LoaderError) and "characters" in err.message, err


def test_a_file_over_its_byte_budget_is_not_read(settings: Settings, e5: Embedder) -> None:
    from ingest.limits import FileLimits

    write_corpus(settings.corpora_dir, "stor", {"good.md": GOOD, "big.md": GOOD + "x" * 5000})
    report = ingest_all(settings, discover_manifests(settings.corpora_dir),
                        ChromaStore.from_settings(settings), e5,
                        limits=FileLimits(max_bytes=2000))
    [error] = report.errors
    assert error.startswith("docs/big.md: ") and "bytes" in error
    assert set(stored(settings, "stor")) == {"docs/good.md"}


class SlowCounting(Embedder):
    """The real e5 embedder, but counting tokens of one marked file is very slow."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim

    def embed_passages(self, texts: object) -> object:  # type: ignore[override]
        return self.inner.embed_passages(texts)  # type: ignore[arg-type]

    def embed_queries(self, texts: object) -> object:  # type: ignore[override]
        return self.inner.embed_queries(texts)  # type: ignore[arg-type]

    def count_tokens(self, text: str) -> int:
        if "LÅNGSAM" in text:
            time.sleep(0.05)
        return self.inner.count_tokens(text)


def test_a_file_over_its_time_budget_is_skipped(settings: Settings, e5: Embedder) -> None:
    from ingest.limits import FileLimits

    slow = "# Långsam\n\n" + "\n\n".join(f"LÅNGSAM mening nummer {i}." for i in range(400))
    write_corpus(settings.corpora_dir, "tid", {"good.md": GOOD, "slow.md": slow})
    report = ingest_all(settings, discover_manifests(settings.corpora_dir),
                        ChromaStore.from_settings(settings), SlowCounting(e5),
                        limits=FileLimits(max_seconds=1.0))
    [error] = report.errors
    assert error.startswith("docs/slow.md: ") and "longer than 1 s" in error
    assert set(stored(settings, "tid")) == {"docs/good.md"}


def test_unexpected_exception_in_one_file_is_that_files_error(
    settings: Settings, e5: Embedder
) -> None:
    """A malformed DOCX whose XML is broken raised lxml's XMLSyntaxError through the run."""
    from bench.hostile_ingest import _W, _docx_with_body

    root = write_corpus(settings.corpora_dir, "a-trasig", {"good.md": GOOD})
    _docx_with_body(root / "docs" / "bad.docx",
                    lambda fh: fh.write(f"<w:document {_W}><w:body><w:p".encode()))
    write_corpus(settings.corpora_dir, "b-senare", {"later.md": GOOD})
    report = run(settings, e5)
    [error] = report.errors
    assert error.startswith("docs/bad.docx: ") and "DOCX" in error
    assert set(stored(settings, "a-trasig")) == {"docs/good.md"}
    assert set(stored(settings, "b-senare")) == {"docs/later.md"}


def test_dns_rebinding_gains_nothing(
    settings: Settings, public: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolves to an allowed address when checked and to the admin server a moment
    later: the connection goes to a checked address or nowhere."""
    import socket

    from ingest.errors import LoaderError
    from ingest.web import PoliteFetcher

    port = public.server_address[1]
    try:
        admin = Recorder.__new__(Recorder)
        admin.routes, admin.requests, admin.sent, admin.slow = {}, [], {}, {}
        ThreadingHTTPServer.__init__(admin, ("127.0.0.1", port), _Handler)
    except OSError:
        pytest.skip("the public site's port is taken on 127.0.0.1")
    admin.routes["/page"] = html("Admin", SECRET)
    threading.Thread(target=admin.serve_forever, daemon=True).start()
    real = socket.getaddrinfo
    answers = iter(["127.0.0.2"])

    def rebinding(host: object, *args: object, **kw: object) -> object:
        if host == "rebind.example":
            return real(next(answers, "127.0.0.1"), *args, **kw)  # type: ignore[arg-type]
        return real(host, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings.web.allow_networks = ["127.0.0.2/32"]
    fetcher = PoliteFetcher(settings.web)
    try:
        with pytest.raises(LoaderError, match="127.0.0.1 .loopback.: not allowed"):
            fetcher.fetch(f"http://rebind.example:{port}/page")
    finally:
        fetcher.close()
        admin.stop()
    assert admin.requests == []
