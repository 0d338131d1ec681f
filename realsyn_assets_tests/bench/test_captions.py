"""`realsyn bench captions` on a tiny generated captions.jsonl (the Flickr8k run is in
realsyn_assets_tests/assets/test_bootstrap_quality.py)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from realsyn_assets.bench import captions as bench

COLOURS = {"red": (220, 30, 35), "blue": (30, 75, 225), "green": (25, 165, 55)}


def _corpus(root, per_split: dict[str, int]) -> None:
    (root / "images").mkdir(parents=True)
    lines = []
    for split, n in per_split.items():
        for i in range(n):
            name = list(COLOURS)[i % 3]
            path = f"images/{split}{i}.png"
            Image.new("RGB", (48, 48), COLOURS[name]).save(root / path)
            captions = [f"A {name} picture.", f"Something {name}, number {i}."]
            lines.append(json.dumps({"image": path, "flickr8k_split": split, "captions": captions}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")


def test_load_caption_corpus_makes_paths_absolute(tmp_path):
    _corpus(tmp_path, {"train": 2, "dev": 1})
    rows = bench.load_caption_corpus(tmp_path)
    assert [r["flickr8k_split"] for r in rows] == ["train", "train", "dev"]
    assert rows[0]["image"] == str(tmp_path / "images/train0.png")
    assert bench.load_caption_corpus(tmp_path / "absent") == []


def test_main_reports_recall_next_to_random_weights_and_chance(capsys, tmp_path):
    _corpus(tmp_path, {"train": 12, "dev": 6})
    assert bench.main([str(tmp_path), "--epochs", "1", "--batch-size", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train_images"] == 12 and out["test_images"] == 6 and out["test_captions"] == 12
    for key in ("r_at_1", "r_at_5", "r_at_10", "random_r_at_5", "chance_exact_r_at_5"):
        assert 0.0 <= out[key] <= 1.0
    assert out["r_at_1"] <= out["r_at_5"] <= out["r_at_10"]
    assert out["chance_r_at_5"] == 5 * 2 / 12 and out["steps"] == 3
    assert out["chance_exact_r_at_5"] == pytest.approx(1 - 252 / 792)  # 1 - C(10,5) / C(12,5)
    assert bench.main([str(tmp_path / "absent")]) == 2
