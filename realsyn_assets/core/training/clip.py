"""A short CLIP training run with the paper's recipe (spec §7), sized for whatever data we have.

Recipe (paper defaults in :class:`TrainConfig`): symmetric InfoNCE, AdamW (lr 1e-3, wd 0.2,
betas 0.9/0.98, eps 1e-6), OneCycleLR with pct_start 0.1, temperature initialised at 0.07, and —
as in the paper, following LaCLIP — at every step each image's caption is drawn uniformly from its
texts (3 retrieved realistic + 1 synthetic).

Choices the paper leaves open (spec §13.10), made the standard open_clip way:
- weight decay only on matrices (linear / conv / projection weights); no decay on biases, norm
  gains, logit_scale, or embeddings (token, positional, class) — decaying these hurts CLIP;
- OneCycleLR without momentum cycling, so AdamW keeps the paper's beta1 = 0.9 throughout;
- logit_scale clamped to [0, ln 100] after each step (CLIP's cap on 1/temperature);
- open_clip's default training augmentation (RandomResizedCrop, scale 0.9-1.0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from realsyn_assets.core.embedding import runtime
from realsyn_assets.core.embedding.configs import register_model_configs
from realsyn_assets.core.embedding.images import (
    UnreadableImageError,
    load_rgb,
    worker_init_single_thread,
)
from realsyn_assets.core.io import atomic_path, ensure_free_space

if TYPE_CHECKING:
    import torch

CHECKPOINT_NAME = "checkpoint.pt"
LOSS_PLOT_NAME = "loss.png"
MAX_LOGIT_SCALE = math.log(100.0)
# The columns of a balanced subset a sample's captions are drawn from: 3 realistic + 1 synthetic.
TEXT_COLUMNS = ("text1", "text2", "text3", "syn_text")


@dataclass(frozen=True)
class TrainConfig:
    model_name: str = "realsyn-tiny"
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    pct_start: float = 0.1  # OneCycleLR warm-up fraction
    temperature_init: float = 0.07  # logit_scale init = log(1/0.07)
    max_steps: int | None = None  # cap total steps (for quick runs)
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast on cuda only; CPU always fp32
    log_every: int = 10  # call `log` every N steps (and on the first and last step)
    num_threads: int | None = None  # torch threads during the run; None = torch default


@dataclass
class TrainSample:
    image_path: str
    texts: list[str]  # the 3 retrieved realistic + 1 synthetic (any non-empty subset ok)


@dataclass
class TrainResult:
    checkpoint_path: Path
    losses: list[float]  # per step
    steps: int
    seconds: float
    loss_plot_path: Path | None  # small PNG
    lrs: list[float] = field(default_factory=list)  # learning rate used at each step


class _TrainDataset:
    """(image tensor, tokens of one caption drawn uniformly from the sample's texts).

    The caption draw and the random crop are seeded by (seed, epoch, index), so they do not
    depend on worker count or on which process loads the item: a run is reproducible with any
    ``num_workers``.
    """

    def __init__(self, samples: Sequence[TrainSample], preprocess: Callable, tokenizer, seed: int):
        self.paths = [s.image_path for s in samples]
        self.texts = [list(s.texts) for s in samples]
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        texts = self.texts[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        text = texts[int(rng.integers(len(texts)))]
        try:
            image = load_rgb(self.paths[i])
            with torch.random.fork_rng(devices=[]):  # augmentation seeded per item, too
                torch.default_generator.manual_seed(int(rng.integers(2**62)))
                image = self.preprocess(image)
        except Exception as exc:  # returned, not raised: see _collate_train
            reason = exc.reason if isinstance(exc, UnreadableImageError) else repr(exc)
            return None, None, (self.paths[i], reason)
        return image, self.tokenizer([text])[0], None


def samples_from_rows(rows: Sequence[Mapping]) -> list[TrainSample]:
    """Training samples from balanced-subset rows (`image_path` + `TEXT_COLUMNS`).

    Empty or missing texts are left out of a sample's captions; rows with none are dropped.
    """
    samples = [
        TrainSample(image_path=r["image_path"], texts=[r[c] for c in TEXT_COLUMNS if r[c]])
        for r in rows
    ]
    return [s for s in samples if s.texts]


def loss_first_last(losses: Sequence[float]) -> tuple[float, float]:
    """Mean loss over the first and over the last tenth of the steps (at least one step each),
    a noise-robust way to say whether training lowered the loss."""
    values = np.asarray(losses, dtype=np.float64)
    tenth = max(1, len(values) // 10)
    return float(values[:tenth].mean()), float(values[-tenth:].mean())


def _collate_train(items):
    """Stack a batch, or report the first unreadable image so the main process can raise a
    clean :class:`UnreadableImageError` (a worker's exception would arrive as a RuntimeError)."""
    import torch

    errors = [err for _, _, err in items if err is not None]
    if errors:
        return None, None, errors
    return torch.stack([x for x, _, _ in items]), torch.stack([t for _, t, _ in items]), []


def split_decay_params(model: torch.nn.Module) -> tuple[list, list]:
    """(decay, no_decay) parameter lists: decay only on weight matrices, not embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2
        is_embedding = "embedding" in name  # token_, positional_, class_embedding
        if is_matrix and not is_embedding and "logit_scale" not in name:
            decay.append(p)
        else:
            no_decay.append(p)
    return decay, no_decay


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    decay, no_decay = split_decay_params(model)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs = dict(lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    try:  # fused AdamW is several times faster on CPU for the 49k-row token embedding
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int):
    """OneCycleLR peaking at ``config.lr`` after ``pct_start`` of the steps, cosine annealing.

    Starts at lr/25 and ends near 0 (torch defaults). With very few steps the warm-up
    degenerates (a 1-step run gets a ~0 lr); that is inherent to OneCycle.
    """
    import torch

    # OneCycleLR divides by (pct_start * total - 1) and by the length of the annealing phase,
    # so very short runs need both phases to last at least half a step.
    total = max(2, int(total_steps))
    pct_start = min(max(config.pct_start, 1.5 / total), 1.0 - 0.5 / total)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=total,
        pct_start=pct_start,
        anneal_strategy="cos",
        cycle_momentum=False,
    )


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Batches per epoch with drop_last=False, not counting a final batch of size 1."""
    full, rest = divmod(n_samples, batch_size)
    return full + (1 if rest >= 2 else 0)


def _clean_samples(samples: Sequence[TrainSample]) -> list[TrainSample]:
    out = []
    for s in samples:
        texts = [t for t in s.texts if isinstance(t, str) and t.strip()]
        if texts:
            out.append(TrainSample(image_path=str(s.image_path), texts=texts))
    return out


def save_loss_plot(losses: Sequence[float], path: Path, title: str = "") -> Path:
    """Small PNG of per-step loss plus a moving average (Agg canvas, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss")
    w = max(1, len(losses) // 20)
    if w > 1:
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, lw=1.5, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def train_clip(
    samples: Sequence[TrainSample],
    config: TrainConfig,
    out_dir: Path | str,
    init_checkpoint: str | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train CLIP on (image, texts) samples; write ``checkpoint.pt`` and ``loss.png`` in out_dir.

    Fresh runs start from the same seeded random init that ``ensure_local_weights`` would write
    for this seed. Deterministic for a seed on CPU (any ``num_workers``). The checkpoint loads
    with ``Encoder(EncoderSpec(model_name=..., checkpoint=...))``.
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    clean = _clean_samples(samples)
    if len(clean) < len(samples):
        say(f"skipped {len(samples) - len(clean)} samples without any non-empty text")
    per_epoch = steps_per_epoch(len(clean), config.batch_size)
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    if total < 1:
        raise ValueError(
            f"nothing to train: {len(clean)} usable samples, batch_size {config.batch_size}, "
            f"epochs {config.epochs}, max_steps {config.max_steps} (need >= 2 samples per step)"
        )

    register_model_configs(config.model_name)
    import open_clip
    import torch
    from torch.utils.data import DataLoader

    device = runtime.resolve_device(config.device)
    amp = runtime.autocast_context(device, config.precision)
    fork_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=fork_devices), runtime.torch_threads(config.num_threads):
        torch.manual_seed(config.seed)
        with runtime.quiet_transformers():
            model, preprocess_train, _ = open_clip.create_model_and_transforms(
                config.model_name,
                pretrained=init_checkpoint,
                device=device,
                init_logit_scale=math.log(1.0 / config.temperature_init),
            )
        model.train()
        # A full disk fails now, not after the training that the checkpoint would have kept.
        ensure_free_space(out_dir / CHECKPOINT_NAME, runtime.checkpoint_bytes(model))
        tokenizer = open_clip.get_tokenizer(config.model_name)
        optimizer = build_optimizer(model, config)
        scheduler = build_scheduler(optimizer, config, total)
        scaler = torch.amp.GradScaler(
            "cuda", enabled=device.startswith("cuda") and config.precision == "fp16"
        )
        loss_fn = open_clip.ClipLoss()
        dataset = _TrainDataset(clean, preprocess_train, tokenizer, config.seed)
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=False,
            num_workers=max(0, config.num_workers),
            generator=torch.Generator().manual_seed(config.seed),
            collate_fn=_collate_train,
            worker_init_fn=worker_init_single_thread if config.num_workers > 0 else None,
        )
        say(
            f"training {config.model_name} on {len(clean)} samples: {total} steps "
            f"({per_epoch}/epoch, batch {config.batch_size}) on {device}"
        )

        losses: list[float] = []
        lrs: list[float] = []
        step = 0
        for epoch in range(config.epochs):
            if step >= total:
                break
            dataset.epoch = epoch  # picked up by workers: they are re-created each epoch
            for images, tokens, errors in loader:
                if errors:
                    raise UnreadableImageError(*errors[0])
                if step >= total:
                    break
                if images.shape[0] < 2:  # InfoNCE needs negatives
                    continue
                lr = optimizer.param_groups[0]["lr"]
                optimizer.zero_grad(set_to_none=True)
                with amp:
                    img_f, txt_f, scale = model(images.to(device), tokens.to(device))
                    loss = loss_fn(img_f, txt_f, scale)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                step += 1
                losses.append(float(loss.detach()))
                lrs.append(float(lr))
                if step == 1 or step == total or step % max(1, config.log_every) == 0:
                    say(
                        f"step {step}/{total} epoch {epoch + 1} loss {losses[-1]:.4f} "
                        f"lr {lr:.2e} temp {math.exp(-float(model.logit_scale.detach())):.4f}"
                    )

    checkpoint_path = out_dir / CHECKPOINT_NAME
    state = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_name": config.model_name,
        "train_config": asdict(config),
        "steps": step,
        "losses": losses,
        "init_checkpoint": init_checkpoint,
    }
    runtime.atomic_torch_save(state, checkpoint_path)
    plot = save_loss_plot(
        losses,
        out_dir / LOSS_PLOT_NAME,
        f"{config.model_name}: {step} steps, batch {config.batch_size}",
    )
    seconds = time.perf_counter() - t0
    say(f"done: {step} steps in {seconds:.1f}s, final loss {losses[-1]:.4f} -> {checkpoint_path}")
    return TrainResult(
        checkpoint_path=checkpoint_path,
        losses=losses,
        steps=step,
        seconds=seconds,
        loss_plot_path=plot,
        lrs=lrs,
    )
