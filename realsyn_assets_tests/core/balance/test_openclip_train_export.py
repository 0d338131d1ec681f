"""The exported train tars train with open_clip's own trainer as it is: `open_clip_train.main`
(shipped with open_clip_torch) runs a few steps on CPU with `--dataset-type webdataset` and
writes its log and checkpoint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from realsyn_assets.core.balance.export import export_splits, webdataset_pattern

pytest.importorskip("webdataset", reason="open_clip_train needs the `train` extra")
pytest.importorskip("braceexpand", reason="open_clip_train needs the `train` extra")
pytest.importorskip("pandas", reason="open_clip_train needs the `train` extra")


def _subset(tmp_path, n: int = 14) -> pa.Table:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = tmp_path / "images" / f"img_{i:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        rows.append(
            {
                "image_id": f"img_{i:03d}",
                "image_path": f"images/{path.name}",
                "text1": f"a photo of a {['red', 'blue'][i % 2]} shape number {i}",
                "text2": "another sentence",
                "text3": None,
                "syn_text": f"a synthetic caption {i}",
                "split": "eval" if i < 2 else "train",
            }
        )
    return pa.Table.from_pylist(rows)


@pytest.mark.slow
def test_open_clip_train_runs_on_the_exported_train_tars(tmp_path):
    train, held = export_splits(
        _subset(tmp_path),
        tmp_path / "export",
        ("train", "eval"),
        samples_per_shard=5,
        image_root=tmp_path,
    )
    assert (train.rows, held.rows, len(train.shards)) == (12, 2, 3)
    pattern = webdataset_pattern(train.shards)
    assert pattern.endswith("train/{00000..00002}.tar")
    logs = tmp_path / "logs"
    flags = [
        "--dataset-type", "webdataset",
        "--train-data", pattern,
        "--train-num-samples", "12",
        "--batch-size", "4",
        "--epochs", "1",
        "--model", "realsyn-tiny",
        "--device", "cpu",
        "--workers", "0",
        "--precision", "fp32",
        "--lr", "1e-4",
        "--warmup", "1",
        "--seed", "0",
        "--log-every-n-steps", "1",
        "--zeroshot-frequency", "0",
        "--report-to", "",
        "--logs", str(logs),
        "--name", "export-run",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "realsyn_assets.core.balance.openclip_trainer", *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = (logs / "export-run" / "out.log").read_text()
    assert log.count("Train Epoch: 0") == 3  # 12 samples / batch 4, one line per step
    assert "[12/12 (100%)]" in log and "Loss:" in log
    checkpoint = torch.load(
        logs / "export-run" / "checkpoints" / "epoch_1.pt", map_location="cpu", weights_only=True
    )
    assert checkpoint["epoch"] == 1 and checkpoint["state_dict"]
