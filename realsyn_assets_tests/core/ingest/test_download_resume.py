"""A download killed mid-shard (SIGKILL to its process group, 2 processes x 4 threads) resumes:
no URL journaled before the kill is requested again, and the status table equals, byte for byte,
that of an uninterrupted download into a fresh store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from realsyn_assets.bench._image_server import serving
from realsyn_assets.core.ingest.download import JOURNAL, download_urls
from realsyn_assets.core.ingest.http_fetch import DownloadSettings
from realsyn_assets.core.io import write_table

N = 300
SETTINGS = DownloadSettings(
    threads=4, timeout_s=5.0, retries=1, backoff_s=0.01, allow_addresses=("127.0.0.1",)
)

_CHILD = """
import json, sys
from realsyn_assets.core.ingest.download import download_urls
from realsyn_assets.core.ingest.http_fetch import DownloadSettings
urls = json.load(open(sys.argv[1]))
settings = DownloadSettings(processes=2, threads=4, timeout_s=5.0, retries=1, backoff_s=0.01,
                            allow_addresses=("127.0.0.1",))
download_urls(urls, sys.argv[2], settings)
"""


def _paths(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _journaled(store: Path) -> set[str]:
    done = set()
    for line in (store / JOURNAL).read_bytes().splitlines():
        try:
            done.add(json.loads(line)["url"])
        except ValueError:
            pass
    return done


def _wait_until_quiet(path: Path, quiet_s: float = 1.0) -> None:
    """Wait until `path` has not grown for `quiet_s` seconds."""
    size, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        if path.stat().st_size != size:
            size, since = path.stat().st_size, time.monotonic()
        time.sleep(0.05)


def _kill_midway(urls: list[str], store: Path, log: Path, tmp_path: Path) -> None:
    """Start the download in a child process group; SIGKILL it once the server has answered
    about half the URLs."""
    url_file = tmp_path / "urls.json"
    url_file.write_text(json.dumps(urls))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(url_file), str(store)], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while len(_paths(log)) < len(urls) // 2:
            assert child.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline, "the download made no progress"
            time.sleep(0.01)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=60)


def test_download_resumes_after_a_kill_without_refetching(tmp_path):
    log = tmp_path / "requests.log"
    store = tmp_path / "store"
    with serving(latency=0.02, log=log) as base:
        urls = [f"{base}/img/{i}.jpg" for i in range(N)]
        urls[::25] = [f"{base}/404/{i}" for i in range(0, N, 25)]  # failures are journaled too
        _kill_midway(urls, store, log, tmp_path)
        # the killed workers die asynchronously: wait until nothing is written any more
        _wait_until_quiet(store / JOURNAL)
        _wait_until_quiet(log)
        finished = _journaled(store)
        assert 0 < len(finished) < N, len(finished)
        with open(store / JOURNAL, "ab") as journal:  # a torn last line, as a crash leaves it
            journal.write(b'{"url": "' + urls[-1].encode())
        resumed = download_urls(urls, store, SETTINGS)
        requests = Counter(_paths(log))
        assert resumed.requested == N - len(finished)
        # not one URL that had finished before the kill was asked for again
        prefix = len(base)
        again = [u for u in finished if requests[u[prefix:]] > 1]
        assert again == []
        assert all(requests[u[prefix:]] >= 1 for u in urls)
        fresh = download_urls(urls, tmp_path / "fresh", SETTINGS)
        # a third run finds everything journaled and requests nothing
        assert download_urls(urls, store, SETTINGS).requested == 0
        # an ok URL whose stored file is gone is fetched again, and only that one
        (store / resumed.table.column("file")[1].as_py()).unlink()
        repaired = download_urls(urls, store, SETTINGS)
        assert repaired.requested == 1 and repaired.table.equals(fresh.table)
    assert resumed.table.num_rows == N
    assert resumed.table.equals(fresh.table)
    a = write_table(resumed.table, tmp_path / "resumed.parquet").read_bytes()
    b = write_table(fresh.table, tmp_path / "fresh.parquet").read_bytes()
    assert a == b


def test_processes_and_threads_give_the_same_table(tmp_path):
    with serving() as base:
        urls = [f"{base}/img/{i}.jpg" for i in range(24)] + [f"{base}/404/1"]
        one = download_urls(urls, tmp_path / "one", SETTINGS)
        two = download_urls(urls, tmp_path / "two", replace(SETTINGS, processes=2, threads=3))
    assert two.requested == len(urls) and two.table.equals(one.table)
    assert two.statuses == {"ok": 24, "http_error": 1}
