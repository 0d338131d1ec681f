"""Downloading a shard's web images: parallel, resumable, into a per-shard store.

`download_urls` fetches a list of URLs (`core.ingest.http_fetch`: bounded, retried, http(s) only,
unsafe addresses refused) into a store folder with P processes x T threads (P = 1: threads only,
in this process). Resume: every URL that finishes (ok or failed) is appended to `journal.jsonl`
(one JSON line, written with one `write` and fsynced) after its bytes are stored atomically
under `files/` (named by the URL's hash). A rerun requests only URLs without a journal line (a
torn line does not count), and the status table is built from the journal in input order, so
an interrupted and resumed download yields the same table as an uninterrupted one.
`DownloadedImages` is what extraction reads instead of the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.ingest.confined import REJECT_DOWNLOAD_MISSING
from realsyn_assets.core.ingest.http_fetch import DISABLED, OK, DownloadSettings, Fetcher, Outcome
from realsyn_assets.core.io import atomic_write_bytes, read_table

STATUS_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("status", pa.string()),
        ("http_status", pa.int32()),
        ("attempts", pa.int32()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("file", pa.string()),  # relative to the store folder; null unless ok
        ("detail", pa.string()),
    ]
)

JOURNAL = "journal.jsonl"
FILES = "files"


@dataclass
class DownloadReport:
    table: pa.Table  # STATUS_SCHEMA, one row per unique URL, input order
    requested: int  # URLs fetched in this call (the others came from the journal)
    seconds: float
    statuses: dict[str, int] = field(default_factory=dict)


def url_file_name(url: str) -> str:
    """The store's file name for a URL: the hash of the URL (not of the bytes, so a resumed
    download finds it without the response)."""
    return f"{FILES}/{hashlib.sha256(url.encode()).hexdigest()[:40]}"


# -- the journal and the store ------------------------------------------------------------------
class Journal:
    """The append-only record of finished URLs; one fsynced line per URL, any process."""

    def __init__(self, store: Path):
        self.path = Path(store) / JOURNAL
        self._lock = threading.Lock()

    def read(self) -> dict[str, Outcome]:
        """Finished URLs -> their latest outcome. Unparseable (torn) lines are ignored, and so
        is an ok entry whose stored file is gone (that URL is fetched again)."""
        done: dict[str, Outcome] = {}
        if not self.path.exists():
            return done
        for line in self.path.read_bytes().splitlines():
            try:
                outcome = Outcome(**json.loads(line))
            except (ValueError, TypeError):
                continue
            done[outcome.url] = outcome
        store = self.path.parent
        gone = [
            u for u, o in done.items() if o.status == OK and not (store / (o.file or "")).is_file()
        ]
        for url in gone:
            del done[url]
        return done

    def end_torn_line(self) -> None:
        """Terminate a torn last line (a writer killed mid-line) so the next entry starts on a
        line of its own; call before any writer starts."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        if torn:
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, outcome: Outcome) -> None:
        line = (json.dumps(asdict(outcome), sort_keys=True) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def _run_threads(urls: list[str], settings: DownloadSettings, store: str) -> int:
    """Fetch `urls` with `settings.threads` threads, storing and journaling each as it ends."""
    store_path = Path(store)
    fetcher = Fetcher(settings)
    journal = Journal(store_path)

    def one(url: str) -> None:
        outcome, data = fetcher.fetch(url)
        if data is not None:
            outcome.file = url_file_name(url)
            atomic_write_bytes(store_path / outcome.file, data)
        journal.append(outcome)

    try:
        with ThreadPoolExecutor(max_workers=max(1, settings.threads)) as pool:
            for future in [pool.submit(one, url) for url in urls]:
                future.result()
    finally:
        fetcher.close()
    return len(urls)


def status_table(urls: Sequence[str], done: dict[str, Outcome]) -> pa.Table:
    """The status rows of `urls` (unique, input order) from finished outcomes."""
    rows = [asdict(done[url]) for url in urls if url in done]
    return pa.Table.from_pylist(rows, schema=STATUS_SCHEMA)


def disabled_table(urls: Sequence[str]) -> pa.Table:
    """Status rows when downloading is off: every URL `disabled`, nothing requested."""
    done = {url: Outcome(url, DISABLED, detail=f"download disabled: {url}") for url in urls}
    return status_table(list(dict.fromkeys(urls)), done)


def download_urls(
    urls: Sequence[str], store: Path | str, settings: DownloadSettings
) -> DownloadReport:
    """Download the URLs not yet journaled in `store`; the status table of all of them.

    Duplicates in `urls` are fetched once (the table has one row per unique URL, first-seen
    order). With `settings.processes` > 1 the pending URLs are dealt round-robin to that many
    processes, each running `settings.threads` threads."""
    store = Path(store)
    (store / FILES).mkdir(parents=True, exist_ok=True)
    unique = list(dict.fromkeys(urls))
    journal = Journal(store)
    journal.end_torn_line()
    pending = [url for url in unique if url not in journal.read()]
    start = time.perf_counter()
    processes = max(1, min(settings.processes, len(pending)))
    if processes == 1:
        if pending:
            _run_threads(pending, settings, str(store))
    else:
        import multiprocessing

        chunks = [pending[i::processes] for i in range(processes)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            futures = [pool.submit(_run_threads, chunk, settings, str(store)) for chunk in chunks]
            for future in futures:
                future.result()
    seconds = time.perf_counter() - start
    done = journal.read()
    missing = [url for url in unique if url not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} URLs without a journal entry in {store}: {missing[0]}")
    table = status_table(unique, done)
    statuses: dict[str, int] = {}
    for status in table.column("status").to_pylist():
        statuses[status] = statuses.get(status, 0) + 1
    return DownloadReport(table, len(pending), seconds, statuses)


class DownloadedImages:
    """The bytes of downloaded URLs, from a status table and its store: what extraction reads
    instead of the network."""

    def __init__(self, table: pa.Table, store: Path | str):
        self.store = Path(store)
        self.rows = {row["url"]: row for row in table.to_pylist()}

    def read(self, url: str) -> tuple[bytes | None, str | None, str]:
        """(bytes, None, "") for an ok URL, else (None, "download_<status>", detail); the
        stored bytes must still match the sha256 of their status row."""
        row = self.rows.get(url)
        if row is None:
            return None, REJECT_DOWNLOAD_MISSING, f"no download status for {url}"
        if row["status"] != OK:
            return None, f"download_{row['status']}", row["detail"] or url
        path = self.store / row["file"]
        try:
            data = path.read_bytes()
        except OSError:
            return None, REJECT_DOWNLOAD_MISSING, f"stored file {row['file']} is gone: {url}"
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            return None, REJECT_DOWNLOAD_MISSING, f"stored file {row['file']} changed: {url}"
        return data, None, ""


def downloaded_images(status_path: Path, store: Path) -> DownloadedImages | None:
    """The downloads of a shard from its status table, or None when it has none (a shard
    materialized without `image_downloads`: its URLs are then rejected `download_missing`)."""
    if not Path(status_path).exists():
        return None
    return DownloadedImages(read_table(Path(status_path)), store)


DOWNLOADS = "downloads"


def shard_store(root: Path | str, shard: str) -> Path:
    """A shard's download store under the home `root`: `<root>/downloads/<shard>/`."""
    return Path(root) / DOWNLOADS / shard


def http_refs(docs: pa.Table) -> list[str]:
    """The unique http(s) image references of a `raw_documents` table without embedded bytes,
    in page order: the URLs a shard downloads."""
    images = docs.filter(pc.equal(docs.column("kind"), "image"))
    refs = images.column("image_ref").to_pylist()
    embedded = pc.is_valid(images.column("image_bytes")).to_pylist()
    urls = [
        ref
        for ref, has_bytes in zip(refs, embedded, strict=True)
        if not has_bytes and ref and ref.startswith(("http://", "https://"))
    ]
    return list(dict.fromkeys(urls))


def status_problems(urls: Sequence[str], table: pa.Table, store: Path | str) -> list[str]:
    """What is wrong with a status table for `urls`: URLs without exactly one row, rows of no
    URL, ok rows whose stored file is missing or has other bytes than its sha256."""
    store = Path(store)
    problems = []
    counts: dict[str, int] = {}
    for url in table.column("url").to_pylist():
        counts[url] = counts.get(url, 0) + 1
    missing = [url for url in urls if counts.get(url, 0) == 0]
    repeated = [url for url, n in counts.items() if n > 1]
    extra = sorted(set(counts) - set(urls))
    for what, found in (("without a status", missing), ("with several", repeated)):
        if found:
            problems.append(f"{len(found)} URLs {what}, e.g. {found[0]}")
    if extra:
        problems.append(f"{len(extra)} status rows of no image slot, e.g. {extra[0]}")
    for row in table.filter(pc.equal(table.column("status"), OK)).to_pylist():
        path = store / (row["file"] or "")
        if not path.is_file():
            problems.append(f"stored file missing for {row['url']}: {path}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != row["sha256"]:
            problems.append(f"stored file differs from its sha256 for {row['url']}: {path}")
    return problems
