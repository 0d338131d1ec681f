"""The bootstrap trainer: a small CLIP trained in memory on (image, candidate sentences) pairs.

An image's nearby sentences are candidates, not labels: most of them do not describe it. The
loss (:func:`mil_nce_loss`) treats all of an image's candidates as one positive, so the model may
put its mass on whichever candidate really describes the image.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realsyn_assets.core.embedding.configs import register_model_configs
from realsyn_assets.core.embedding.encoder import (
    encode_text_trimmed,
    is_pretrained_text_tower,
    pretrained_tower_pooled,
)
from realsyn_assets.core.embedding.images import load_rgb
from realsyn_assets.core.embedding.runtime import (
    ENCODER_DEVICE_FIELD,
    atomic_torch_save,
    quiet_transformers,
    resolve_device,
    torch_threads,
)
from realsyn_assets.core.training.clip import (
    CHECKPOINT_NAME,
    MAX_LOGIT_SCALE,
    TrainConfig,
    TrainSample,
    build_optimizer,
    build_scheduler,
)

if TYPE_CHECKING:
    import torch


OBJECTIVES = ("mil", "sample")


def mil_nce_loss(logits: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """Symmetric multiple-instance InfoNCE over a batch of images x candidate texts.

    logits (B, U) = scale * cosine; member (B, U) bool, True where text u is one of image i's
    candidates. Image -> text: the candidates together are the positive (MIL-NCE, Miech et al.
    2020), so the model may put its mass on whichever candidate really describes the image
    instead of being pulled towards every nearby sentence. Text -> image: each text's loss is
    weighted by how much its own image currently prefers it (detached), so a caption-less
    paragraph next to an image is not forced onto that image. With one candidate per image this
    is CLIP's loss.
    """
    import torch

    floor = torch.finfo(logits.dtype).min
    positive = logits.masked_fill(~member, floor)
    i2t = torch.logsumexp(logits, dim=1) - torch.logsumexp(positive, dim=1)
    t2i = torch.logsumexp(logits, dim=0) - torch.logsumexp(positive, dim=0)
    with torch.no_grad():
        share = torch.softmax(positive, dim=1).masked_fill(~member, 0.0).amax(dim=0)
    return 0.5 * (i2t.mean() + (share * t2i).sum() / share.sum().clamp_min(1e-6))


AUGMENTATIONS = ("none", "flip_shift", "dihedral_shift")


def _augment(
    images: torch.Tensor, generator: torch.Generator, mode: str = "flip_shift", shift: int = 4
) -> torch.Tensor:
    """Random horizontal flip (and with "dihedral_shift" a quarter turn), then a shift of up to
    ``shift`` px (reflect padding).

    No colour or scale change: colour and size are what the texts talk about.
    """
    import torch
    import torch.nn.functional as F

    if mode == "none":
        return images
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if mode == "dihedral_shift" and h == w:
        turns = torch.randint(0, 4, (n,), generator=generator)
        images = torch.stack(
            [torch.rot90(x, int(k), dims=(-2, -1)) for x, k in zip(images, turns, strict=True)]
        )
    if shift <= 0:
        return images
    padded = F.pad(images, (shift, shift, shift, shift), mode="reflect")
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator).tolist()
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, y : y + h, x : x + w] for i, (x, y) in enumerate(zip(dx, dy, strict=True))]
    )


class BootstrapTrainer:
    """A small CLIP trained in memory on (image, candidate texts), round after round.

    Why not :func:`train_clip`: bootstrap rounds revisit the same few hundred images dozens of
    times, so decoding JPEGs every step dominated the run. Here every image is decoded once with
    the encoder's own inference transform (so training and embedding see the same pixels),
    augmented cheaply as tensors, and texts are tokenised once. The model stays in memory across
    rounds; :meth:`save` writes a checkpoint the :class:`~realsyn_assets.core.embedding.encoder.Encoder`
    loads.
    """

    def __init__(
        self,
        image_paths: Sequence[str],
        config: TrainConfig,
        init_checkpoint: str | None = None,
        augment: str = "flip_shift",
    ):
        import open_clip
        import torch

        register_model_configs(config.model_name)
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment {augment!r} not in {AUGMENTATIONS}")
        self.augment = augment
        self.config = config
        self.device = resolve_device(config.device, ENCODER_DEVICE_FIELD)
        with self._threads():
            torch.manual_seed(config.seed)
            with quiet_transformers():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    config.model_name,
                    pretrained=init_checkpoint,
                    init_logit_scale=math.log(1.0 / config.temperature_init),
                )
            self.model = model.to(self.device)
            self.tokenizer = open_clip.get_tokenizer(config.model_name)
            self.paths = [str(p) for p in image_paths]
            self.row = {p: i for i, p in enumerate(self.paths)}
            self.images = torch.stack([preprocess(load_rgb(p)) for p in self.paths])
        self.generator = torch.Generator().manual_seed(config.seed)
        self._tokens: dict[str, torch.Tensor] = {}
        # A pretrained (Hugging Face) text tower stays frozen and only its projection learns:
        # it already knows that "crimson" is red and a "disc" is round, which a few hundred
        # pictures cannot teach. Its pooled features are then computed once per sentence.
        self.frozen_text = is_pretrained_text_tower(self.model)
        if self.frozen_text:
            self.model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
        self._pooled: dict[str, torch.Tensor] = {}

    def _threads(self):
        return torch_threads(self.config.num_threads)

    def _token_rows(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        missing = [t for t in dict.fromkeys(texts) if t not in self._tokens]
        if missing:
            for text, row in zip(missing, self.tokenizer(missing), strict=True):
                self._tokens[text] = row
        return torch.stack([self._tokens[t] for t in texts])

    def _pooled_rows(self, texts: Sequence[str]) -> torch.Tensor:
        """Frozen text tower: pooled features per text, computed once (padding trimmed)."""
        import torch

        text = self.model.text
        missing = [t for t in dict.fromkeys(texts) if t not in self._pooled]
        # no_grad, not inference_mode: the cached rows feed the projection while it trains
        with torch.no_grad():
            was_training = text.transformer.training
            text.transformer.eval()
            for s in range(0, len(missing), 256):
                chunk = missing[s : s + 256]
                pooled = pretrained_tower_pooled(text, self._token_rows(chunk).to(self.device))
                for t, row in zip(chunk, pooled.cpu(), strict=True):
                    self._pooled[t] = row.clone()
            text.transformer.train(was_training)
        return torch.stack([self._pooled[t] for t in texts])

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised text embeddings, differentiable in what is being trained."""
        if self.frozen_text:
            return self.model.text.proj(self._pooled_rows(texts).to(self.device))
        return encode_text_trimmed(self.model, self._token_rows(texts).to(self.device))

    def fit(
        self,
        samples: Sequence[TrainSample],
        epochs: int,
        objective: str = "mil",
        lr: float | None = None,
        augment: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> list[float]:
        """One round: fresh AdamW + OneCycle (the paper's recipe) over ``epochs``; per-step losses.

        objective "mil": every candidate of an image in the batch, :func:`mil_nce_loss`;
        "sample": one candidate drawn per image and step (LaCLIP-style, as in train_clip).
        """
        import torch

        if objective not in OBJECTIVES:
            raise ValueError(f"objective {objective!r} not in {OBJECTIVES}")
        say = log or (lambda _msg: None)
        rows = [self.row[s.image_path] for s in samples if s.texts]
        texts = [list(s.texts) for s in samples if s.texts]
        bs = min(self.config.batch_size, len(rows))
        if bs < 2:
            raise ValueError(f"need >= 2 samples with texts to train, got {len(rows)}")
        per_epoch = len(rows) // bs  # drop the ragged last batch: small batches are weak negatives
        total = epochs * per_epoch
        if self.config.max_steps:
            total = min(total, self.config.max_steps)
        config = dataclasses.replace(self.config, lr=lr or self.config.lr)
        losses: list[float] = []
        if total < 1:
            return losses
        with self._threads():
            self.model.train()
            optimizer = build_optimizer(self.model, config)
            scheduler = build_scheduler(optimizer, config, total)
            for step in range(total):
                if step % per_epoch == 0:
                    order = torch.randperm(len(rows), generator=self.generator).tolist()
                batch = order[(step % per_epoch) * bs : (step % per_epoch + 1) * bs]
                if objective == "sample":
                    picks = torch.randint(0, 1 << 30, (len(batch),), generator=self.generator)
                    chosen = [
                        [texts[b][int(p) % len(texts[b])]]
                        for b, p in zip(batch, picks.tolist(), strict=True)
                    ]
                else:
                    chosen = [texts[b] for b in batch]
                unique = list(dict.fromkeys(t for group in chosen for t in group))
                col = {t: j for j, t in enumerate(unique)}
                member = torch.zeros(len(batch), len(unique), dtype=torch.bool)
                for i, group in enumerate(chosen):
                    member[i, [col[t] for t in group]] = True
                images = self.images[[rows[b] for b in batch]]
                if augment:
                    images = _augment(images, self.generator, self.augment)
                img = torch.nn.functional.normalize(
                    self.model.encode_image(images.to(self.device)), dim=-1
                )
                txt = torch.nn.functional.normalize(self._text_features(unique), dim=-1)
                logits = self.model.logit_scale.exp() * img @ txt.T
                loss = mil_nce_loss(logits, member.to(self.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                losses.append(float(loss.detach()))
                if step == 0 or step + 1 == total or (step + 1) % config.log_every == 0:
                    say(f"step {step + 1}/{total} loss {losses[-1]:.4f}")
        self.model.eval()
        return losses

    def encode_images(self, paths: Sequence[str]) -> np.ndarray:
        """L2-normalised vectors of cached images (same transform as the Encoder)."""
        import torch

        rows = [self.row[str(p)] for p in paths]
        out = []
        with self._threads(), torch.inference_mode():
            self.model.eval()
            for s in range(0, len(rows), 256):
                batch = self.images[rows[s : s + 256]].to(self.device)
                out.append(torch.nn.functional.normalize(self.model.encode_image(batch), dim=-1))
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, 1), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text vectors (equal to the Encoder's up to float rounding)."""
        import torch

        out = []
        with self._threads(), torch.inference_mode():
            self.model.eval()
            for s in range(0, len(texts), 512):
                feats = self._text_features(list(texts[s : s + 512]))
                out.append(torch.nn.functional.normalize(feats, dim=-1))
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, 1), np.float32)

    def save(self, out_dir: Path | str, losses: Sequence[float] = ()) -> Path:
        """checkpoint.pt in train_clip's format (loads with Encoder(checkpoint=...))."""
        path = Path(out_dir) / CHECKPOINT_NAME
        state = {
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_name": self.config.model_name,
            "train_config": dataclasses.asdict(self.config),
            "steps": len(losses),
            "losses": list(losses),
        }
        atomic_torch_save(state, path)
        return path
