"""The `offline` captioner: a small word-level GRU decoder conditioned on an image embedding.

Used when no captioning model is configured (paper §3.2 uses OFA-base). It is trained from the
corpus itself, like the bootstrap encoder: each image's embedding (from the home's encoder, so
the caption depends on the pixels) is projected to the decoder's initial state and fed at every
step, and the decoder learns, by teacher forcing, to write a sentence found next to that image
in its document (re-selected with the encoder: the nearby sentence most similar to the image).
Captions are decoded greedily, so the same vector always gets the same caption.

Saved as a tensors-and-plain-containers checkpoint (read with ``torch.load(weights_only=True)``);
the model identity is the SHA-256 of those bytes.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from realsyn_assets.core.embedding.bootstrap.pairs import mine_pairs, reselect_pairs
from realsyn_assets.core.embedding.runtime import load_checkpoint, torch_threads
from realsyn_assets.core.io import atomic_write_bytes

OFFLINE_CAPTIONER_FILE = "offline_captioner.pt"
BACKEND = "offline"
MODEL_PREFIX = "realsyn-offline-captioner@"
FORMAT_VERSION = 1
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
# Words (letters, digits, apostrophes, hyphenated compounds) and the punctuation kept as tokens.
_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*|[.,;:!?]")


@dataclass(frozen=True)
class CaptionerHyper:
    """Training settings; defaults measured on the demo corpus (docs/captioner.md)."""

    vocab_size: int = 4000  # most frequent training words kept; the rest become <unk>
    max_words: int = 24  # training sentences are cut to this many tokens; also the decode cap
    embed_dim: int = 96
    hidden_dim: int = 256
    epochs: int = 16
    # Small corpora get more epochs, up to this many optimiser steps in all: on 48 demo
    # documents (~500 pairs) 16 epochs are 128 steps and leave the decoder undertrained.
    min_steps: int = 600
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-4
    vector_noise: float = 0.05  # Gaussian noise on the (unit) image vectors while training
    dropout: float = 0.1
    num_threads: int = 1  # one thread: fast on small models and bit-for-bit reproducible


@dataclass
class TrainLog:
    """What a training run measured (recorded as asset metadata)."""

    pairs: int = 0
    vocab_size: int = 0
    epochs: int = 0
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    losses: list[float] = field(default_factory=list)


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of a sentence."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens back to a sentence: punctuation attached, first letter upper-case."""
    text = ""
    for token in tokens:
        text += token if (token in ".,;:!?" or not text) else " " + token
    return text[:1].upper() + text[1:]


def build_vocabulary(texts: Sequence[str], size: int) -> list[str]:
    """The special tokens, then the ``size`` most frequent tokens (ties in alphabetical order,
    so the vocabulary is the same whatever the order of ``texts``)."""
    counts = Counter(t for text in texts for t in tokenize(text))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return [*SPECIALS, *(word for word, _ in ranked)]


def _decoder_class():
    import torch
    from torch import nn

    class Decoder(nn.Module):
        """GRU over word embeddings; the image vector is the initial state and a per-step input."""

        def __init__(self, vector_dim: int, vocab: int, embed: int, hidden: int, dropout: float):
            super().__init__()
            self.project = nn.Sequential(nn.Linear(vector_dim, hidden), nn.Tanh())
            self.embed = nn.Embedding(vocab, embed)
            self.gru = nn.GRU(embed + hidden, hidden, batch_first=True)
            self.drop = nn.Dropout(dropout)
            self.out = nn.Linear(hidden, vocab)

        def start(self, vectors):
            image = self.project(vectors)
            return image, image.unsqueeze(0).contiguous()

        def step(self, image, tokens, state):
            """Logits for the token after ``tokens`` (B, T) and the new state."""
            steps = image.unsqueeze(1).expand(-1, tokens.shape[1], -1)
            inputs = torch.cat([self.drop(self.embed(tokens)), steps], dim=-1)
            output, state = self.gru(inputs, state)
            return self.out(self.drop(output)), state

        def forward(self, vectors, tokens):
            image, state = self.start(vectors)
            return self.step(image, tokens, state)[0]

    return Decoder


class OfflineCaptioner:
    """A trained decoder with its vocabulary: `caption` maps image embeddings to sentences."""

    backend = BACKEND

    def __init__(self, state: dict[str, Any], meta: dict[str, Any]):
        import torch

        self._state = state
        self.meta = meta
        self.vocab: list[str] = list(meta["vocab"])
        self._index = {w: i for i, w in enumerate(self.vocab)}
        decoder = _decoder_class()(
            int(meta["vector_dim"]),
            len(self.vocab),
            int(meta["embed_dim"]),
            int(meta["hidden_dim"]),
            0.0,
        )
        decoder.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        self._decoder = decoder.eval()
        self._bytes = _checkpoint_bytes(state, meta)
        self.model = MODEL_PREFIX + hashlib.sha256(self._bytes).hexdigest()[:12]

    @property
    def vector_dim(self) -> int:
        return int(self.meta["vector_dim"])

    @property
    def max_words(self) -> int:
        return int(self.meta["max_words"])

    def to_bytes(self) -> bytes:
        """The checkpoint's bytes (the same model always gives the same bytes)."""
        return self._bytes

    def save(self, path: Path | str) -> Path:
        """Write the checkpoint atomically; `load_offline_captioner` reads it back."""
        atomic_write_bytes(path, self._bytes)
        return Path(path)

    def caption(self, items: Sequence[Any]) -> list[str]:
        """One caption per item, from ``item.vector`` (its image embedding, unit norm).

        Raises ValueError for an item without a vector or with a vector of another width:
        the offline captioner sees the image only through the encoder that it was trained on.
        """
        vectors = []
        for item in items:
            vector = getattr(item, "vector", None)
            if vector is None:
                raise ValueError(
                    f"the offline captioner needs the image's embedding: no vector for "
                    f"{getattr(item, 'image_path', item)}"
                )
            vectors.append(np.asarray(vector, dtype=np.float32).reshape(-1))
        return self.caption_vectors(np.stack(vectors) if vectors else np.zeros((0, 0)))

    def caption_vectors(self, vectors: np.ndarray, batch_size: int = 256) -> list[str]:
        """Greedy captions of a (n, d) matrix of image embeddings."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return []
        if vectors.ndim != 2 or vectors.shape[1] != self.vector_dim:
            raise ValueError(
                f"image vectors of shape {vectors.shape}; this captioner was trained on "
                f"{self.vector_dim}-d vectors (re-train it after changing the encoder)"
            )
        captions: list[str] = []
        with torch_threads(1):
            for start in range(0, len(vectors), batch_size):
                captions.extend(self._greedy(_unit(vectors[start : start + batch_size])))
        return captions

    def _greedy(self, vectors: np.ndarray) -> list[str]:
        import torch

        bos, eos = self._index[BOS], self._index[EOS]
        banned = [self._index[PAD], self._index[BOS], self._index[UNK]]
        with torch.no_grad():
            image, state = self._decoder.start(torch.from_numpy(vectors))
            token = torch.full((len(vectors), 1), bos, dtype=torch.long)
            words = []
            for _ in range(self.max_words):
                logits, state = self._decoder.step(image, token, state)
                logits = logits[:, -1]
                logits[:, banned] = -math.inf
                token = logits.argmax(dim=-1, keepdim=True)
                words.append(token[:, 0])
        grid = torch.stack(words, dim=1).tolist()
        out = []
        for row in grid:
            tokens = row[: row.index(eos)] if eos in row else row
            out.append(detokenize([self.vocab[t] for t in tokens]))
        return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _checkpoint_bytes(state: dict[str, Any], meta: dict[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, "meta": meta, "state": state}, buffer)
    return buffer.getvalue()


def load_offline_captioner(path: Path | str) -> OfflineCaptioner:
    """A captioner saved by `OfflineCaptioner.save` (no pickled code runs); ``path`` is the file
    or the folder holding `OFFLINE_CAPTIONER_FILE`."""
    path = Path(path)
    if path.is_dir():
        path = path / OFFLINE_CAPTIONER_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no offline captioner at {path}: materialize image_captioner (offline backend) first"
        )
    blob = load_checkpoint(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not an offline captioner checkpoint (format {FORMAT_VERSION})")
    return OfflineCaptioner(dict(blob["state"]), dict(blob["meta"]))


def encode_texts(texts: Sequence[str], vocab: Sequence[str], max_words: int) -> np.ndarray:
    """(n, max_words + 2) token ids: <bos>, the sentence's first `max_words` tokens, <eos>,
    then <pad>."""
    index = {w: i for i, w in enumerate(vocab)}
    unk, pad = index[UNK], index[PAD]
    rows = np.full((len(texts), max_words + 2), pad, dtype=np.int64)
    for r, text in enumerate(texts):
        ids = [index.get(t, unk) for t in tokenize(text)[:max_words]]
        rows[r, : len(ids) + 2] = [index[BOS], *ids, index[EOS]]
    return rows


def train_offline_captioner(
    image_vecs: np.ndarray,
    texts: Sequence[str],
    *,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    train_log: TrainLog | None = None,
    **hyper: Any,
) -> OfflineCaptioner:
    """Train a captioner on (image embedding, sentence) pairs: row i of ``image_vecs`` with
    ``texts[i]``. Same inputs and seed -> the same model bytes. ``hyper`` overrides
    `CaptionerHyper` fields; ``train_log`` (if given) receives the loss curve."""
    import torch

    h = CaptionerHyper(**hyper)
    vectors = _unit(np.asarray(image_vecs, dtype=np.float32))
    if len(vectors) != len(texts) or len(texts) == 0:
        raise ValueError(f"{len(vectors)} image vectors for {len(texts)} texts: need n > 0 of each")
    vocab = build_vocabulary(texts, h.vocab_size)
    tokens = torch.from_numpy(encode_texts(texts, vocab, h.max_words))
    vecs = torch.from_numpy(vectors)
    meta = {
        "vocab": vocab,
        "vector_dim": int(vectors.shape[1]),
        "embed_dim": h.embed_dim,
        "hidden_dim": h.hidden_dim,
        "max_words": h.max_words,
        "seed": int(seed),
        "pairs": len(texts),
    }
    record = train_log if train_log is not None else TrainLog()
    record.pairs, record.vocab_size = len(texts), len(vocab)
    with torch_threads(h.num_threads):
        torch.manual_seed(seed)
        decoder = _decoder_class()(
            meta["vector_dim"], len(vocab), h.embed_dim, h.hidden_dim, h.dropout
        )
        _fit(decoder, vecs, tokens, h, seed, record, log)
    state = {k: v.detach().clone() for k, v in decoder.state_dict().items()}
    return OfflineCaptioner(state, meta)


def _fit(decoder, vecs, tokens, h: CaptionerHyper, seed: int, record: TrainLog, log) -> None:
    """Teacher forcing with AdamW and a one-cycle schedule; mean loss per epoch into `record`."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(vecs) / h.batch_size)
    epochs = h.epochs and max(h.epochs, math.ceil(h.min_steps / steps_per_epoch))
    record.epochs = epochs
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=h.lr, weight_decay=h.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=h.lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)  # 0 = <pad>
    decoder.train()
    for epoch in range(epochs):
        order = torch.randperm(len(vecs), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(vecs), h.batch_size):
            batch = order[start : start + h.batch_size]
            v = vecs[batch]
            if h.vector_noise:
                v = v + h.vector_noise * torch.randn(v.shape, generator=generator)
            t = tokens[batch]
            logits = decoder(v, t[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total, count = total + loss.item() * len(batch), count + len(batch)
        record.losses.append(total / count)
        if log is not None and (epoch == 0 or (epoch + 1) % 10 == 0 or epoch + 1 == epochs):
            log(f"captioner epoch {epoch + 1}/{epochs}: loss {record.losses[-1]:.3f}")
    decoder.eval()
    if record.losses:
        record.loss_first, record.loss_last = record.losses[0], record.losses[-1]


class _StoredVectors:
    """The encoder interface of `reselect_pairs`, answered from vectors already computed (the
    `images` and `sentences` tables): no image is decoded and no sentence re-encoded."""

    def __init__(self, image_paths, image_vecs, texts, text_vecs):
        self._images = dict(zip(image_paths, np.asarray(image_vecs), strict=True))
        self._texts = dict(zip(texts, np.asarray(text_vecs), strict=True))

    def encode_images(self, paths: Sequence[str]) -> np.ndarray:
        return np.stack([self._images[p] for p in paths])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._texts[t] for t in texts])


def caption_pairs(
    items: pa.Table,
    images: pa.Table,
    image_vecs: np.ndarray,
    sentences: pa.Table,
    sentence_vecs: np.ndarray,
    *,
    window: int = 1,
    keep: int = 1,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Training pairs (image vectors, sentences, image ids) from what a home holds.

    Each image's candidate sentences are those of its `window` nearest text blocks in its
    document (`mine_pairs`, as the bootstrap encoder mines them); the `keep` candidates most
    similar to the image under the home's encoder are kept (`reselect_pairs`), one pair each.
    items: (doc_id, position, kind); images: (image_id, doc_id, position, path) with its
    vectors; sentences: (doc_id, position, text) with its vectors.
    """
    samples = mine_pairs(items, images, sentences, window=window)
    paths = images.column("path").to_pylist()
    lookup = _StoredVectors(paths, image_vecs, sentences.column("text").to_pylist(), sentence_vecs)
    chosen = reselect_pairs(lookup, samples, keep=keep)
    id_of = dict(zip(paths, images.column("image_id").to_pylist(), strict=True))
    vecs, texts, ids = [], [], []
    for sample in chosen:
        for text in sample.texts:
            vecs.append(lookup.encode_images([sample.image_path])[0])
            texts.append(text)
            ids.append(id_of[sample.image_path])
    width = np.asarray(image_vecs).shape[1] if len(image_vecs) else 0
    matrix = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, width), np.float32)
    return matrix, texts, ids


def text_pairs(
    sentences: pa.Table, sentence_vecs: np.ndarray, limit: int, seed: int
) -> tuple[np.ndarray, list[str]]:
    """(sentence embedding, sentence) pairs: at most ``limit`` distinct sentences, a random
    subset in table order (0 = none).

    Why: image and sentence embeddings share one space, so a decoder that learns to write a
    sentence from its own embedding also learns the words for what an image vector encodes; on
    the demo corpus this lifts captions of unseen images from ~0.45 to ~0.75 naming colour and
    shape (docs/captioner.md). The Gaussian noise added to every training vector bridges part
    of the gap between the two modalities.
    """
    texts = sentences.column("text").to_pylist()
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        first.setdefault(text, i)
    rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    if limit <= 0 or len(rows) == 0:
        width = np.asarray(sentence_vecs).shape[1] if len(sentence_vecs) else 0
        return np.zeros((0, width), np.float32), []
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    return np.asarray(sentence_vecs, dtype=np.float32)[rows], [texts[i] for i in rows]


def caption_sample(image_ids: Sequence[str], n: int) -> tuple[list[str], np.ndarray]:
    """(ids, row indices) of at most ``n`` images spread evenly over the table, first one
    included: the same images for the same table."""
    total = len(image_ids)
    if total == 0 or n <= 0:
        return [], np.zeros(0, dtype=np.int64)
    rows = np.unique(np.linspace(0, total - 1, num=min(n, total)).round().astype(np.int64))
    return [image_ids[i] for i in rows], rows


def distinct_share(captions: Sequence[str]) -> float:
    """Distinct captions per caption (1.0: all differ; 1/n: one caption for everything)."""
    return len(set(captions)) / len(captions) if captions else 0.0


def noise_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` random unit vectors: what a captioner that ignores the pixels cannot tell apart
    from images."""
    return _unit(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))
