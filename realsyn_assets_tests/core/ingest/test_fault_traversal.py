"""Fault injection, issue 18 failure 1: a document's image reference never reads a file outside
the shard's folder (or a configured allowed root), never opens a non-regular file, and never reads
more than max_bytes + 1 bytes, whatever `stat` says. Every refusal is decided before opening."""

from __future__ import annotations

import io
import os
import socket
import stat
import time
from pathlib import Path

import pytest
from PIL import Image

from realsyn_assets.core.images.shard import fetch_slots
from realsyn_assets.core.ingest.confined import (
    REJECT_NOT_A_REGULAR_FILE,
    REJECT_OUTSIDE_CORPUS,
    REJECT_SYMLINK_OUTSIDE_CORPUS,
    REJECT_TOO_MANY_BYTES,
)
from realsyn_assets.core.ingest.documents import fetch_image_bytes, read_shard


def _jpeg(color=(200, 10, 10), size=(120, 120)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, Path]:
    """(shard folder with img/inside.jpg, a folder beside it with outside.jpg)."""
    shard_dir = tmp_path / "corpus" / "shard"
    (shard_dir / "img").mkdir(parents=True)
    (shard_dir / "img" / "inside.jpg").write_bytes(_jpeg((10, 200, 10)))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "outside.jpg").write_bytes(_jpeg((10, 10, 200)))
    return shard_dir, outside


def _reason(ref: str, shard_dir: Path, **kwargs) -> str | None:
    data, reason, detail = fetch_image_bytes(ref, None, base_dir=shard_dir, **kwargs)
    assert (data is None) == (reason is not None)
    assert "0x" not in detail
    return reason


# --------------------------------------------------------------------------- leaving the folder


def test_traversal_absolute_etc_passwd_is_rejected_outside_corpus(corpus):
    shard_dir, _ = corpus
    assert _reason("/etc/passwd", shard_dir) == REJECT_OUTSIDE_CORPUS


def test_traversal_dotdot_escape_is_rejected(corpus):
    shard_dir, _ = corpus
    # as raw_documents stores it (joined with the shard folder) and as a relative reference
    assert _reason(str(shard_dir / "../../../../etc/hostname"), shard_dir) == REJECT_OUTSIDE_CORPUS
    assert _reason("../../../../etc/hostname", shard_dir) == REJECT_OUTSIDE_CORPUS
    assert _reason("img/../../shard/../../etc/passwd", shard_dir) == REJECT_OUTSIDE_CORPUS


def test_traversal_symlink_to_etc_passwd_is_rejected(corpus):
    shard_dir, _ = corpus
    (shard_dir / "passwd.jpg").symlink_to("/etc/passwd")
    assert _reason(str(shard_dir / "passwd.jpg"), shard_dir) == REJECT_SYMLINK_OUTSIDE_CORPUS
    # a symlinked folder leading out counts the same
    (shard_dir / "etc").symlink_to("/etc")
    assert _reason("etc/passwd", shard_dir) == REJECT_SYMLINK_OUTSIDE_CORPUS


def test_traversal_absolute_path_to_real_jpeg_outside_is_rejected(corpus):
    shard_dir, outside = corpus
    assert _reason(str(outside / "outside.jpg"), shard_dir) == REJECT_OUTSIDE_CORPUS
    assert _reason("../../elsewhere/outside.jpg", shard_dir) == REJECT_OUTSIDE_CORPUS


def test_traversal_symlink_to_image_outside_is_rejected(corpus):
    shard_dir, outside = corpus
    (shard_dir / "img" / "link.jpg").symlink_to(outside / "outside.jpg")
    assert _reason("img/link.jpg", shard_dir) == REJECT_SYMLINK_OUTSIDE_CORPUS


def test_traversal_without_a_base_folder_every_local_path_is_refused(corpus):
    shard_dir, _ = corpus
    data, reason, _ = fetch_image_bytes(str(shard_dir / "img" / "inside.jpg"), None)
    assert data is None and reason == REJECT_OUTSIDE_CORPUS
    # embedded bytes need no folder
    assert fetch_image_bytes(None, b"abc")[0] == b"abc"


def test_traversal_bad_path_strings_are_rejections_not_crashes(corpus):
    shard_dir, _ = corpus
    assert _reason("img/in\x00side.jpg", shard_dir) == REJECT_OUTSIDE_CORPUS
    assert _reason("x" * 5000, shard_dir) is not None


# --------------------------------------------------------------------------- staying inside


def test_traversal_symlink_inside_to_image_inside_stays_allowed(corpus):
    shard_dir, _ = corpus
    (shard_dir / "alias.jpg").symlink_to(shard_dir / "img" / "inside.jpg")
    (shard_dir / "pics").symlink_to("img")  # relative link to a folder inside
    data = (shard_dir / "img" / "inside.jpg").read_bytes()
    for ref in ("alias.jpg", str(shard_dir / "alias.jpg"), "pics/inside.jpg", "img/inside.jpg"):
        got, reason, _ = fetch_image_bytes(ref, None, base_dir=shard_dir)
        assert reason is None and got == data, ref


def test_traversal_allowed_root_makes_an_outside_image_accepted(corpus):
    shard_dir, outside = corpus
    data = (outside / "outside.jpg").read_bytes()
    (shard_dir / "link.jpg").symlink_to(outside / "outside.jpg")
    for ref in (str(outside / "outside.jpg"), "link.jpg", "../../elsewhere/outside.jpg"):
        got, reason, _ = fetch_image_bytes(
            ref, None, base_dir=shard_dir, allowed_roots=[str(outside)]
        )
        assert reason is None and got == data, ref
    # the allowed root opens that folder only
    assert _reason("/etc/passwd", shard_dir, allowed_roots=[str(outside)]) == REJECT_OUTSIDE_CORPUS


def test_traversal_shard_folder_reached_through_a_symlink_is_still_inside(tmp_path, corpus):
    shard_dir, _ = corpus
    (tmp_path / "alias_dir").symlink_to(shard_dir)
    got, reason, _ = fetch_image_bytes(
        str(tmp_path / "alias_dir" / "img" / "inside.jpg"), None, base_dir=tmp_path / "alias_dir"
    )
    assert reason is None and got


# --------------------------------------------------------------------------- non-regular files


def test_fault_dev_zero_is_rejected_without_reading(corpus):
    shard_dir, _ = corpus
    assert _reason("/dev/zero", shard_dir) == REJECT_OUTSIDE_CORPUS
    # even inside an allowed root, a device is not a regular file
    assert _reason("/dev/zero", shard_dir, allowed_roots=["/dev"]) == REJECT_NOT_A_REGULAR_FILE


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_fault_device_node_inside_the_folder_is_not_a_regular_file(corpus):
    shard_dir, _ = corpus
    zero = os.stat("/dev/zero").st_rdev
    os.mknod(shard_dir / "zero.jpg", 0o644 | stat.S_IFCHR, zero)
    assert _reason(str(shard_dir / "zero.jpg"), shard_dir) == REJECT_NOT_A_REGULAR_FILE


@pytest.mark.timeout(30)
def test_fault_fifo_is_rejected_and_does_not_hang(corpus):
    shard_dir, _ = corpus
    os.mkfifo(shard_dir / "pipe.jpg")
    start = time.monotonic()
    assert _reason(str(shard_dir / "pipe.jpg"), shard_dir) == REJECT_NOT_A_REGULAR_FILE
    assert _reason("pipe.jpg", shard_dir) == REJECT_NOT_A_REGULAR_FILE
    assert time.monotonic() - start < 5


def test_fault_directory_and_socket_are_not_regular_files(corpus, monkeypatch):
    shard_dir, _ = corpus
    (shard_dir / "folder.jpg").mkdir()
    assert _reason(str(shard_dir / "folder.jpg"), shard_dir) == REJECT_NOT_A_REGULAR_FILE
    assert _reason(str(shard_dir), shard_dir) == REJECT_NOT_A_REGULAR_FILE
    monkeypatch.chdir(shard_dir)  # AF_UNIX paths are short: bind relative to the folder
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind("s.jpg")
        assert _reason(str(shard_dir / "s.jpg"), shard_dir) == REJECT_NOT_A_REGULAR_FILE


@pytest.mark.timeout(30)
def test_fault_read_is_bounded_whatever_stat_says(corpus):
    shard_dir, _ = corpus
    # procfs files are regular with st_size 0 but have content: the read itself is bounded
    status = Path("/proc/self/status")
    if not status.exists() or status.stat().st_size != 0:
        pytest.skip("needs Linux procfs")
    reason = _reason("/proc/self/status", shard_dir, allowed_roots=["/proc"], max_bytes=10)
    assert reason == REJECT_TOO_MANY_BYTES
    big = shard_dir / "big.jpg"
    big.write_bytes(b"0" * 2000)
    assert _reason("big.jpg", shard_dir, max_bytes=1000) == REJECT_TOO_MANY_BYTES
    got, reason, _ = fetch_image_bytes("big.jpg", None, base_dir=shard_dir, max_bytes=2000)
    assert reason is None and len(got) == 2000


# --------------------------------------------------------------------------- through a shard


def test_traversal_fetch_slots_confines_to_the_shard_folder(corpus):
    """read_shard joins references with the shard folder; fetch_slots still refuses escapes."""
    shard_dir, outside = corpus
    (shard_dir / "pw.jpg").symlink_to("/etc/passwd")
    refs = [
        "img/inside.jpg",
        "/etc/passwd",
        "../../../../etc/hostname",
        str(outside / "outside.jpg"),
        "pw.jpg",
    ]
    lines = [
        f'{{"id": "d{i}", "texts": ["Some words here.", null], "images": [null, "{ref}"]}}'
        for i, ref in enumerate(refs)
    ]
    shard = shard_dir / "s.jsonl"
    shard.write_text("\n".join(lines) + "\n")
    docs = read_shard(shard).items
    fetched = fetch_slots(docs, "s", base_dir=shard_dir)
    assert fetched.slots == 5 and len(fetched.unique) == 1
    assert [r["reason"] for r in fetched.rejected] == [
        REJECT_OUTSIDE_CORPUS,
        REJECT_OUTSIDE_CORPUS,
        REJECT_OUTSIDE_CORPUS,
        REJECT_SYMLINK_OUTSIDE_CORPUS,
    ]


@pytest.mark.timeout(30)
def test_fault_fifo_or_symlink_swapped_in_after_the_check_does_not_block_or_follow(corpus):
    """The open itself neither blocks on a FIFO nor follows a symlink (a file swapped between
    the checks and the open): the last line of defence behind the stat checks."""
    from realsyn_assets.core.ingest.confined import REJECT_UNREADABLE_FILE, _read_bounded

    shard_dir, _ = corpus
    os.mkfifo(shard_dir / "late.jpg")
    assert _read_bounded(str(shard_dir / "late.jpg"), 1000)[1] == REJECT_NOT_A_REGULAR_FILE
    (shard_dir / "late_link.jpg").symlink_to("/etc/passwd")
    assert _read_bounded(str(shard_dir / "late_link.jpg"), 1000)[1] == REJECT_UNREADABLE_FILE
