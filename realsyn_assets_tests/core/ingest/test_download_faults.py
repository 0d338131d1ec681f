"""The downloader against a local image server with injected faults: every URL ends with one
status of the right kind, retries happen only where they should, nothing but http(s) is
requested, unsafe addresses are refused before any connection."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from realsyn_assets.bench._image_server import image_bytes, serving
from realsyn_assets.core.ingest import http_fetch as hf
from realsyn_assets.core.ingest.download import (
    DownloadedImages,
    download_urls,
    status_problems,
)
from realsyn_assets.core.ingest.http_fetch import DownloadSettings

GOOD = 240  # plain images among the URLs

# path under the server -> (expected status, expected requests of that path, http status)
FAULTS = {
    "octet/1": (hf.OK, 1, 200),
    "404/2": (hf.HTTP_ERROR, 1, 404),
    "500/3": (hf.HTTP_ERROR, 3, 500),  # the first attempt and 2 retries
    "flaky/4": (hf.OK, 3, 200),  # fails twice, then succeeds
    "429/5": (hf.OK, 2, 200),  # Retry-After: 0, then succeeds
    "slow/6": (hf.TIMEOUT, 3, None),
    "drip/15": (hf.TIMEOUT, 1, 200),  # every read in time, the whole body never: not retried
    "big/7": (hf.TOO_LARGE, 1, 200),
    "bigstream/8": (hf.TOO_LARGE, 1, 200),
    "text/9": (hf.BAD_CONTENT_TYPE, 1, 200),
    "tofile/10": (hf.BAD_REDIRECT, 1, None),
    "chain/3/11": (hf.OK, 1, 200),
    "chain/9/12": (hf.TOO_MANY_REDIRECTS, 1, None),
    "toblocked/13": (hf.BLOCKED_ADDRESS, 1, None),
    "tolocal2/14": (hf.BLOCKED_ADDRESS, 1, None),
}

SETTINGS = DownloadSettings(
    threads=16,
    timeout_s=2.0,  # generous: a busy machine must not turn a good URL into a retry
    retries=2,
    backoff_s=0.01,
    max_bytes=1_000_000,
    max_redirects=5,
    allow_addresses=("127.0.0.1",),
)


def _requests(log: Path) -> Counter:
    return Counter(log.read_text().splitlines())


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """One download of GOOD images plus every fault, and the server's request counts."""
    folder = tmp_path_factory.mktemp("faults")
    log = folder / "requests.log"
    with serving(slow=6.0, log=log) as base:
        urls = [f"{base}/img/{i}.jpg" for i in range(100, 100 + GOOD)]
        urls += [f"{base}/{path}" for path in FAULTS]
        urls += ["ftp://127.0.0.1/a.jpg", "file:///etc/passwd", "http://[broken/a.jpg"]
        urls += [f"http://127.0.0.2:{base.rsplit(':', 1)[1]}/img/1.jpg"]
        urls += [urls[0]]  # a repeat: fetched once, one row
        report = download_urls(urls, folder / "store", SETTINGS)
        yield base, urls, report, _requests(log), folder / "store"


def test_every_url_has_one_status_of_the_right_kind(faulty_run):
    base, urls, report, _, store = faulty_run
    rows = {row["url"]: row for row in report.table.to_pylist()}
    assert report.table.num_rows == len(set(urls)) == len(rows)
    assert report.table.column("url").to_pylist() == list(dict.fromkeys(urls))
    for path, (status, _, http_status) in FAULTS.items():
        row = rows[f"{base}/{path}"]
        assert (row["status"], row["http_status"]) == (status, http_status), row
    assert rows["ftp://127.0.0.1/a.jpg"]["status"] == hf.BAD_SCHEME
    assert rows["file:///etc/passwd"]["status"] == hf.BAD_SCHEME
    assert rows["http://[broken/a.jpg"]["status"] == hf.INVALID_URL
    assert rows[urls[-2]]["status"] == hf.BLOCKED_ADDRESS
    assert rows[f"{base}/404/2"]["detail"] == f"404 Not Found {base}/404/2"
    assert rows[f"{base}/tofile/10"]["detail"].endswith("to file:///etc/passwd")
    ok = [row for row in rows.values() if row["status"] == hf.OK]
    assert len(ok) == GOOD + 4
    assert status_problems(list(dict.fromkeys(urls)), report.table, store) == []


def test_images_are_stored_as_served(faulty_run):
    base, urls, report, _, store = faulty_run
    downloads = DownloadedImages(report.table, store)
    for i in (100, 150, 100 + GOOD - 1):
        assert downloads.read(f"{base}/img/{i}.jpg") == (image_bytes(i), None, "")
    assert downloads.read(f"{base}/chain/3/11")[0] == image_bytes(11)
    assert downloads.read(f"{base}/404/2")[:2] == (None, "download_http_error")


def test_retries_only_for_retryable_failures_and_no_other_scheme_is_requested(faulty_run):
    base, urls, _, requests, _ = faulty_run
    for path, (_, expected, _) in FAULTS.items():
        assert requests[f"/{path}"] == expected, path
    assert all(requests[f"/img/{i}.jpg"] == 1 for i in range(100, 100 + GOOD))
    # the redirect to 127.0.0.2 was refused before connecting; /img/14.jpg never requested
    assert requests["/img/14.jpg"] == 0
    # only http paths of this server reached it: nothing for file:// or the blocked targets
    assert not [line for line in requests if "passwd" in line or "meta-data" in line]
    hops = 3 + 5  # chain/3 -> chain/2, chain/1, img/11; chain/9 -> five more hops, then refused
    assert requests["/chain/4/12"] == 1 and requests["/chain/3/12"] == 0
    assert sum(requests.values()) == sum(n for _, n, _ in FAULTS.values()) + GOOD + hops


def test_resize_on_the_fly_and_decode_errors(tmp_path):
    settings = DownloadSettings(
        threads=4, resize_max_side=64, allow_addresses=("127.0.0.1",), retries=0
    )
    with serving() as base:
        urls = [f"{base}/img/3.jpg", f"{base}/garbage/4"]
        report = download_urls(urls, tmp_path / "store", settings)
    ok, bad = report.table.to_pylist()
    assert (ok["status"], bad["status"]) == (hf.OK, hf.DECODE_ERROR)
    data = (tmp_path / "store" / ok["file"]).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and max(image.size) == 64


def test_public_addresses_only_unless_allowed():
    allowed = hf._allowed_networks(["127.0.0.1", "10.0.0.0/8"])
    assert hf.resolve_safe("127.0.0.1", 80, allowed) == "127.0.0.1"
    assert hf.resolve_safe("10.1.2.3", 80, allowed) == "10.1.2.3"
    blocked = ("127.0.0.2", "169.254.169.254", "192.168.1.1", "224.0.0.1", "0.0.0.0", "::1")
    # shared address space (carrier NAT), and loopback carried inside IPv6 (mapped, NAT64)
    blocked += ("100.64.1.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1")
    for address in blocked:
        with pytest.raises(hf._Failure) as info:
            hf.resolve_safe(address, 80, allowed)
        assert info.value.status == hf.BLOCKED_ADDRESS, address
