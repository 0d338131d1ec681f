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

Resumable (core/training/checkpoints.py): each epoch's order is a permutation drawn from (seed,
epoch), and each item's caption and crop from (seed, epoch, index), so a run killed at any step
continues from its last resume file to the same weights an uninterrupted run reaches. Runs
data-parallel under torchrun (core/training/distributed.py, launch.py, worker.py).
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
from realsyn_assets.core.io import ensure_free_space
from realsyn_assets.core.training import checkpoints
from realsyn_assets.core.training.distributed import SINGLE, DistContext, usable_batch
from realsyn_assets.core.training.plots import save_loss_plot

if TYPE_CHECKING:
    import torch

CHECKPOINT_NAME = "checkpoint.pt"
LOSS_PLOT_NAME = "loss.png"
MAX_LOGIT_SCALE = math.log(100.0)
# A run "lowered the loss" when its loss relative to chance fell by at least this fraction;
# a run that learns nothing (lr 0) moves it by about +-2% of noise.
MIN_LOSS_DROP = 0.03
# Fewer steps than this are too few to tell learning from noise: missing the drop only warns.
MIN_JUDGED_STEPS = 30
# The columns of a balanced subset a sample's captions are drawn from: 3 realistic + 1 synthetic.
TEXT_COLUMNS = ("text1", "text2", "text3", "syn_text")
# The asset's precision choices -> the autocast dtype names of `runtime.autocast_context`.
PRECISIONS = {"fp32": "fp32", "amp_bf16": "bf16", "amp_fp16": "fp16"}


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
    # the caption columns each step draws from (uniformly among a row's non-empty ones)
    text_columns: tuple[str, ...] = TEXT_COLUMNS
    checkpoint_every_steps: int = 0  # write the resume file every N steps (0: only at the end)


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
    batch_sizes: list[int] = field(default_factory=list)  # global batch size of each step
    resumed_from_step: int = 0  # the step a resumed run continued from (0: a fresh run)
    processes: int = 1  # data-parallel training processes


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


def samples_from_rows(
    rows: Sequence[Mapping], text_columns: Sequence[str] = TEXT_COLUMNS
) -> list[TrainSample]:
    """Training samples from balanced-subset rows (`image_path` + `text_columns`).

    Empty or missing texts are left out of a sample's captions; rows with none are dropped. The
    paper's ablations train on subsets of the columns (e.g. only ``syn_text``).
    """
    samples = [
        TrainSample(image_path=r["image_path"], texts=[r[c] for c in text_columns if r.get(c)])
        for r in rows
    ]
    return [s for s in samples if s.texts]


def loss_first_last(losses: Sequence[float]) -> tuple[float, float]:
    """Mean loss over the first and over the last tenth of the steps (at least one step each),
    a noise-robust way to say whether training lowered the loss."""
    values = np.asarray(losses, dtype=np.float64)
    tenth = max(1, len(values) // 10)
    return float(values[:tenth].mean()), float(values[-tenth:].mean())


def loss_drop(losses: Sequence[float], batch_sizes: Sequence[int]) -> float:
    """How much training lowered the loss relative to chance: 1 - last/first of the tenth-means
    of loss / ln(batch size). InfoNCE of an untrained model sits near ln(batch size), so this
    stays near 0 for a run that learns nothing, whatever its batch sizes (the last batch of an
    epoch is often smaller, with a lower loss that is not learning)."""
    if not losses:
        return float("nan")
    chance = np.log(np.maximum(np.asarray(batch_sizes, dtype=np.float64), 2.0))
    first, last = loss_first_last(np.asarray(losses, dtype=np.float64) / chance)
    return 1.0 - last / first


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


def steps_per_epoch(n_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per epoch with drop_last=False, not counting a final batch too small to use
    (size 1; across processes, one with fewer samples than processes)."""
    full, rest = divmod(n_samples, batch_size)
    return full * bool(usable_batch(batch_size, world_size)) + bool(usable_batch(rest, world_size))


def epoch_order(n_samples: int, seed: int, epoch: int) -> list[int]:
    """The sample order of `epoch`: the permutation that ``DataLoader(shuffle=True,
    generator=torch.Generator().manual_seed(seed))`` yields in its epoch-th pass (each pass
    draws the loader's base seed, the sampler's permutation and the permutation of its empty
    remainder from that generator), replayed from the seed so it needs no saved state. Costs
    2 * epoch + 1 permutations of n_samples: minutes over a whole paper-scale run."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for _ in range(epoch):
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # the base seed
        torch.randperm(n_samples, generator=generator)  # the pass's order
        torch.randperm(n_samples, generator=generator)  # RandomSampler's empty remainder
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return torch.randperm(n_samples, generator=generator).tolist()


def epoch_batches(
    n_samples: int, batch_size: int, seed: int, epoch: int, world_size: int = 1
) -> list[list[int]]:
    """The global batches of one epoch: `epoch_order` cut into batches,
    each trimmed to `usable_batch` (unusable ones dropped). A pure function, so a resumed run
    finds its place from the step alone."""
    order = epoch_order(n_samples, seed, epoch)
    batches = []
    for start in range(0, n_samples, batch_size):
        chunk = order[start : start + batch_size]
        used = usable_batch(len(chunk), world_size)
        if used:
            batches.append(chunk[:used])
    return batches


def _clean_samples(samples: Sequence[TrainSample]) -> list[TrainSample]:
    out = []
    for s in samples:
        texts = [t for t in s.texts if isinstance(t, str) and t.strip()]
        if texts:
            out.append(TrainSample(image_path=str(s.image_path), texts=texts))
    return out


def _plan(samples, config: TrainConfig, world_size: int, say) -> tuple[list[TrainSample], int, int]:
    """(usable samples, steps per epoch, total steps), or ValueError when nothing can train."""
    clean = _clean_samples(samples)
    if len(clean) < len(samples):
        say(f"skipped {len(samples) - len(clean)} samples without any non-empty text")
    per_epoch = steps_per_epoch(len(clean), config.batch_size, world_size)
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    if total < 1:
        raise ValueError(
            f"nothing to train: {len(clean)} usable samples, batch_size {config.batch_size}, "
            f"epochs {config.epochs}, max_steps {config.max_steps} "
            f"(need >= {max(2, world_size)} samples per step)"
        )
    return clean, per_epoch, total


def _loader(dataset: _TrainDataset, batches: list[list[int]], config: TrainConfig, dist, pin: bool):
    """A DataLoader over this rank's share of each of `batches` (every world_size-th sample);
    `pin`: page-locked batches, so copies to the GPU run asynchronously."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=[b[dist.rank :: dist.world_size] for b in batches],
        num_workers=max(0, config.num_workers),
        collate_fn=_collate_train,
        worker_init_fn=worker_init_single_thread if config.num_workers > 0 else None,
        pin_memory=pin,
    )


def _loss_fn(dist: DistContext):
    """InfoNCE over the global batch: across processes every rank gathers all features."""
    import open_clip

    if not dist.distributed:
        return open_clip.ClipLoss()
    return open_clip.ClipLoss(
        gather_with_grad=True, cache_labels=True, rank=dist.rank, world_size=dist.world_size
    )


def train_clip(
    samples: Sequence[TrainSample],
    config: TrainConfig,
    out_dir: Path | str,
    init_checkpoint: str | None = None,
    log: Callable[[str], None] | None = None,
    dist: DistContext = SINGLE,
) -> TrainResult:
    """Train CLIP on (image, texts) samples; write ``checkpoint.pt`` and ``loss.png`` in out_dir.

    Fresh runs start from the same seeded random init that ``ensure_local_weights`` would write
    for this seed. Deterministic for a seed on CPU (any ``num_workers``); resumes from
    ``resume.pt`` in out_dir when it holds a compatible partial run. Under torchrun (`dist`),
    only rank 0 logs and writes. The checkpoint loads with
    ``Encoder(EncoderSpec(model_name=..., checkpoint=...))``.
    """
    t0 = time.perf_counter()
    say = (log or (lambda _msg: None)) if dist.is_main else (lambda _msg: None)
    out_dir = Path(out_dir)
    clean, per_epoch, total = _plan(samples, config, dist.world_size, say)

    register_model_configs(config.model_name)
    import open_clip
    import torch

    device = runtime.resolve_device(config.device, runtime.ENCODER_DEVICE_FIELD)
    if config.precision != "fp32" and not device.startswith("cuda"):
        say(f"precision {config.precision} needs CUDA: training in fp32 on {device}")
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
        # A full disk fails now, not after the training that the checkpoint would have kept:
        # room for checkpoint.pt plus resume.pt (weights and AdamW's two moments).
        ensure_free_space(out_dir / CHECKPOINT_NAME, 4 * runtime.checkpoint_bytes(model))
        tokenizer = open_clip.get_tokenizer(config.model_name)
        optimizer = build_optimizer(model, config)
        scheduler = build_scheduler(optimizer, config, total)
        scaler = torch.amp.GradScaler(
            "cuda", enabled=device.startswith("cuda") and config.precision == "fp16"
        )
        parts = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        run_id = checkpoints.fingerprint(config, clean, init_checkpoint)
        resume_path = out_dir / checkpoints.RESUME_NAME
        state = checkpoints.load_resume(resume_path, run_id, say)
        losses: list[float] = list(state["losses"]) if state else []
        lrs: list[float] = list(state["lrs"]) if state else []
        sizes: list[int] = list(state["batch_sizes"]) if state else []
        step = min(int(state["step"]), total) if state else 0
        resumed_from_step = step
        if state:
            checkpoints.restore(state, device=device, **parts)
        net = model
        if dist.distributed:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[torch.device(device).index] if fork_devices else None
            )
        loss_fn = _loss_fn(dist)
        dataset = _TrainDataset(clean, preprocess_train, tokenizer, config.seed)
        say(
            f"training {config.model_name} on {len(clean)} samples: {total} steps "
            f"({per_epoch}/epoch, batch {config.batch_size}) on {device}"
            + (f" x {dist.world_size} processes" if dist.distributed else "")
            + (f", from step {step}" if step else "")
        )

        def save_state() -> None:
            checkpoints.save_resume(
                resume_path,
                step=step,
                losses=losses,
                lrs=lrs,
                batch_sizes=sizes,
                run_fingerprint=run_id,
                device=device,
                **parts,
            )

        for epoch in range(step // per_epoch, config.epochs):
            if step >= total:
                break
            dataset.epoch = epoch  # picked up by workers: they are re-created each epoch
            batches = epoch_batches(
                len(clean), config.batch_size, config.seed, epoch, dist.world_size
            )
            batches = batches[step - epoch * per_epoch :][: total - step]
            loader = _loader(dataset, batches, config, dist, pin=bool(fork_devices))
            for batch, (images, tokens, errors) in zip(batches, loader, strict=True):
                if errors:
                    raise UnreadableImageError(*errors[0])
                lr = optimizer.param_groups[0]["lr"]
                optimizer.zero_grad(set_to_none=True)
                with amp:
                    img_f, txt_f, scale = net(
                        images.to(device, non_blocking=True), tokens.to(device, non_blocking=True)
                    )
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
                sizes.append(len(batch))
                if step == 1 or step == total or step % max(1, config.log_every) == 0:
                    say(
                        f"step {step}/{total} epoch {epoch + 1} loss {losses[-1]:.4f} "
                        f"lr {lr:.2e} temp {math.exp(-float(model.logit_scale.detach())):.4f}"
                    )
                every = config.checkpoint_every_steps
                if dist.is_main and every > 0 and step % every == 0 and step < total:
                    save_state()
                    say(f"checkpoint: step {step}/{total} -> {resume_path.name}")
        if dist.is_main:
            save_state()  # first: a run killed while writing the final checkpoint resumes at the end

    checkpoint_path = out_dir / CHECKPOINT_NAME
    if dist.is_main:
        state = {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "model_name": config.model_name,
            "train_config": asdict(config),
            "steps": step,
            "losses": losses,
            "lrs": lrs,
            "batch_sizes": sizes,
            "init_checkpoint": init_checkpoint,
        }
        runtime.atomic_torch_save(state, checkpoint_path)
        save_loss_plot(
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
        loss_plot_path=out_dir / LOSS_PLOT_NAME,
        lrs=lrs,
        batch_sizes=sizes,
        resumed_from_step=resumed_from_step,
        processes=dist.world_size,
    )
