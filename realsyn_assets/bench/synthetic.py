"""CLIP-like synthetic embeddings for the retrieval benchmark (never isotropic noise).

Why not random unit vectors: in 512 dimensions isotropic vectors are all nearly orthogonal, so
nearest neighbours are arbitrary, k-means clusters are meaningless and any cluster-first search
looks terrible (or, with planted well-separated blobs, trivially perfect). Real CLIP embeddings
sit in between, and the generator reproduces the properties that decide how well cluster-first
retrieval works:

- hierarchy: every item belongs to a domain > topic > sub-topic; each level adds an offset to the
  parent's centre (domains are few and broad, sub-topics hold ~100 sentences — finer than the
  paper's ~420 sentences per k-means cluster, so clusters never line up with planted topics);
- long tails: topic and sub-topic sizes are log-normal (a few huge topics, many small ones);
- anisotropy: offsets and item noise share one power-law spectrum in a random basis
  (variance of the j-th direction ∝ (j + 1) ** -decay), so the data has a low effective
  dimension, as CLIP embeddings do, instead of spreading evenly over 512 dimensions;
- a shared mean direction per modality (the "cone effect": random CLIP texts have a clearly
  positive cosine) and a modality gap (the image mean differs from the text mean);
- images come from the same sub-topics as sentences (sampled by sentence mass), carry the
  sub-topic's centre plus their own, larger noise: near their topic's sentences, never copies.

With the defaults random sentence pairs have cosine ≈ 0.45, random image pairs ≈ 0.45, random
image-sentence pairs ≈ 0.1, and an image's best sentence ≈ 0.45-0.5 — the same ordering as CLIP
ViT-B/32 (texts and images each in a cone, cross-modal cosines much smaller; `stats` measures
them so every benchmark output documents the data it ran on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ClipLikeSpec:
    """Shape of the synthetic corpus; variances are fractions of the non-mean part (sum ≈ 1)."""

    n_sentences: int
    n_images: int
    dim: int = 512
    n_domains: int = 16
    sentences_per_topic: int = 2000
    sentences_per_subtopic: int = 100
    size_sigma: float = 1.0  # log-normal sigma of topic / sub-topic sizes (long tail)
    spectrum_decay: float = 1.0  # power-law exponent of the per-direction variance
    var_domain: float = 0.25
    var_topic: float = 0.2
    var_subtopic: float = 0.2
    var_sentence_noise: float = 0.35
    var_image_noise: float = 0.5
    mean_weight: float = 0.9  # |shared mean|; sets the cone (random-pair cosine)
    modality_cos: float = 0.25  # cosine between the text mean and the image mean (the gap)
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClipLikeData:
    sentences: np.ndarray  # (n_sentences, dim) float32, unit rows
    images: np.ndarray  # (n_images, dim) float32, unit rows
    sentence_subtopic: np.ndarray  # (n_sentences,) int64 planted leaf label
    image_subtopic: np.ndarray  # (n_images,) int64
    n_topics: int
    n_subtopics: int


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _split_sizes(rng: np.random.Generator, total: int, parts: int, sigma: float) -> np.ndarray:
    """`parts` log-normal positive sizes summing to `total` (each >= 1 while total allows)."""
    parts = max(1, min(parts, total)) if total > 0 else 1
    w = rng.lognormal(0.0, sigma, parts)
    raw = w / w.sum() * total
    sizes = np.floor(raw).astype(np.int64)
    short = total - int(sizes.sum())
    if short > 0:  # hand out the rounding remainder to the largest fractional parts
        sizes[np.argsort(raw - sizes)[::-1][:short]] += 1
    return sizes


class _Spectrum:
    """Anisotropic Gaussian in a random basis: draws `n` rows with total variance `var`."""

    def __init__(self, rng: np.random.Generator, dim: int, decay: float):
        lam = (np.arange(dim, dtype=np.float64) + 1.0) ** -float(decay)
        lam /= lam.sum()
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.transform = (np.sqrt(lam)[:, None] * q.T).astype(np.float32)  # (dim, dim)
        self.effective_dim = float(1.0 / np.sum(lam**2))  # participation ratio
        self.dim = dim

    def draw(self, rng: np.random.Generator, n: int, var: float) -> np.ndarray:
        z = rng.standard_normal((n, self.dim), dtype=np.float32)
        out = z @ self.transform
        out *= np.float32(np.sqrt(var))
        return out


def generate(spec: ClipLikeSpec, block: int = 1 << 16) -> ClipLikeData:
    """Deterministic for `spec` (including its seed); memory ≈ the two output matrices."""
    if spec.n_sentences < 1 or spec.n_images < 0 or spec.dim < 2:
        raise ValueError("need n_sentences >= 1, n_images >= 0, dim >= 2")
    rng = np.random.default_rng(spec.seed)
    d = spec.dim
    spectrum = _Spectrum(rng, d, spec.spectrum_decay)

    # Shared means: text mean t, image mean with cosine `modality_cos` to it.
    t = _unit_rows(rng.standard_normal((1, d)))[0]
    o = rng.standard_normal(d)
    o -= o.dot(t) * t
    o /= np.linalg.norm(o)
    mean_text = (spec.mean_weight * t).astype(np.float32)
    c = spec.modality_cos
    mean_image = (spec.mean_weight * (c * t + np.sqrt(1 - c * c) * o)).astype(np.float32)

    # Hierarchy: domains -> topics -> sub-topics, sizes in sentences.
    n = spec.n_sentences
    n_topics = max(1, round(n / spec.sentences_per_topic))
    topic_sizes = _split_sizes(rng, n, n_topics, spec.size_sigma)
    topic_sizes = topic_sizes[topic_sizes > 0]
    n_topics = int(topic_sizes.size)
    n_domains = max(1, min(spec.n_domains, n_topics))
    domain_centre = spectrum.draw(rng, n_domains, spec.var_domain)
    topic_domain = rng.integers(0, n_domains, n_topics)
    topic_centre = domain_centre[topic_domain] + spectrum.draw(rng, n_topics, spec.var_topic)
    sub_sizes_parts, sub_topic = [], []
    for ti, size in enumerate(topic_sizes.tolist()):
        parts = max(1, round(size / spec.sentences_per_subtopic))
        s = _split_sizes(rng, size, parts, spec.size_sigma)
        s = s[s > 0]
        sub_sizes_parts.append(s)
        sub_topic.append(np.full(s.size, ti, dtype=np.int64))
    sub_sizes = np.concatenate(sub_sizes_parts)
    sub_topic_arr = np.concatenate(sub_topic)
    n_sub = int(sub_sizes.size)
    sub_centre = topic_centre[sub_topic_arr] + spectrum.draw(rng, n_sub, spec.var_subtopic)

    # Sentence labels in a random order (so a sentence's index says nothing about its topic).
    s_label = rng.permutation(np.repeat(np.arange(n_sub, dtype=np.int64), sub_sizes))
    i_label = rng.choice(n_sub, size=spec.n_images, p=sub_sizes / sub_sizes.sum())

    def fill(labels: np.ndarray, mean: np.ndarray, noise_var: float) -> np.ndarray:
        out = np.empty((labels.size, d), dtype=np.float32)
        for a in range(0, labels.size, block):
            z = min(a + block, labels.size)
            chunk = spectrum.draw(rng, z - a, noise_var)
            chunk += sub_centre[labels[a:z]]
            chunk += mean
            out[a:z] = _unit_rows(chunk)
        return out

    sentences = fill(s_label, mean_text, spec.var_sentence_noise)
    images = fill(i_label, mean_image, spec.var_image_noise)
    return ClipLikeData(
        sentences=sentences,
        images=images,
        sentence_subtopic=s_label,
        image_subtopic=i_label.astype(np.int64),
        n_topics=n_topics,
        n_subtopics=n_sub,
    )


def stats(data: ClipLikeData, top1: np.ndarray | None = None, pairs: int = 20_000) -> dict:
    """Cosine statistics that document how CLIP-like the data is (random pairs, seed 0)."""
    rng = np.random.default_rng(0)
    s, im = data.sentences, data.images

    def mean_cos(a: np.ndarray, b: np.ndarray) -> float:
        if a.shape[0] == 0 or b.shape[0] == 0:
            return float("nan")
        i = rng.integers(0, a.shape[0], pairs)
        j = rng.integers(0, b.shape[0], pairs)
        return float(np.einsum("ij,ij->i", a[i], b[j]).mean())

    sample = s[rng.integers(0, s.shape[0], min(s.shape[0], 20_000))].astype(np.float64)
    eig = np.clip(np.linalg.eigvalsh(np.cov(sample, rowvar=False)), 0, None)
    out = {
        "topics": data.n_topics,
        "subtopics": data.n_subtopics,
        "cos_sentence_sentence": round(mean_cos(s, s), 4),
        "cos_image_image": round(mean_cos(im, im), 4),
        "cos_image_sentence": round(mean_cos(im, s), 4),
        "effective_dim": round(float(eig.sum() ** 2 / max(np.sum(eig**2), 1e-30)), 1),
    }
    if top1 is not None and top1.size:
        out["cos_image_best_sentence"] = round(float(np.mean(top1)), 4)
    return out
