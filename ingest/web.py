"""Web sources: URL lists and sitemaps, fetched politely and only where the manifest says.

- requests go only to hosts the corpus manifest names (its URLs and sitemaps); a sitemap entry or
  a redirect to another host is refused, and redirects are followed one hop at a time;
- every address a host resolves to is checked before connecting (loopback, private, link-local,
  multicast, reserved, unspecified; IPv4, IPv6 and IPv4 inside IPv6), and the connection goes to
  exactly the address that was checked, so DNS rebinding gains nothing. An operator may allow a
  private network with ``web.allow_networks``;
- bodies are streamed and cut off at ``max_bytes``; each URL has an overall deadline
  (``deadline_s``) enforced on every socket read, so a server that drips bytes is cut off;
- robots.txt is read once per host and respected (a disallowed URL is never requested);
- at most one request per ``min_delay_s`` per host;
- conditional GET: the ETag / Last-Modified seen last time (kept on the stored chunks, so the
  state lives with the data, also on a Chroma server) is sent back, and a 304 means "unchanged".
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
import threading
import time
import typing
import urllib.robotparser
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpcore
import httpx
from defusedxml import ElementTree

from gbg.settings import WebSettings
from ingest.errors import LoaderError, UnsafeSourceError
from ingest.limits import DEFAULT_LIMITS, FileLimits
from ingest.loaders import LoadedDocument, html_to_document, load_markdown, load_pdf
from ingest.manifest import CorpusManifest, SitemapSource, UrlListSource

_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
_REDIRECTS = (301, 302, 303, 307, 308)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- where ingest may go ---------------------------------------------------------------------


def host_of(url: str) -> str:
    """The host as the HTTP client sees it (lower case, IPv6 without brackets)."""
    try:
        return httpx.URL(url).host
    except httpx.InvalidURL as exc:
        raise UnsafeSourceError(f"not a valid URL: {exc}") from exc


def manifest_hosts(manifest: CorpusManifest) -> frozenset[str]:
    """The hosts a corpus's web sources name: the only ones its ingest may request."""
    urls: list[str] = []
    for src in manifest.sources:
        if isinstance(src, UrlListSource):
            urls.extend(str(u) for u in src.urls)
        elif isinstance(src, SitemapSource):
            urls.append(str(src.url))
    return frozenset(host_of(u) for u in urls)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why ingest must not connect to ``ip``, or None when it may (a pure decision)."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (v4 := _embedded_ipv4(ip)) is not None:
        # An IPv4-mapped address is that IPv4 address; the other forms are judged as both.
        candidates = [v4] if ip.ipv4_mapped is not None else [ip, v4]
    if any(c in net for c in candidates for net in allowed):
        return None
    for c in candidates:
        inside = "" if c is ip else f" IPv4 {c}"
        for kind in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
            if getattr(c, f"is_{kind}"):
                return kind.replace("_", "-") + inside
        if not c.is_global:
            return "not globally routable" + inside
    return None


def resolve_checked(host: str, port: int, allowed: Sequence[IPNetwork]) -> list[IPAddress]:
    """Every address ``host`` resolves to, refusing the host if any of them is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    refused = [(ip, why) for ip in addresses if (why := address_refusal(ip, allowed))]
    if refused or not addresses:
        listed = ", ".join(f"{ip} ({why})" for ip, why in refused) or "nothing"
        raise UnsafeSourceError(
            f"{host} resolves to {listed}: not allowed (an operator can allow a network with "
            "web.allow_networks)"
        )
    return addresses


# --- a transport that connects only to checked addresses, within a deadline -----------------

_deadline: ContextVar[float | None] = ContextVar("gbg_fetch_deadline", default=None)
_DEADLINE = "the deadline for this URL passed"


def _within_deadline(timeout: float | None) -> tuple[float | None, bool]:
    """(timeout to use, whether the deadline is what limits it)."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout, False
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return 0.0, True
    if timeout is None or remaining < timeout:
        return remaining, True
    return timeout, False


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        limit, by_deadline = _within_deadline(timeout)
        if by_deadline and limit == 0.0:
            raise httpcore.ReadTimeout(_DEADLINE)
        try:
            return self._inner.read(max_bytes, limit)
        except httpcore.ReadTimeout:
            if by_deadline:
                raise httpcore.ReadTimeout(_DEADLINE) from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        limit, by_deadline = _within_deadline(timeout)
        if by_deadline and limit == 0.0:
            raise httpcore.WriteTimeout(_DEADLINE)
        self._inner.write(buffer, limit)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: typing.Any, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        limit, _ = _within_deadline(timeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, limit))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _CheckedBackend(httpcore.SyncBackend):
    """Resolves once, checks every address, connects to a checked one (never resolves again)."""

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self.allowed = list(allowed)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_checked(host, port, self.allowed)
        failure: Exception | None = None
        for ip in addresses:
            limit, _ = _within_deadline(timeout)
            try:
                stream = super().connect_tcp(str(ip), port, limit, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        assert failure is not None
        raise failure


# httpcore's errors as the httpx ones callers expect; subclasses before their bases.
_ERRORS: list[tuple[type[Exception], type[httpx.HTTPError]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
]


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except tuple(core for core, _ in _ERRORS) as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class CheckedTransport(httpx.BaseTransport):
    """An httpx transport whose every connection goes through :class:`_CheckedBackend`."""

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            network_backend=_CheckedBackend(allowed),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=typing.cast(Iterable[bytes], request.stream),
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


# --- the fetcher ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    url: str  # as listed (the source it is tracked under)
    not_modified: bool
    body: bytes = b""
    content_type: str = ""
    etag: str = ""
    last_modified: str = ""
    final_url: str = ""  # where the body came from, after redirects


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    url: str


class PoliteFetcher:
    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.allowed_networks = [ipaddress.ip_network(n) for n in settings.allow_networks]
        self.client = httpx.Client(
            transport=CheckedTransport(self.allowed_networks),
            timeout=settings.timeout_s,
            follow_redirects=False,  # followed here, one checked hop at a time
            trust_env=False,  # an environment proxy would connect on our behalf, unchecked
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

    def _check_target(self, url: str, hosts: Collection[str]) -> None:
        """Refuse, before any request, a URL the manifest does not name or that resolves to an
        address that is not allowed (the transport checks the address again when connecting)."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise UnsafeSourceError(f"not a valid URL: {exc}") from exc
        if parsed.scheme not in ("http", "https"):
            raise UnsafeSourceError(f"scheme {parsed.scheme!r}: only http and https are fetched")
        if parsed.host not in hosts:
            raise UnsafeSourceError(
                f"host {parsed.host} is not named in the manifest: not fetched (list the URL or "
                "a sitemap on that host in corpus.toml)"
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        resolve_checked(parsed.host, port, self.allowed_networks)

    def _request(
        self, url: str, headers: dict[str, str], hosts: Collection[str], check_robots: bool
    ) -> _Answer:
        """GET, following redirects within ``hosts``; the body is read up to ``max_bytes``."""
        current = url
        for hop in range(self.settings.max_redirects + 1):
            try:
                self._check_target(current, hosts)
            except UnsafeSourceError as exc:
                if hop:
                    raise UnsafeSourceError(f"redirected to {current}: {exc}") from exc
                raise
            if check_robots and not self.allowed(current, hosts):
                raise LoaderError(url, "disallowed by robots.txt: not fetched")
            self._wait_turn(httpx.URL(current).netloc.decode("ascii", "replace"))
            self.requested.append(current)
            with self.client.stream("GET", current, headers=headers) as resp:
                location = resp.headers.get("location")
                if resp.status_code in _REDIRECTS and location:
                    current = urljoin(current, location)
                    continue
                body = self._read_body(resp, url) if resp.status_code < 300 else b""
                return _Answer(resp.status_code, resp.headers, body, current)
        raise LoaderError(url, f"more than {self.settings.max_redirects} redirects: not followed")

    def _read_body(self, resp: httpx.Response, url: str) -> bytes:
        limit = self.settings.max_bytes
        too_large = LoaderError(url, f"larger than {limit} bytes: skipped")
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        for part in resp.iter_bytes():
            body += part
            if len(body) > limit:
                raise too_large
        return bytes(body)

    def allowed(self, url: str, hosts: Collection[str] | None = None) -> bool:
        parts = httpx.URL(url)
        root = f"{parts.scheme}://{parts.netloc.decode('ascii', 'replace')}"
        rp = self._robots.get(root)
        if rp is None:
            rp = urllib.robotparser.RobotFileParser(f"{root}/robots.txt")
            try:
                answer = self._request(
                    f"{root}/robots.txt", {}, hosts or {parts.host}, check_robots=False
                )
                if answer.status in (401, 403):
                    rp.disallow_all = True  # type: ignore[attr-defined]
                elif answer.status >= 400:
                    rp.allow_all = True  # type: ignore[attr-defined]
                else:
                    rp.parse(answer.body.decode("utf-8", errors="replace").splitlines())
            except (httpx.HTTPError, LoaderError, UnsafeSourceError):
                # No robots.txt to be had: the page itself is checked and fetched on its own.
                rp.allow_all = True  # type: ignore[attr-defined]
            self._robots[root] = rp
        return rp.can_fetch(self.settings.user_agent, url)

    def fetch(
        self,
        url: str,
        etag: str = "",
        last_modified: str = "",
        hosts: Collection[str] | None = None,
    ) -> Fetched:
        """``url`` within the deadline; ``hosts``: where it and its redirects may go (default:
        its own host)."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        token = _deadline.set(time.monotonic() + self.settings.deadline_s)
        try:
            answer = self._request(url, headers, hosts or {host_of(url)}, check_robots=True)
        except UnsafeSourceError as exc:
            raise LoaderError(url, str(exc)) from exc
        except httpx.TimeoutException as exc:
            if _DEADLINE in str(exc):
                limit = self.settings.deadline_s
                raise LoaderError(
                    url, f"no complete answer within the deadline of {limit:g} s (web.deadline_s): "
                    "skipped"
                ) from exc
            raise LoaderError(url, f"unreachable: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise LoaderError(url, f"unreachable: {type(exc).__name__}: {exc}") from exc
        finally:
            _deadline.reset(token)
        if answer.status == 304:
            return Fetched(url, True, etag=etag, last_modified=last_modified, final_url=answer.url)
        if answer.status >= 300:
            raise LoaderError(url, f"HTTP {answer.status}")
        return Fetched(
            url=url,
            not_modified=False,
            body=answer.body,
            content_type=answer.headers.get("content-type", "").split(";")[0].strip().lower(),
            etag=answer.headers.get("etag", ""),
            last_modified=answer.headers.get("last-modified", ""),
            final_url=answer.url,
        )

    def sitemap_urls(
        self, url: str, include: list[str], max_pages: int, hosts: Collection[str] | None = None
    ) -> list[str]:
        """Page URLs of a sitemap (following sitemap indexes), bounded. A page on a host that is
        not in ``hosts`` is listed all the same: fetching it is refused and reported."""
        seen: set[str] = set()
        pages: list[str] = []
        todo = [url]
        while todo and len(pages) < max_pages:
            sm = todo.pop(0)
            if sm in seen:
                continue
            seen.add(sm)
            fetched = self.fetch(sm, hosts=hosts or {host_of(url)})
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


def document_from_fetch(fetched: Fetched, limits: FileLimits = DEFAULT_LIMITS) -> LoadedDocument:
    """The page as a document tracked under the URL it was listed under (``source``); its
    ``url`` is where it was found, after redirects."""
    url = fetched.url
    where = fetched.final_url or url
    ctype = fetched.content_type
    if ctype in ("text/html", "application/xhtml+xml") or (
        not ctype and fetched.body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html"))
    ):
        text = fetched.body.decode("utf-8", errors="replace")
        if len(text) > limits.max_chars:
            raise LoaderError(url, f"more than {limits.max_chars} characters: skipped")
        return html_to_document(text, url, url=where)
    suffix = {"application/pdf": ".pdf", "text/markdown": ".md", "text/plain": ".md"}.get(ctype)
    if suffix is None:
        raise LoaderError(url, f"unsupported content type {ctype or '(none)'}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"page{suffix}"
        path.write_bytes(fetched.body)
        load = load_pdf if suffix == ".pdf" else load_markdown
        doc = load(path, url, limits)
    return LoadedDocument(
        source=doc.source, title=doc.title, text=doc.text, lang=doc.lang, url=where,
        extra=doc.extra,
    )
