"""Fault injection, issue 18 failure 7: a corrupt image's rejection detail is stable text (no
memory address such as `<_io.BytesIO object at 0x…>`), so two runs over the same corrupt images
write identical rejection rows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa

from realsyn_assets.core.images.extract import REJECT_UNDECODABLE, _stable_detail, process_image
from realsyn_assets_tests.core.images.test_extract import encode, smooth_image

REPO = Path(__file__).resolve().parents[3]
ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}|object at")

# corrupt inputs: not an image at all, a header-only JPEG, a JPEG cut in half, a PNG whose
# pixel data is garbage
_GOOD = encode(smooth_image(3), "JPEG")
CORRUPT = [
    b"this is not an image at all",
    _GOOD[:200],
    _GOOD[: len(_GOOD) // 2],
    encode(smooth_image(4), "PNG")[:60] + b"\x00" * 400,
]

_RUN = textwrap.dedent(
    """
    import json, pathlib, tempfile
    import pyarrow as pa
    from realsyn_assets.core.images.extract import ImageFilterConfig
    from realsyn_assets.core.images.shard import fetch_slots, filter_images
    from realsyn_assets.core.ingest.documents import ITEM_SCHEMA
    from realsyn_assets_tests.core.images.test_fault_corrupt_detail import CORRUPT

    rows = [
        {"doc_id": f"d{i}", "position": 1, "kind": "image", "image_bytes": data}
        for i, data in enumerate(CORRUPT)
    ]
    fetched = fetch_slots(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA), "s")
    out = pathlib.Path(tempfile.mkdtemp())
    tables = filter_images(fetched, lambda iid: out / f"{iid}.jpg", ImageFilterConfig())
    assert not any(out.iterdir()), "a corrupt image was written"
    print(json.dumps(tables.rejected.to_pylist(), sort_keys=True))
    """
)


def test_corrupt_image_detail_has_no_memory_address():
    for data in CORRUPT:
        result = process_image(data, None)
        assert not result.kept and result.reason == REJECT_UNDECODABLE
        assert result.detail and not ADDRESS.search(result.detail), result.detail
    garbage = process_image(CORRUPT[0], None)
    assert garbage.detail == "UnidentifiedImageError: cannot identify image file"


def test_corrupt_detail_helper_strips_object_reprs_only():
    exc = ValueError("cannot read <_io.BytesIO object at 0x7f3a2c1d5e40> at byte 12")
    assert _stable_detail(exc) == "ValueError: cannot read at byte 12"
    assert _stable_detail(OSError("bad marker 0xffd8")) == "OSError: bad marker 0xffd8"


def test_corrupt_images_give_identical_rejection_rows_in_two_runs():
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", _RUN], capture_output=True, text=True, timeout=120, cwd=REPO
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    rows = json.loads(outputs[0])
    assert len(rows) == len(CORRUPT)
    assert {r["reason"] for r in rows} == {REJECT_UNDECODABLE}
    assert not any(ADDRESS.search(r["detail"]) for r in rows)
    assert pa.Table.from_pylist(rows).num_rows == len(CORRUPT)
