"""Fetching one image URL safely: http(s) only, bounded, retried, redirects and addresses checked.

`Fetcher.fetch` downloads one URL over urllib3 connection pools shared by threads. Every request
is bounded (connect and read timeout, `max_bytes` by Content-Length and while streaming) and
retried with exponential backoff and jitter on connection errors, timeouts, 429 and 5xx (a
numeric Retry-After is honoured up to a cap). Only http(s) is fetched. Redirects are followed by
hand, each hop validated again: another scheme is `bad_redirect`, too many hops
`too_many_redirects`. Before any connection the host is resolved and refused (`blocked_address`)
when one of its addresses is private, loopback, link-local, multicast, reserved or unspecified
and not in `allow_addresses`; the connection then goes to that validated address (the Host
header and TLS server name keep the name), so a second DNS answer cannot rebind it. The outcome
is one status: "ok" or an error kind below, never an exception.
"""

from __future__ import annotations

import hashlib
import http
import io
import ipaddress
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

# -- statuses: "ok" or one error kind per URL ---------------------------------------------------
OK = "ok"
HTTP_ERROR = "http_error"  # a final 4xx/5xx (5xx and 429 after the retries)
TIMEOUT = "timeout"  # connect or read timeout, after the retries
CONNECTION_ERROR = "connection_error"  # refused, reset, DNS failure, after the retries
TOO_LARGE = "too_large"  # over max_bytes (Content-Length or streamed)
BAD_CONTENT_TYPE = "bad_content_type"  # not image/*, nor octet-stream with image magic bytes
BAD_SCHEME = "bad_scheme"  # the URL itself is not http(s)
BAD_REDIRECT = "bad_redirect"  # a redirect to another scheme (file://, ftp://) or no Location
BLOCKED_ADDRESS = "blocked_address"  # a private/loopback/link-local/... address, not allowed
TOO_MANY_REDIRECTS = "too_many_redirects"
INVALID_URL = "invalid_url"
DECODE_ERROR = "decode_error"  # resizing could not decode the image
DISABLED = "disabled"  # downloading is switched off: nothing was requested

STATUSES = (
    OK,
    HTTP_ERROR,
    TIMEOUT,
    CONNECTION_ERROR,
    TOO_LARGE,
    BAD_CONTENT_TYPE,
    BAD_SCHEME,
    BAD_REDIRECT,
    BLOCKED_ADDRESS,
    TOO_MANY_REDIRECTS,
    INVALID_URL,
    DECODE_ERROR,
    DISABLED,
)

_REDIRECTS = {301, 302, 303, 307, 308}
BODY_DEADLINE_FACTOR = 3  # a whole body may take this many times timeout_s
MAX_POOLS = 256  # connection pools (one per host address) kept open, least recently used dropped
_CHUNK = 1 << 16
# JPEG, PNG, GIF, BMP, TIFF (both byte orders); WebP is RIFF....WEBP
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class DownloadSettings:
    """How to download: parallelism, bounds, retries and the addresses allowed besides public."""

    processes: int = 1
    threads: int = 64
    timeout_s: float = 10.0
    retries: int = 2  # extra attempts after the first, on retryable failures
    backoff_s: float = 0.5  # first backoff; doubled per retry, plus up to 100% jitter
    max_retry_after_s: float = 30.0  # a numeric Retry-After longer than this is capped
    max_bytes: int = 50 * 2**20
    max_redirects: int = 5
    resize_max_side: int = 0  # 0 = keep the bytes; else longest side <= this, JPEG re-encoded
    allow_addresses: tuple[str, ...] = ()  # addresses or networks allowed although not public
    user_agent: str = "realsyn-assets/0.1 (+image download)"


@dataclass
class Outcome:
    """One URL's journal entry (a row of STATUS_SCHEMA)."""

    url: str
    status: str
    http_status: int | None = None
    attempts: int = 0
    bytes: int = 0
    sha256: str | None = None
    file: str | None = None
    detail: str = ""


class _Failure(Exception):
    def __init__(self, status: str, detail: str, http_status: int | None = None, retry=False):
        super().__init__(detail)
        self.status, self.detail, self.http_status, self.retry = status, detail, http_status, retry
        self.retry_after: float | None = None


# -- address safety -----------------------------------------------------------------------------
def _allowed_networks(allow: Sequence[str]) -> list:
    return [ipaddress.ip_network(entry, strict=False) for entry in allow]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 addresses translated into IPv6


def _is_public(address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared (100.64/10),
    reserved, unspecified or multicast; an IPv4 address carried inside IPv6 (mapped or NAT64)
    is judged as itself."""
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return _is_public(address.ipv4_mapped)
        if address in _NAT64:
            return _is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


def resolve_safe(host: str, port: int, allowed: list) -> str:
    """The address to connect to for `host`: every address it resolves to must be public or in
    `allowed`, else `blocked_address` (one bad address is enough: the name is not trusted)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _Failure(CONNECTION_ERROR, f"cannot resolve {host}: {exc.args[-1]}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if not _is_public(address) and not any(address in net for net in allowed):
            raise _Failure(BLOCKED_ADDRESS, f"{host} resolves to {address}, not a public address")
    return addresses[0]


# -- one URL ------------------------------------------------------------------------------------
class Fetcher:
    """Fetches URLs with shared connection pools (thread-safe), one pool per validated address."""

    def __init__(self, settings: DownloadSettings):
        import urllib3

        self.settings = settings
        self.allowed = _allowed_networks(settings.allow_addresses)
        self.timeout = urllib3.Timeout(connect=settings.timeout_s, read=settings.timeout_s)
        self._pools: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def _pool(self, scheme: str, address: str, port: int, host: str):
        import urllib3

        key = (scheme, address, port, host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
            else:
                size = max(1, self.settings.threads)
                if scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        address, port, maxsize=size, server_hostname=host, assert_hostname=host
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(address, port, maxsize=size)
                self._pools[key] = pool
                if len(self._pools) > MAX_POOLS:  # many hosts: keep the sockets bounded
                    self._pools.popitem(last=False)[1].close()
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()

    def fetch(self, url: str) -> tuple[Outcome, bytes | None]:
        """Download one URL with retries: (its outcome, its bytes when ok). Never raises for a
        bad URL or response."""
        s = self.settings
        attempts = 0
        while True:
            attempts += 1
            try:
                data, status = self._follow(url)
                data = _maybe_resize(data, s.resize_max_side)
                digest = hashlib.sha256(data).hexdigest()
                return Outcome(url, OK, status, attempts, len(data), digest), data
            except _Failure as failure:
                if not failure.retry or attempts > s.retries:
                    outcome = Outcome(url, failure.status, failure.http_status, attempts)
                    outcome.detail = failure.detail
                    return outcome, None
                delay = s.backoff_s * 2 ** (attempts - 1) * (1 + random.random())
                if failure.retry_after is not None:
                    delay = max(delay, min(failure.retry_after, s.max_retry_after_s))
                time.sleep(delay)

    def _follow(self, url: str) -> tuple[bytes, int]:
        current = url
        for hop in range(self.settings.max_redirects + 1):
            parts = _split(current, first=hop == 0)
            location, status, data = self._request(current, parts)
            if location is None:
                return data, status
            target = urljoin(current, location)
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise _Failure(BAD_REDIRECT, f"{status} redirect from {current} to {target}")
            current = target
        raise _Failure(
            TOO_MANY_REDIRECTS, f"more than {self.settings.max_redirects} redirects from {url}"
        )

    def _request(self, url: str, parts) -> tuple[str | None, int, bytes]:
        import urllib3

        scheme, host, port, target, host_header = parts
        address = resolve_safe(host, port, self.allowed)
        pool = self._pool(scheme, address, port, host)
        headers = {"Host": host_header, "User-Agent": self.settings.user_agent, "Accept": "image/*"}
        try:
            response = pool.urlopen(
                "GET",
                target,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=self.timeout,
                assert_same_host=False,
            )
            try:
                result = self._read(url, response)
                if result[0] is not None:
                    _discard(response)  # a redirect's body
                return result
            except BaseException:
                _discard(response)  # an unread body must not reach the next request
                raise
            finally:
                response.release_conn()
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            detail = f"timed out after {self.settings.timeout_s:g} s: {url}"
            raise _Failure(TIMEOUT, detail, retry=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            name = type(exc).__name__
            raise _Failure(CONNECTION_ERROR, f"{name}: {url}", retry=True) from None

    def _read(self, url: str, response) -> tuple[str | None, int, bytes]:
        status = response.status
        if status in _REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                raise _Failure(BAD_REDIRECT, f"{status} without Location: {url}", status)
            return location, status, b""
        if status != 200:
            failure = _Failure(
                HTTP_ERROR,
                f"{status} {_phrase(status)} {url}",
                status,
                retry=status == 429 or status >= 500,
            )
            failure.retry_after = _retry_after(response.headers.get("Retry-After"))
            raise failure
        limit = self.settings.max_bytes
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise _Failure(TOO_LARGE, f"Content-Length {length} over {limit} bytes: {url}", status)
        ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not (ctype.startswith("image/") or ctype == "application/octet-stream"):
            raise _Failure(BAD_CONTENT_TYPE, f"Content-Type {ctype or 'missing'!r}: {url}", status)
        buffer = io.BytesIO()
        # the read timeout bounds each wait for bytes; this bounds the whole body, so a server
        # that drips a byte now and then cannot hold a thread for long
        deadline = time.monotonic() + self.settings.timeout_s * BODY_DEADLINE_FACTOR
        for chunk in response.stream(_CHUNK):
            buffer.write(chunk)
            if buffer.tell() > limit:
                raise _Failure(TOO_LARGE, f"over {limit} bytes: {url}", status)
            if time.monotonic() > deadline:
                seconds = self.settings.timeout_s * BODY_DEADLINE_FACTOR
                raise _Failure(TIMEOUT, f"body not complete after {seconds:g} s: {url}", status)
        data = buffer.getvalue()
        if ctype == "application/octet-stream" and not _looks_like_image(data):
            raise _Failure(BAD_CONTENT_TYPE, f"octet-stream without image bytes: {url}", status)
        return None, status, data


def _split(url: str, first: bool) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, request target, Host header) of an http(s) URL."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as exc:
        raise _Failure(INVALID_URL, f"{exc}: {url}") from None
    if scheme not in ("http", "https"):
        raise _Failure(BAD_SCHEME if first else BAD_REDIRECT, f"scheme {scheme!r}: {url}")
    if not host:
        raise _Failure(INVALID_URL, f"no host: {url}")
    port = port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return scheme, host, port, target, host_header


def _discard(response) -> None:
    """Leave the connection clean for reuse: read a small rest of the body, else close it."""
    length = response.headers.get("Content-Length")
    try:
        if length and length.isdigit() and int(length) <= _CHUNK:
            response.drain_conn()
        else:
            response.close()
    except Exception:  # noqa: BLE001 (the connection is closed either way)
        response.close()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff applies


def _looks_like_image(data: bytes) -> bool:
    head = data[:16]
    if head.startswith(_IMAGE_MAGIC):
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _maybe_resize(data: bytes, max_side: int) -> bytes:
    """`data` unchanged (max_side 0), or re-encoded as JPEG with its longest side <= max_side."""
    if max_side <= 0:
        return data
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (max_side, max_side))
            rgb = image.convert("RGB")
        rgb.thumbnail((max_side, max_side))
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=90)
        return out.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _Failure(DECODE_ERROR, f"cannot decode: {type(exc).__name__}", 200) from None
