"""`realsyn bench calibrate-dedup`: deterministic variants, pHash recall, the JSON it writes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realsyn_assets.bench import calibrate_dedup as cal
from realsyn_assets_tests.conftest import REPO, SHARED_DATA

COMMITTED = REPO / "calibration" / "dedup_thresholds.json"


def _photo(seed: int, size: tuple[int, int] = (240, 180)) -> bytes:
    """Smooth random colour field with some edges: photo-like enough for pHash."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), np.float32)
    for _ in range(3):
        x, y = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        arr[y : y + 40, x : x + 40] = rng.uniform(0, 255, 3)
    arr += rng.normal(0, 4, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _fake_data(root: Path, per_dataset: int = 3) -> Path:
    seed = 0
    for rel in cal.DATASETS.values():
        folder = root / rel
        folder.mkdir(parents=True)
        for k in range(per_dataset):
            (folder / f"img{k}.jpg").write_bytes(_photo(seed))
            seed += 1
    return root


def _chosen_threshold() -> int:
    """The committed calibration's choice (the default the pipeline should use)."""
    if COMMITTED.is_file():
        return int(json.loads(COMMITTED.read_text())["phash"]["chosen_max_distance"])
    return 12


def test_variants_are_deterministic_and_cover_every_recipe():
    original = cal.Original("flickr8k_thumbs_dev", "x.jpg", _photo(7))
    first = cal.make_variants(original, seed=0)
    again = cal.make_variants(original, seed=0)
    assert [(v.kind, v.params, v.data) for v in first] == [
        (v.kind, v.params, v.data) for v in again
    ]
    assert [(v.kind, v.family) for v in first] == list(cal.RECIPES)
    assert len({v.data for v in first}) == len(first)  # every variant is a different file
    other_seed = cal.make_variants(original, seed=1)
    assert [v.params for v in other_seed] != [v.params for v in first]
    other_name = cal.make_variants(cal.Original("flickr8k_thumbs_dev", "y.jpg", original.data))
    assert [v.params for v in other_name] != [v.params for v in first]
    for v in first:  # parameters stay in the documented ranges
        p = v.params
        assert 50 <= p["quality"] <= 95
        if "scale" in p:
            assert 0.5 <= p["scale"] <= 0.9
        if "crop_fraction" in p:
            assert all(0.03 <= f <= 0.10 for f in p["crop_fraction"])
        if "brightness" in p:
            assert 0.05 <= abs(p["brightness"] - 1) <= 0.15


def _recall_by_family(items, threshold: int) -> dict[str, float]:
    dist, variants = cal.positive_distances(items)
    families = np.array([v.variant.family for v in variants])
    kinds = np.array([v.variant.kind for v in variants])
    out = {f: float((dist[families == f] <= threshold).mean()) for f in set(families)}
    out["resize+reencode"] = float((dist[kinds == "resize+reencode"] <= threshold).mean())
    return out


def test_reencode_and_resize_are_found_at_the_chosen_threshold_generated():
    originals = [
        cal.Original("flickr8k_thumbs_dev", f"g{k}.jpg", _photo(100 + k)) for k in range(4)
    ]
    items, problems = cal.build_items(originals, seed=0, work=None)
    assert problems == []
    assert all(it.phash is not None for it in items)
    assert len(items) == len(originals) * (1 + len(cal.RECIPES))
    chosen = _chosen_threshold()
    for t in (chosen, chosen + 2, 16):
        recall = _recall_by_family(items, t)
        assert recall["reencode"] == 1.0
        assert recall["resize"] == 1.0
        assert recall["resize+reencode"] == 1.0


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data not present")
def test_reencode_and_resize_are_found_at_the_chosen_threshold_real_photos():
    originals = cal.find_originals(SHARED_DATA, limit=4)
    assert {o.dataset for o in originals} == set(cal.DATASETS)
    items, problems = cal.build_items(originals, seed=0, work=None)
    assert problems == []
    recall = _recall_by_family(items, _chosen_threshold())
    assert recall["reencode"] == 1.0
    assert recall["resize"] == 1.0
    assert recall["resize+reencode"] == 1.0


def test_choose_takes_max_recall_under_both_constraints():
    rows = [
        {"threshold": 2, "tp": 5, "precision": 1.0, "recall": 0.5, "false_positive_rate": 0.0},
        {"threshold": 4, "tp": 8, "precision": 0.995, "recall": 0.8, "false_positive_rate": 5e-6},
        {"threshold": 5, "tp": 8, "precision": 0.995, "recall": 0.8, "false_positive_rate": 5e-6},
        {"threshold": 6, "tp": 9, "precision": 0.995, "recall": 0.9, "false_positive_rate": 1e-4},
        {"threshold": 8, "tp": 10, "precision": 0.95, "recall": 1.0, "false_positive_rate": 1e-3},
    ]
    assert cal.choose(rows, 0.99, 1e-5, larger_is_looser=True)["threshold"] == 4
    assert cal.choose(rows, 0.99, 1.0, larger_is_looser=True)["threshold"] == 6
    assert cal.choose(rows, 0.9, 1.0, larger_is_looser=True)["threshold"] == 8
    assert cal.choose(rows, 1.01, 1.0, larger_is_looser=True) is None


def test_main_writes_json_with_expected_keys(tmp_path, capsys):
    data = _fake_data(tmp_path / "data")
    out = tmp_path / "calibration" / "result.json"
    assert cal.main(["--data", str(data), "--out", str(out), "--no-semantic"]) == 0
    printed = capsys.readouterr().out
    assert "<- chosen" in printed and "recommended:" in printed
    assert [p.name for p in out.parent.iterdir()] == ["result.json"]  # no temp file left
    result = json.loads(out.read_text())
    for key in (
        "created",
        "data",
        "variants",
        "phash",
        "current_defaults",
        "recommended_defaults",
        "environment",
    ):
        assert key in result, key
    assert result["data"]["originals"] == 6
    assert result["variants"]["total"] == 6 * len(cal.RECIPES)
    ph = result["phash"]
    assert [r["threshold"] for r in ph["curve"]] == list(range(17))
    assert ph["negatives"] == 15  # all pairs of 6 distinct originals
    assert ph["positives"] + ph["positives_flip"] == result["variants"]["total"]
    assert ph["chosen_max_distance"] in range(17)
    assert result["recommended_defaults"]["phash_max_distance"] == ph["chosen_max_distance"]
    recalls = [r["recall"] for r in ph["curve"]]
    assert recalls == sorted(recalls)  # recall never drops as the threshold grows
    assert "semantic" not in result


class _FakeEncoder:
    """Stands in for core.encoder.Encoder (no torch import: keeps the test fast). Embeds an
    image as its normalised 4x4 thumbnail, so variants are close to their original."""

    def __init__(self, spec, weights_dir):
        self.spec = spec
        self.source = f"fake:{spec.model_name}"
        self.identity = f"{spec.model_name}|fake"

    def encode_images(self, paths):
        rows = []
        for p in paths:
            with Image.open(p) as img:
                v = np.asarray(img.convert("RGB").resize((4, 4)), np.float32).ravel() - 128
            rows.append(v / max(1e-6, float(np.linalg.norm(v))))
        return np.stack(rows).astype(np.float32)


def test_semantic_random_encoder_is_recorded_but_not_used(tmp_path, capsys, monkeypatch):
    from realsyn_assets.core.embedding import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "Encoder", _FakeEncoder)
    data = _fake_data(tmp_path / "data", per_dataset=2)
    out = tmp_path / "result.json"
    assert cal.main(["--data", str(data), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    sem = result["semantic"]
    assert sem["meaningful"] is False and sem["encoder"]["random_weights"] is True
    assert "not meaningful" in sem["note"]
    assert sem["chosen_threshold"] is None
    assert [r["threshold"] for r in sem["curve"]] == cal.COSINE_THRESHOLDS
    assert all(0 <= r["recall"] <= 1 for r in sem["curve"])
    assert sem["curve"][0]["recall"] >= sem["curve"][-1]["recall"]  # looser cosine, more hits
    assert result["recommended_defaults"]["semantic_threshold"] == 0.95  # unchanged
    assert "random encoder - not meaningful" in capsys.readouterr().out


def test_semantic_threshold_is_chosen_for_a_trained_encoder(tmp_path, monkeypatch):
    from realsyn_assets.core.embedding import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "Encoder", _FakeEncoder)
    monkeypatch.setattr(cal, "encoder_is_random", lambda checkpoint, pretrained: False)
    data = _fake_data(tmp_path / "data", per_dataset=2)
    out = tmp_path / "result.json"
    args = ["--data", str(data), "--out", str(out), "--encoder-checkpoint", "trained.pt"]
    assert cal.main([*args, "--max-fpr", "1"]) == 0
    sem = json.loads(out.read_text())["semantic"]
    assert sem["meaningful"] is True
    assert sem["chosen_threshold"] in cal.COSINE_THRESHOLDS
    assert sem["at_chosen"]["precision"] >= 0.99
    rec = json.loads(out.read_text())["recommended_defaults"]
    assert rec["semantic_threshold"] == sem["chosen_threshold"]
    assert rec["semantic_source"] == "calibrated"


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    assert cal.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o.json")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cal.main(["--data", str(empty), "--out", str(tmp_path / "o.json")]) == 2
    assert "no shared images" in capsys.readouterr().err


@pytest.mark.skipif(not COMMITTED.is_file(), reason="calibration result not generated yet")
def test_committed_result_is_consistent():
    result = json.loads(COMMITTED.read_text())
    ph = result["phash"]
    chosen = ph["chosen_max_distance"]
    row = next(r for r in ph["curve"] if r["threshold"] == chosen)
    assert row["precision"] >= 0.99
    assert row["recall_by_family"]["reencode"] == 1.0
    assert row["recall_by_family"]["resize"] == 1.0
    assert result["data"]["originals"] >= 900  # the full shared data, not a --limit run
    assert result["semantic"]["meaningful"] is False


def test_pipeline_default_is_the_committed_calibration():
    from realsyn_assets.assets.dedup import ImageDedupConfig

    assert ImageDedupConfig().phash_max_distance == _chosen_threshold()


def test_runs_as_realsyn_bench_calibrate_dedup(tmp_path, capsys):
    from realsyn_assets.cli import main

    data = _fake_data(tmp_path / "data", per_dataset=2)
    out = tmp_path / "result.json"
    args = ["bench", "calibrate-dedup", "--data", str(data), "--out", str(out), "--no-semantic"]
    assert main(args) == 0
    assert "recommended:" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["command"].startswith("realsyn bench calibrate-dedup --data")
    assert result["data"]["originals"] == 4
