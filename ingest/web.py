"""Web sources: URL lists and sitemaps, fetched politely.

- robots.txt is read once per host and respected (a disallowed URL is never requested);
- at most one request per ``min_delay_s`` per host;
- conditional GET: the ETag / Last-Modified seen last time (kept on the stored chunks, so the
  state lives with the data, also on a Chroma server) is sent back, and a 304 means "unchanged".
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
import urllib.robotparser
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from defusedxml import ElementTree

from gbg.settings import WebSettings
from ingest.errors import LoaderError
from ingest.loaders import LoadedDocument, html_to_document, load_markdown, load_pdf

_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


@dataclass(frozen=True)
class Fetched:
    url: str
    not_modified: bool
    body: bytes = b""
    content_type: str = ""
    etag: str = ""
    last_modified: str = ""

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class PoliteFetcher:
    def __init__(self, settings: WebSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.Client(
            timeout=settings.timeout_s,
            follow_redirects=True,
            headers={"User-Agent": settings.user_agent},
        )
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._last_request: dict[str, float] = {}
        self._lock = threading.Lock()
        self.requested: list[str] = []  # every URL actually sent, for the summary and the tests

    def close(self) -> None:
        self.client.close()

    def _wait_turn(self, host: str) -> None:
        with self._lock:
            last = self._last_request.get(host)
            now = time.monotonic()
            if last is not None and now - last < self.settings.min_delay_s:
                time.sleep(self.settings.min_delay_s - (now - last))
            self._last_request[host] = time.monotonic()

    def _get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        self._wait_turn(urlsplit(url).netloc)
        self.requested.append(url)
        return self.client.get(url, headers=headers or {})

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        root = f"{parts.scheme}://{parts.netloc}"
        rp = self._robots.get(root)
        if rp is None:
            rp = urllib.robotparser.RobotFileParser(f"{root}/robots.txt")
            try:
                resp = self._get(f"{root}/robots.txt")
                if resp.status_code in (401, 403):
                    rp.disallow_all = True
                elif resp.status_code >= 400:
                    rp.allow_all = True
                else:
                    rp.parse(resp.text.splitlines())
            except httpx.HTTPError:
                # No robots.txt reachable: the site itself will fail the same way below.
                rp.allow_all = True
            self._robots[root] = rp
        return rp.can_fetch(self.settings.user_agent, url)

    def fetch(self, url: str, etag: str = "", last_modified: str = "") -> Fetched:
        if not self.allowed(url):
            raise LoaderError(url, "disallowed by robots.txt: not fetched")
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            resp = self._get(url, headers)
        except httpx.HTTPError as exc:
            raise LoaderError(url, f"unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code == 304:
            return Fetched(url, True, etag=etag, last_modified=last_modified)
        if resp.status_code >= 400:
            raise LoaderError(url, f"HTTP {resp.status_code}")
        body = resp.content
        if len(body) > self.settings.max_bytes:
            raise LoaderError(url, f"larger than {self.settings.max_bytes} bytes: skipped")
        return Fetched(
            url=str(resp.url) if resp.url else url,
            not_modified=False,
            body=body,
            content_type=resp.headers.get("content-type", "").split(";")[0].strip().lower(),
            etag=resp.headers.get("etag", ""),
            last_modified=resp.headers.get("last-modified", ""),
        )

    def sitemap_urls(self, url: str, include: list[str], max_pages: int) -> list[str]:
        """Page URLs of a sitemap (following sitemap indexes), robots-allowed, bounded."""
        seen: set[str] = set()
        pages: list[str] = []
        todo = [url]
        while todo and len(pages) < max_pages:
            sm = todo.pop(0)
            if sm in seen:
                continue
            seen.add(sm)
            fetched = self.fetch(sm)
            try:
                root = ElementTree.fromstring(fetched.body)
            except Exception as exc:  # defusedxml raises several types for hostile or bad XML
                raise LoaderError(sm, f"not a valid sitemap: {exc}") from exc
            locs = [
                (el.text or "").strip() for el in root.iter(f"{_SITEMAP_NS}loc") if el.text
            ] or [(el.text or "").strip() for el in root.iter("loc") if el.text]
            if root.tag.endswith("sitemapindex"):
                todo.extend(urljoin(sm, loc) for loc in locs)
                continue
            for loc in locs:
                page = urljoin(sm, loc)
                if include and not any(s in page for s in include):
                    continue
                if page not in pages:
                    pages.append(page)
                if len(pages) >= max_pages:
                    break
        return pages


def document_from_fetch(fetched: Fetched) -> LoadedDocument:
    url = fetched.url
    ctype = fetched.content_type
    if ctype in ("text/html", "application/xhtml+xml") or (
        not ctype and fetched.body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html"))
    ):
        return html_to_document(fetched.body.decode("utf-8", errors="replace"), url, url=url)
    suffix = {"application/pdf": ".pdf", "text/markdown": ".md", "text/plain": ".md"}.get(ctype)
    if suffix is None:
        raise LoaderError(url, f"unsupported content type {ctype or '(none)'}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"page{suffix}"
        path.write_bytes(fetched.body)
        doc = load_pdf(path, url) if suffix == ".pdf" else load_markdown(path, url)
    return LoadedDocument(
        source=doc.source, title=doc.title, text=doc.text, lang=doc.lang, url=url, extra=doc.extra
    )
