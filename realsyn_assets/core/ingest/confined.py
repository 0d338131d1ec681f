"""Reading a document's local image reference, confined to the corpus.

A document names its images; a hostile or careless one names `/etc/passwd`, `../../secret`, a
symlink leading out of the corpus, `/dev/zero` or a FIFO. Nothing is read outside the corpus
because a document names it, so every local reference is checked before anything is opened:

1. the reference (relative ones are joined with the shard file's folder, `base_dir`) must lie
   inside `base_dir` or one of the `allowed_roots`, both as written (else `outside_corpus`) and
   after `os.path.realpath` resolves every symlink (else `symlink_outside_corpus`); the roots
   are compared by their own realpath, so a corpus reached through a symlinked folder still
   works;
2. `os.stat` must say a regular file (else `not_a_regular_file`: devices, FIFOs, sockets,
   folders), no larger than `max_bytes` (else `too_many_bytes`);
3. only then is it opened — `O_NONBLOCK` (a FIFO swapped in after the check cannot block) and
   `O_NOFOLLOW` (nor can a symlink) — checked again with `fstat`, and read up to `max_bytes + 1`
   bytes: more than `max_bytes` arriving is `too_many_bytes` whatever `stat` said (procfs files,
   a file that grows).

Rejection details never repeat per-run text such as a memory address.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

REJECT_OUTSIDE_CORPUS = "outside_corpus"  # absolute path or `..` escape leaving the roots
REJECT_SYMLINK_OUTSIDE_CORPUS = "symlink_outside_corpus"  # a symlink on the way leads out
REJECT_NOT_A_REGULAR_FILE = "not_a_regular_file"  # device, FIFO, socket, folder
REJECT_TOO_MANY_BYTES = "too_many_bytes"  # larger than max_bytes (by stat or by reading)
REJECT_MISSING_FILE = "missing_file"
REJECT_UNREADABLE_FILE = "unreadable_file"
# the other ways fetching an image slot fails (core.ingest.documents.fetch_image_bytes)
REJECT_MISSING_REFERENCE = "missing_reference"
REJECT_UNSUPPORTED_SCHEME = "unsupported_scheme"
REJECT_DOWNLOAD_DISABLED = "download_disabled"  # image_downloads ran with enabled=False
# no status row for the URL, or its stored file is gone; the other download failures are
# "download_<kind>" with the error kinds of core.ingest.http_fetch
REJECT_DOWNLOAD_MISSING = "download_missing"

FETCH_REASONS = (
    REJECT_OUTSIDE_CORPUS,
    REJECT_SYMLINK_OUTSIDE_CORPUS,
    REJECT_NOT_A_REGULAR_FILE,
    REJECT_TOO_MANY_BYTES,
    REJECT_MISSING_FILE,
    REJECT_UNREADABLE_FILE,
    REJECT_MISSING_REFERENCE,
    REJECT_UNSUPPORTED_SCHEME,
    REJECT_DOWNLOAD_DISABLED,
    REJECT_DOWNLOAD_MISSING,
)

_CHUNK = 1 << 20
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)

Result = tuple[bytes | None, str | None, str]


def _file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def confine(
    ref: str, base_dir: str | os.PathLike | None, allowed_roots: Sequence[str | os.PathLike] = ()
) -> tuple[str | None, str | None, str]:
    """(real path, None, "") when `ref` may be read, else (None, reason, detail); reads nothing.

    `ref` may be relative (to `base_dir`) or absolute; without `base_dir` a relative reference
    has no anchor and is refused."""
    if "\x00" in ref:
        return None, REJECT_OUTSIDE_CORPUS, "path contains a NUL byte"
    if not os.path.isabs(ref) and base_dir is None:
        return None, REJECT_OUTSIDE_CORPUS, "relative path without a shard folder"
    roots = [os.fspath(r) for r in ([base_dir] if base_dir is not None else []) + [*allowed_roots]]
    if not roots:
        return None, REJECT_OUTSIDE_CORPUS, "no shard folder or allowed root to read from"
    joined = os.path.join(roots[0], ref) if not os.path.isabs(ref) else ref
    written = [os.path.normpath(os.path.abspath(root)) for root in roots]
    real_roots = [os.path.realpath(root) for root in roots]
    lexical = os.path.normpath(joined)
    if not (_inside(lexical, written) or _inside(lexical, real_roots)):
        return None, REJECT_OUTSIDE_CORPUS, "outside the shard folder and allowed_image_roots"
    try:
        real = os.path.realpath(joined)
    except (OSError, ValueError) as exc:
        return None, REJECT_UNREADABLE_FILE, f"{type(exc).__name__}: {exc.strerror or exc}"
    if not _inside(real, real_roots):
        return None, REJECT_SYMLINK_OUTSIDE_CORPUS, f"a symlink leads to {real}"
    return real, None, ""


def read_confined(
    ref: str,
    base_dir: str | os.PathLike | None,
    allowed_roots: Sequence[str | os.PathLike] = (),
    max_bytes: int = 50 * 2**20,
) -> Result:
    """The bytes of a local image reference, or (None, reason, detail); see the module docstring."""
    real, reason, detail = confine(ref, base_dir, allowed_roots)
    if real is None:
        return None, reason, detail
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return None, REJECT_MISSING_FILE, "no such file"
    except OSError as exc:
        return None, REJECT_UNREADABLE_FILE, f"{type(exc).__name__}: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return None, REJECT_NOT_A_REGULAR_FILE, _file_kind(info.st_mode)
    if info.st_size > max_bytes:
        return None, REJECT_TOO_MANY_BYTES, f"{info.st_size} bytes > max_bytes {max_bytes}"
    return _read_bounded(real, max_bytes)


def _read_bounded(real: str, max_bytes: int) -> Result:
    """Open without blocking or following a last-moment symlink, read at most max_bytes + 1."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        return None, REJECT_MISSING_FILE, "no such file"
    except OSError as exc:
        return None, REJECT_UNREADABLE_FILE, f"{type(exc).__name__}: {exc.strerror}"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped after the check
            return None, REJECT_NOT_A_REGULAR_FILE, _file_kind(mode)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        return None, REJECT_UNREADABLE_FILE, f"{type(exc).__name__}: {exc.strerror}"
    finally:
        os.close(fd)
    if total > max_bytes:
        return None, REJECT_TOO_MANY_BYTES, f"more than max_bytes {max_bytes} bytes"
    return b"".join(chunks), None, ""
