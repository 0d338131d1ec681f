from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from realsyn_assets.core.embedding.images import UnreadableImageError
from realsyn_assets.core.training.clip import (
    TrainConfig,
    TrainSample,
    _TrainDataset,
    build_optimizer,
    build_scheduler,
    split_decay_params,
    steps_per_epoch,
    train_clip,
)

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
}


def make_shapes(folder: Path, n: int = 64, seed: int = 0) -> list[TrainSample]:
    """n 64x64 images of a coloured circle or square on grey; texts name colour (and shape)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    samples = []
    for i in range(n):
        colour, shape = names[i % len(names)], ("circle", "square")[(i // len(names)) % 2]
        im = Image.new("RGB", (64, 64), (128, 128, 128))
        x, y = (int(v) for v in rng.integers(4, 28, 2))
        s = int(rng.integers(20, 32))
        draw = ImageDraw.Draw(im)
        (draw.ellipse if shape == "circle" else draw.rectangle)(
            [x, y, x + s, y + s], COLOURS[colour]
        )
        path = folder / f"{i:03d}.png"
        im.save(path)
        texts = [
            f"a {colour} {shape}",
            f"something {colour}",
            f"{colour} colour",
            f"a {shape}, {colour}",
        ]
        samples.append(TrainSample(str(path), texts))
    return samples


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> list[TrainSample]:
    return make_shapes(tmp_path_factory.mktemp("shapes"))


def test_short_run_lowers_loss_and_writes_checkpoint_and_plot(shapes, tmp_path):
    import torch

    messages: list[str] = []
    # 32 samples -> 2 steps/epoch; 1 thread keeps the test fast on a busy 2-core machine
    cfg = TrainConfig(epochs=20, batch_size=16, log_every=10, num_threads=1)
    result = train_clip(shapes[:32], cfg, tmp_path / "run", log=messages.append)

    assert result.steps == 40 and len(result.losses) == 40
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert first > 2.5  # ~ln(16) at random init
    assert last < first - 1.0, (first, last)
    assert all(np.isfinite(result.losses))

    assert result.checkpoint_path == tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(result.checkpoint_path, map_location="cpu", weights_only=True)
    assert ckpt["model_name"] == "realsyn-tiny"
    assert ckpt["steps"] == 40 and ckpt["losses"] == pytest.approx(result.losses)
    assert ckpt["train_config"]["lr"] == 1e-3 and tuple(ckpt["train_config"]["betas"]) == (
        0.9,
        0.98,
    )
    assert "logit_scale" in ckpt["state_dict"]
    assert float(ckpt["state_dict"]["logit_scale"]) <= np.log(100) + 1e-6
    assert result.loss_plot_path is not None
    assert result.loss_plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "run").glob("*.tmp"))  # atomic writes leave no temp files

    # OneCycle: starts at lr/25, peaks at exactly 1e-3 after pct_start (10% of 40 steps), anneals
    assert result.lrs[0] == pytest.approx(1e-3 / 25)
    assert max(result.lrs) == pytest.approx(1e-3)
    assert int(np.argmax(result.lrs)) == 3
    assert result.lrs[-1] < 1e-5
    assert any(m.startswith("step 10/40") for m in messages)
    assert any(m.startswith("done") for m in messages)


def test_onecycle_schedule_peaks_at_paper_lr():
    import torch

    cfg = TrainConfig()
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    sched = build_scheduler(opt, cfg, total_steps=200)
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(1e-3)
    assert int(np.argmax(lrs)) == 19  # pct_start 0.1 of 200 steps
    assert lrs[0] == pytest.approx(4e-5) and lrs[-1] < 1e-7
    assert all(g["betas"] == (0.9, 0.98) for g in opt.param_groups)  # momentum not cycled


def test_training_is_deterministic_for_a_seed_and_any_worker_count(shapes, tmp_path):
    import torch

    cfg = TrainConfig(batch_size=8, max_steps=3, epochs=2, num_threads=1)
    a = train_clip(shapes[:16], cfg, tmp_path / "a")
    b = train_clip(shapes[:16], replace(cfg, num_workers=2), tmp_path / "b")
    c = train_clip(shapes[:16], replace(cfg, seed=1), tmp_path / "c")
    assert a.steps == 3 and a.losses == b.losses
    assert a.losses != c.losses
    sa = torch.load(a.checkpoint_path, weights_only=True)["state_dict"]
    sb = torch.load(b.checkpoint_path, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_datasets_and_size_one_batches(shapes, tmp_path):
    assert steps_per_epoch(64, 64) == 1
    assert steps_per_epoch(5, 64) == 1  # one smaller batch
    assert steps_per_epoch(65, 64) == 1  # trailing batch of one is skipped
    assert steps_per_epoch(66, 64) == 2
    assert steps_per_epoch(1, 64) == 0
    result = train_clip(
        shapes[:3], TrainConfig(batch_size=2, epochs=2, num_threads=1), tmp_path / "tiny"
    )
    assert result.steps == 2  # per epoch: a batch of 2, then a skipped batch of 1
    with pytest.raises(ValueError, match="nothing to train"):
        train_clip(shapes[:1], TrainConfig(), tmp_path / "one")
    empty_texts = [TrainSample(s.image_path, ["", "  "]) for s in shapes[:4]]
    with pytest.raises(ValueError, match="nothing to train"):
        train_clip(empty_texts, TrainConfig(), tmp_path / "empty")


def test_caption_drawn_uniformly_per_step_and_reproducibly(shapes):
    texts = ["t0", "t1", "t2", "t3"]
    ds = _TrainDataset(
        [TrainSample(shapes[0].image_path, texts)],
        preprocess=lambda im: im.size,
        tokenizer=lambda batch: batch,  # identity: returns the chosen text
        seed=7,
    )
    picks = []
    for epoch in range(400):
        ds.epoch = epoch
        picks.append(ds[0][1])
    counts = Counter(picks)
    assert set(counts) == set(texts)
    assert all(60 < c < 140 for c in counts.values()), counts  # ~100 each
    ds.epoch = 5
    assert ds[0][1] == picks[5]  # the draw depends only on (seed, epoch, index)


def test_weight_decay_only_on_weight_matrices():
    import open_clip

    from realsyn_assets.core.embedding.configs import register_model_configs

    register_model_configs()
    model = open_clip.create_model("realsyn-tiny")
    decay, no_decay = split_decay_params(model)
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay}
    no_decay_names = {names[id(p)] for p in no_decay}
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    for n in (
        "logit_scale",
        "token_embedding.weight",
        "positional_embedding",
        "visual.class_embedding",
        "visual.positional_embedding",
        "ln_final.weight",
        "ln_final.bias",
    ):
        assert n in no_decay_names, n
    assert "text_projection" in decay_names and "visual.conv1.weight" in decay_names
    assert all(p.ndim >= 2 for p in decay)
    opt = build_optimizer(model, TrainConfig())
    wds = sorted(g["weight_decay"] for g in opt.param_groups)
    assert wds == [0.0, 0.2]


def test_unreadable_image_is_a_clear_error(shapes, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    samples = list(shapes[:3]) + [TrainSample(str(bad), ["a broken image"])]
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        train_clip(samples, TrainConfig(batch_size=4, epochs=1), tmp_path / "bad")
