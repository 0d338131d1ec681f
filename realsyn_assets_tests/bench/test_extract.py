"""`realsyn bench extract`: runs on tiny inputs and prints one JSON object (no timing asserts)."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from realsyn_assets.bench import extract

REQUIRED_POSITIVE = (
    "image_per_s_per_core",
    "pillow_baseline_per_s_per_core",
    "image_ratio_vs_pillow",
    "sentences_per_s_per_core",
    "two_core_speedup_images",
    "two_core_speedup_sentences",
    "images",
    "sentences",
    "cpu_count",
    "pool_start_s",
    "machine_speedup_ceiling",
)


def _run(capsys, argv: list[str]) -> dict:
    assert extract.main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON document on stdout


def test_demo_corpus_prints_json_with_all_keys(capsys):
    result = _run(
        capsys, ["--docs", "8", "--repeat", "1", "--photos", "2", "--min-sentences", "300"]
    )
    for key in REQUIRED_POSITIVE:
        assert key in result, key
        assert isinstance(result[key], int | float) and result[key] > 0, (key, result[key])
    assert result["input"]["kind"] == "demo_corpus"
    assert set(result["image_breakdown"]) == {"demo", "photos"}
    assert result["image_breakdown"]["photos"]["images"] == 2
    assert result["images"] == sum(b["images"] for b in result["image_breakdown"].values())
    # the demo corpus plants tiny / odd-aspect / corrupt files: the stage must reject some
    assert 0 < result["images_kept"] < result["images"]
    assert result["image_rejections"]
    assert result["sentences"] >= 300  # text blocks were cycled up to --min-sentences
    assert 0 < result["sentences_kept"] <= result["sentences"]
    assert set(result["meets_targets"]) == set(extract.TARGETS)


def test_path_mode_reads_images_and_jsonl(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for k in range(3):
        arr = rng.integers(0, 255, (140 + 10 * k, 180, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"img{k}.jpg", quality=85)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    docs = [
        {"texts": ["A red kite flies over the hill. Children run after it.", None]},
        {"text_list": ["The old bridge crosses a quiet river at dawn."]},
        {"captions": ["Two dogs play on the beach near the water ."]},
    ]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    result = _run(
        capsys,
        ["--path", str(tmp_path), "--repeat", "1", "--min-sentences", "20", "--workers", "2"],
    )
    assert result["input"]["kind"] == "path"
    assert result["images"] == 4
    assert result["images_kept"] == 3
    assert result["image_rejections"] == {"undecodable": 1}
    assert result["image_breakdown"]["path"]["pillow_failures"] == 1
    assert result["input"]["text_blocks_distinct"] == 3
    assert result["sentences"] >= 20


def test_synth_photo_is_deterministic_and_photo_sized():
    a, b = extract.synth_photo(640, 480, 3), extract.synth_photo(640, 480, 3)
    assert a == b
    assert extract.synth_photo(640, 480, 4) != a
    img = Image.open(io.BytesIO(a))
    assert img.format == "JPEG" and img.size == (640, 480)
    bits_per_pixel = 8 * len(a) / (640 * 480)
    assert 0.5 < bits_per_pixel < 6  # photo-like, not white noise (~8) nor flat (~0.1)


def test_replicate_blocks_reaches_minimum():
    blocks = ["One two three. Four five six.", "Seven eight nine."]
    out, copies, n = extract.replicate_blocks(blocks, 10)
    assert copies == 4 and n == 12 and out == blocks * 4
    assert extract.replicate_blocks([], 10) == ([], 1, 0)
