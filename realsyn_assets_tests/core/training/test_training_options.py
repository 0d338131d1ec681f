"""Training options around the loop: caption columns, precision fallback on the CPU, the epoch
order as a pure function, the run fingerprint, weights_only checkpoints, and the loss drop that
`training_lowered_loss` checks."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from realsyn_assets.core.training import checkpoints
from realsyn_assets.core.training.clip import (
    PRECISIONS,
    TEXT_COLUMNS,
    TrainConfig,
    TrainSample,
    epoch_batches,
    epoch_order,
    loss_drop,
    samples_from_rows,
    steps_per_epoch,
    train_clip,
)
from realsyn_assets_tests.core.training.test_clip import make_shapes

ROWS = [
    {"image_path": "a.jpg", "text1": "one", "text2": "two", "text3": "", "syn_text": "syn a"},
    {"image_path": "b.jpg", "text1": "uno", "text2": None, "text3": None, "syn_text": ""},
]


def test_text_columns_choose_the_captions_a_step_draws_from():
    assert TrainConfig().text_columns == TEXT_COLUMNS
    default = samples_from_rows(ROWS)
    assert [s.texts for s in default] == [["one", "two", "syn a"], ["uno"]]
    assert samples_from_rows(ROWS, TEXT_COLUMNS) == default
    synthetic = samples_from_rows(ROWS, ("syn_text",))
    assert [(s.image_path, s.texts) for s in synthetic] == [("a.jpg", ["syn a"])]
    realistic = samples_from_rows(ROWS, ("text1", "text2", "text3"))
    assert [s.texts for s in realistic] == [["one", "two"], ["uno"]]


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_batches(21, 8, seed=3, epoch=1)
    assert a == epoch_batches(21, 8, seed=3, epoch=1)
    assert a != epoch_batches(21, 8, seed=3, epoch=2)
    assert [len(b) for b in a] == [8, 8, 5]
    assert sorted(i for b in a for i in b) == list(range(21))
    # across 2 processes each global batch holds a multiple of 2 samples (equal shards)
    assert [len(b) for b in epoch_batches(21, 8, 3, 1, world_size=2)] == [8, 8, 4]
    assert [len(b) for b in epoch_batches(17, 8, 0, 0)] == [8, 8]  # a batch of 1 is skipped
    for n, size, world in [(21, 8, 1), (21, 8, 2), (17, 8, 1), (9, 4, 3), (5, 4, 4), (3, 8, 4)]:
        assert len(epoch_batches(n, size, 0, 0, world)) == steps_per_epoch(n, size, world)


def test_epoch_order_is_the_shuffling_dataloaders_order():
    """Same order as torch's DataLoader(shuffle=True) seeded the same way, pass after pass: a
    resumable run trains on exactly the batches the earlier in-loop shuffling gave."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        list(range(21)),
        batch_size=8,
        shuffle=True,
        generator=torch.Generator().manual_seed(5),
        collate_fn=list,
    )
    for epoch in range(3):
        assert [i for batch in loader for i in batch] == epoch_order(21, 5, epoch)


def test_fingerprint_ignores_runtime_settings_only():
    samples = [TrainSample("a.jpg", ["x", "y"]), TrainSample("b.jpg", ["z"])]
    config = TrainConfig()
    base = checkpoints.fingerprint(config, samples, None)
    runtime_only = replace(
        config, num_workers=3, log_every=1, num_threads=1, checkpoint_every_steps=7, device="cpu"
    )
    assert checkpoints.fingerprint(runtime_only, samples, None) == base
    assert (
        checkpoints.fingerprint(replace(config, lr=1e-4), samples, None)["config"]
        != (base["config"])
    )
    assert (
        checkpoints.fingerprint(replace(config, text_columns=("syn_text",)), samples, None)[
            "config"
        ]
        != base["config"]
    )
    assert checkpoints.fingerprint(config, samples, "init.pt")["config"] != base["config"]
    assert checkpoints.fingerprint(config, samples[:1], None)["rows"] != base["rows"]


def test_loss_drop_is_relative_to_chance():
    sizes = [32, 12] * 10  # the small last batch of each epoch has a lower loss by itself
    flat = [math.log(b) for b in sizes]  # what a model that learns nothing scores
    assert loss_drop(flat, sizes) == pytest.approx(0.0, abs=1e-12)
    learned = [0.5 * v for v in flat]
    learned[:2] = flat[:2]
    assert loss_drop(learned, sizes) == pytest.approx(0.5)


def test_precision_falls_back_to_fp32_on_cpu_and_checkpoints_load_weights_only(tmp_path):
    import torch

    assert PRECISIONS == {"fp32": "fp32", "amp_bf16": "bf16", "amp_fp16": "fp16"}
    samples = make_shapes(tmp_path / "images", n=8)
    config = TrainConfig(batch_size=4, max_steps=2, num_threads=1, device="cpu")
    messages: list[str] = []
    bf16 = train_clip(
        samples, replace(config, precision="bf16"), tmp_path / "bf16", log=messages.append
    )
    fp32 = train_clip(samples, config, tmp_path / "fp32")
    assert "precision bf16 needs CUDA: training in fp32 on cpu" in messages
    assert bf16.losses == fp32.losses
    for path in (bf16.checkpoint_path, tmp_path / "bf16" / checkpoints.RESUME_NAME):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict)
    final = checkpoints.load_weights(bf16.checkpoint_path)
    resume = checkpoints.load_weights(tmp_path / "bf16" / checkpoints.RESUME_NAME)
    assert final.keys() == resume.keys() and all(torch.equal(final[k], resume[k]) for k in final)
    assert np.isfinite(bf16.losses).all()
    with pytest.raises(ValueError, match="no model weights"):
        checkpoints.atomic_torch_save({"step": 1}, tmp_path / "empty.pt")
        checkpoints.load_weights(tmp_path / "empty.pt")
