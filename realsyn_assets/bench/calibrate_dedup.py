"""`realsyn bench calibrate-dedup`: the image dedup thresholds, measured on real near-duplicates
of real photos.

Why: the paper removes "perceptually and semantically redundant" images with union-find but gives
no thresholds (spec §2). We choose ours by measurement: take the real photos in the shared data
(Flickr8k thumbnails, Wikipedia/Ray Charles article images), make near-duplicate copies of each
(JPEG re-encode, resize, border crop, brightness, horizontal flip, combinations), and measure
precision and recall of each criterion against

* positives: (original, its variant) pairs,
* negatives: every pair of two distinct originals.

Perceptual criterion: Hamming distance of ``core.images.phash64`` of the *normalised* image,
exactly as the pipeline computes it (``core.images.process_image``). The filter settings (min side,
aspect) are relaxed here so that every variant gets a hash; how many variants the default filters
would reject before dedup is reported. pHash is not flip-invariant (a mirrored image has a
different DCT sign pattern), so flipped variants are reported separately and excluded from the
recall that picks the threshold.

Semantic criterion: cosine of image embeddings from ``core.encoder.Encoder`` on the same
normalised files (what the pipeline embeds). With the default offline encoder (realsyn-tiny with
seeded random weights) the numbers are recorded but marked "random encoder - not meaningful" and
no threshold is chosen; pass ``--encoder-checkpoint`` or ``--encoder-pretrained`` to choose one.

Rule for the defaults: the largest pHash distance (resp. smallest cosine) whose precision on this
set is >= ``--min-precision`` (0.99), i.e. maximum recall subject to that precision. Precision
depends on the positive:negative ratio of this set (about 10 variants per original against ~470k
negative pairs), so the false-positive rate per pair is recorded too: union-find chains false
links transitively, and at corpus scale the rate per pair is what matters.

Usage: ``realsyn bench calibrate-dedup [--data DIR] [--out calibration/dedup_thresholds.json]
[--encoder-model NAME --encoder-checkpoint PATH]``. Deterministic for a given ``--seed`` (and the
same Pillow/libjpeg); the JSON is written atomically. Unlike the other benchmarks it prints a
table, not JSON: the result is the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from realsyn_assets.core.images import extract as image_core
from realsyn_assets.core.io import atomic_path

REPO = Path(__file__).resolve().parents[2]  # the checkout: defaults and portable paths
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "calibration" / "dedup_thresholds.json"
DATASETS = {  # dataset name -> image folder below --data
    "flickr8k_thumbs_dev": "flickr8k_thumbs_dev/images",
    "wikipedia_raycharles_interleaved": "wikipedia_raycharles_interleaved/images",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}
PHASH_THRESHOLDS = list(range(17))
COSINE_THRESHOLDS = [round(x, 3) for x in np.arange(0.50, 0.99, 0.01)] + [0.99, 0.995, 0.999]
CURRENT_DEFAULTS = {"phash_max_distance": 6, "semantic_threshold": 0.95}
# Families whose recall picks the pHash threshold: everything but mirrored copies.
FLIP_FAMILY = "flip"
# Settings of the pipeline's normalisation, with the quality filter switched off (see docstring).
HASH_CONFIG = image_core.ImageFilterConfig(min_side=1, max_aspect=1e9)
PIPELINE_FILTERS = image_core.ImageFilterConfig()


# --------------------------------------------------------------------------- originals


@dataclass(frozen=True)
class Original:
    dataset: str
    name: str  # file name inside the dataset folder
    data: bytes

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}"


def find_originals(data_dir: Path, limit: int | None = None) -> list[Original]:
    """Every image file of the shared data sets, sorted (``limit`` per data set, for tests)."""
    out: list[Original] = []
    for dataset, rel in DATASETS.items():
        folder = data_dir / rel
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files[:limit] if limit else files:
            out.append(Original(dataset, path.name, path.read_bytes()))
    return out


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    kind: str  # recipe name, e.g. "resize+reencode"
    family: str  # reencode | resize | crop | brightness | combo | flip
    params: dict
    data: bytes


# (kind, family): two plain re-encodes (low / high quality), one of each geometric/photometric
# change, combinations, and two mirrored copies. Every recipe ends in a JPEG encode because a real
# near-duplicate on the web has always been re-encoded by whoever re-published it.
RECIPES: tuple[tuple[str, str], ...] = (
    ("reencode_low", "reencode"),
    ("reencode_high", "reencode"),
    ("resize", "resize"),
    ("crop", "crop"),
    ("brightness", "brightness"),
    ("resize+reencode", "combo"),
    ("crop+resize+reencode", "combo"),
    ("crop+brightness+reencode", "combo"),
    ("flip", FLIP_FAMILY),
    ("flip+resize+reencode", FLIP_FAMILY),
)


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _decode_rgb(data: bytes) -> Image.Image:
    """Decode like the pipeline does before any change: EXIF-transposed, flattened to RGB."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        return image_core._to_rgb(img)


def _resize(img: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _crop(img: Image.Image, frac_x: float, frac_y: float, rng: random.Random) -> Image.Image:
    """Cut ``frac`` of each dimension in total, split at random between the two borders."""
    cut_x, cut_y = round(img.width * frac_x), round(img.height * frac_y)
    left, top = rng.randint(0, cut_x), rng.randint(0, cut_y)
    return img.crop((left, top, img.width - (cut_x - left), img.height - (cut_y - top)))


def _brightness_factor(rng: random.Random) -> float:
    """A small brightness change: 5-15 % darker or brighter."""
    return round(rng.choice((-1, 1)) * rng.uniform(0.05, 0.15) + 1.0, 3)


def make_variants(original: Original, seed: int = 0) -> list[Variant]:
    """The near-duplicate copies of one original, one per recipe; deterministic.

    Parameters are drawn from ``random.Random(f"{seed}:{key}")`` (a string seed is hashed with
    SHA-512 by ``random``, so it does not depend on ``PYTHONHASHSEED``).
    """
    rng = random.Random(f"{seed}:{original.key}")
    src = _decode_rgb(original.data)
    out: list[Variant] = []
    for kind, family in RECIPES:
        img = src
        params: dict = {}
        steps = kind.split("+")
        if steps[0] == "flip":
            img = ImageOps.mirror(img)
            params["flip"] = "horizontal"
        if "crop" in steps:
            fx, fy = round(rng.uniform(0.03, 0.10), 3), round(rng.uniform(0.03, 0.10), 3)
            img = _crop(img, fx, fy, rng)
            params["crop_fraction"] = [fx, fy]
        if "resize" in steps:
            scale = round(rng.uniform(0.5, 0.9), 3)
            img = _resize(img, scale)
            params["scale"] = scale
        if "brightness" in steps:
            factor = _brightness_factor(rng)
            img = ImageEnhance.Brightness(img).enhance(factor)
            params["brightness"] = factor
        if kind == "reencode_low" or "reencode" in steps[1:]:
            quality = rng.randint(50, 69)
        elif kind == "reencode_high":
            quality = rng.randint(70, 90)
        else:  # single transforms: re-published at a typical high quality
            quality = rng.randint(85, 95)
        params["quality"] = quality
        params["size"] = [img.width, img.height]
        out.append(Variant(kind, family, params, _encode_jpeg(img, quality)))
    return out


# --------------------------------------------------------------------------- hashing / embedding


@dataclass
class Item:
    """One image as the pipeline sees it after normalisation."""

    original: int  # index into the originals list
    variant: Variant | None  # None for the original itself
    phash: int | None
    width: int
    height: int
    path: Path | None  # normalised JPEG (for the encoder)
    pipeline_reject: str | None  # what the default quality filter would say (None = keep)


def _pipeline_filter(width: int, height: int) -> str | None:
    short, long = min(width, height), max(width, height)
    if short < PIPELINE_FILTERS.min_side:
        return image_core.REJECT_TOO_SMALL
    if long > PIPELINE_FILTERS.max_aspect * short:
        return image_core.REJECT_BAD_ASPECT
    return None


def normalise(data: bytes, out_path: Path | None) -> tuple[int | None, int, int, Path | None]:
    """pHash (as the pipeline computes it) and size; writes the normalised JPEG if asked."""
    result = image_core.process_image(data, out_path, HASH_CONFIG)
    if not result.kept:
        return None, result.width, result.height, None
    return result.phash, result.width, result.height, out_path


def build_items(
    originals: Sequence[Original], seed: int, work: Path | None
) -> tuple[list[Item], list[str]]:
    """Originals first (index i = original i), then all variants. Returns (items, problems)."""
    items: list[Item] = []
    problems: list[str] = []
    for i, orig in enumerate(originals):
        path = work / "orig" / f"{i}.jpg" if work else None
        h, w, ht, written = normalise(orig.data, path)
        if h is None:
            problems.append(f"{orig.key}: original not decodable")
        items.append(Item(i, None, h, w, ht, written, _pipeline_filter(w, ht)))
    for i, orig in enumerate(originals):
        if items[i].phash is None:
            continue
        for k, var in enumerate(make_variants(orig, seed)):
            path = work / "var" / f"{i}_{k}.jpg" if work else None
            h, w, ht, written = normalise(var.data, path)
            if h is None:
                problems.append(f"{orig.key} {var.kind}: variant not decodable")
                continue
            items.append(Item(i, var, h, w, ht, written, _pipeline_filter(w, ht)))
    return items, problems


def _as_u64(values: Sequence[int]) -> np.ndarray:
    return np.array([v & 0xFFFF_FFFF_FFFF_FFFF for v in values], dtype=np.uint64)


def positive_distances(items: Sequence[Item]) -> tuple[np.ndarray, list[Item]]:
    """Hamming distance original <-> variant for every variant item."""
    variants = [it for it in items if it.variant is not None]
    a = _as_u64([items[it.original].phash for it in variants])  # type: ignore[misc]
    b = _as_u64([it.phash for it in variants])  # type: ignore[misc]
    return np.bitwise_count(a ^ b).astype(np.int64), variants


def negative_distances(items: Sequence[Item], n_originals: int) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distance of every pair of distinct (decodable) originals: (distances, pairs)."""
    idx = np.array([i for i in range(n_originals) if items[i].phash is not None], dtype=np.int64)
    hashes = _as_u64([items[i].phash for i in idx])  # type: ignore[misc]
    ii, jj = np.triu_indices(len(idx), k=1)
    dist = np.bitwise_count(hashes[ii] ^ hashes[jj]).astype(np.int64)
    return dist, np.stack([idx[ii], idx[jj]], axis=1)


# --------------------------------------------------------------------------- metrics


def _prf(tp: int, fp: int, n_pos: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _pair_kind(originals: Sequence[Original], a: int, b: int) -> str:
    short = {"flickr8k_thumbs_dev": "flickr", "wikipedia_raycharles_interleaved": "wikipedia"}
    names = sorted(short.get(originals[x].dataset, originals[x].dataset) for x in (a, b))
    return "-".join(names)


def curve(
    pos_scores: np.ndarray,
    pos_families: Sequence[str],
    neg_scores: np.ndarray,
    neg_kinds: Sequence[str],
    thresholds: Sequence[float],
    match_if_at_most: bool,
) -> list[dict]:
    """Precision/recall/F1 per threshold. Recall counts non-flip positives; flips separately.

    ``match_if_at_most``: True for distances (match when score <= t), False for similarities
    (match when score >= t).
    """
    families = np.asarray(pos_families)
    main = families != FLIP_FAMILY
    n_pos = int(main.sum())
    kinds = np.asarray(neg_kinds)
    rows = []
    for t in thresholds:
        pos_hit = pos_scores <= t if match_if_at_most else pos_scores >= t
        neg_hit = neg_scores <= t if match_if_at_most else neg_scores >= t
        tp, fp = int((pos_hit & main).sum()), int(neg_hit.sum())
        precision, recall, f1 = _prf(tp, fp, n_pos)
        by_family = {
            fam: round(float(pos_hit[families == fam].mean()), 4)
            for fam in sorted(set(pos_families))
        }
        fp_by_kind = {k: int((neg_hit & (kinds == k)).sum()) for k in sorted(set(neg_kinds))}
        rows.append(
            {
                "threshold": t,
                "tp": tp,
                "fp": fp,
                "fn": n_pos - tp,
                "precision": round(precision, 5),
                "recall": round(recall, 5),
                "f1": round(f1, 5),
                "false_positive_rate": float(f"{fp / max(1, len(neg_scores)):.3g}"),
                "recall_by_family": by_family,
                "false_positives_by_pair_kind": fp_by_kind,
            }
        )
    return rows


def choose(
    rows: Sequence[dict], min_precision: float, max_fpr: float, larger_is_looser: bool
) -> dict | None:
    """Max recall subject to precision >= min_precision and false-positive rate <= max_fpr.

    Ties go to the stricter threshold (pHash distances are always even — both hashes have
    exactly 32 bits set — so an odd threshold never beats the even one below it).
    """
    ok = [
        r
        for r in rows
        if r["precision"] >= min_precision and r["false_positive_rate"] <= max_fpr and r["tp"] > 0
    ]
    if not ok:
        return None
    best_recall = max(r["recall"] for r in ok)
    tied = [r for r in ok if r["recall"] == best_recall]
    return (
        min(tied, key=lambda r: r["threshold"])
        if larger_is_looser
        else max(tied, key=lambda r: r["threshold"])
    )


def _histogram(values: np.ndarray, families: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    fam = np.asarray(families)
    for name in sorted(set(families)):
        counts = Counter(int(v) for v in values[fam == name])
        out[name] = {str(k): counts[k] for k in sorted(counts)}
    return out


def _close_negatives(
    originals: Sequence[Original],
    pairs: np.ndarray,
    scores: np.ndarray,
    within: float,
    match_if_at_most: bool,
    limit: int = 50,
) -> list[dict]:
    hit = scores <= within if match_if_at_most else scores >= within
    order = np.argsort(scores[hit] if match_if_at_most else -scores[hit], kind="stable")
    chosen = np.flatnonzero(hit)[order][:limit]
    return [
        {
            "a": originals[int(pairs[k, 0])].key,
            "b": originals[int(pairs[k, 1])].key,
            "score": round(float(scores[k]), 4),
            "pair_kind": _pair_kind(originals, int(pairs[k, 0]), int(pairs[k, 1])),
        }
        for k in chosen
    ]


# --------------------------------------------------------------------------- criteria


def cross_negative_rates(
    items: Sequence[Item], originals: Sequence[Original], thresholds: Sequence[int]
) -> dict:
    """Variant of A vs original B (A != B): ~20x more unrelated pairs than original pairs alone,
    so rates down to ~1e-7 become visible. Informational (not used by the rule): pairs whose
    originals are genuinely alike (album covers) are included, as they are among the negatives."""
    n = len(originals)
    orig_idx = [i for i in range(n) if items[i].phash is not None]
    base = _as_u64([items[i].phash for i in orig_idx])  # type: ignore[misc]
    owner = np.array(orig_idx, dtype=np.int64)
    counts = np.zeros(65, dtype=np.int64)
    total = 0
    for it in items:
        if it.variant is None or it.variant.family == FLIP_FAMILY:
            continue
        dist = np.bitwise_count(base ^ np.uint64(it.phash & 0xFFFF_FFFF_FFFF_FFFF))
        dist = dist[owner != it.original]
        counts += np.bincount(dist.astype(np.int64), minlength=65)
        total += len(dist)
    cumulative = np.cumsum(counts)
    return {
        "pairs": int(total),
        "matches_at_threshold": {str(t): int(cumulative[t]) for t in thresholds},
        "rate_at_threshold": {
            str(t): float(f"{cumulative[t] / max(1, total):.3g}") for t in thresholds
        },
    }


def calibrate_phash(
    originals: Sequence[Original],
    items: Sequence[Item],
    min_precision: float,
    max_fpr: float = 1e-5,
) -> dict:
    pos, variants = positive_distances(items)
    families = [v.variant.family for v in variants]  # type: ignore[union-attr]
    neg, pairs = negative_distances(items, len(originals))
    kinds = [_pair_kind(originals, int(a), int(b)) for a, b in pairs]
    rows = curve(pos, families, neg, kinds, PHASH_THRESHOLDS, match_if_at_most=True)
    chosen = choose(rows, min_precision, max_fpr, larger_is_looser=True)
    chosen_t = chosen["threshold"] if chosen else None
    by_kind = Counter(v.variant.kind for v in variants)  # type: ignore[union-attr]
    n_main = int((np.asarray(families) != FLIP_FAMILY).sum())
    n_orig = max(1, len(originals))
    return {
        "criterion": "Hamming distance of 64-bit pHash (core.images.phash64) of the normalised "
        "image, computed through core.images.process_image; match when distance <= threshold",
        "rule": f"max recall (non-flip variants) subject to precision >= {min_precision} and "
        f"false-positive rate per negative pair <= {max_fpr:g}",
        "rule_why": f"precision depends on this set's mix ({n_main / n_orig:.1f} positives per "
        f"original against {len(neg) / n_orig:.0f} negative pairs per original); in a corpus "
        "the negative pairs grow with the square of its size while near-duplicates grow "
        "linearly, and union-find chains every false link, so the per-pair false-positive rate "
        f"is bounded as well ({len(neg)} negative pairs resolve rates down to "
        f"~{1 / max(1, len(neg)):.1g} per event)",
        "chosen_max_distance": chosen_t,
        "at_chosen": chosen,
        "false_positive_pairs_at_chosen": _close_negatives(
            originals, pairs, neg, chosen_t if chosen_t is not None else -1, True, limit=100
        ),
        "flip_note": "pHash is not flip-invariant: a horizontally mirrored image changes the sign "
        "of every odd horizontal DCT frequency, so flipped copies are usually far away. They are "
        "reported in recall_by_family['flip'] and excluded from the recall that picks the "
        "threshold; catching them needs the semantic criterion (or hashing the mirror too).",
        "positives": int((np.asarray(families) != FLIP_FAMILY).sum()),
        "positives_flip": int((np.asarray(families) == FLIP_FAMILY).sum()),
        "positives_by_kind": dict(sorted(by_kind.items())),
        "negatives": len(neg),
        "negatives_by_pair_kind": dict(sorted(Counter(kinds).items())),
        "positive_distance_histogram_by_family": _histogram(pos, families),
        "positive_distance_max_by_kind": {
            kind: int(pos[[v.variant.kind == kind for v in variants]].max())  # type: ignore[union-attr]
            for kind in sorted(by_kind)
        },
        "negative_distance_histogram_0_16": {
            str(t): int((neg == t).sum()) for t in PHASH_THRESHOLDS
        },
        "closest_negative_pairs": _close_negatives(
            originals, pairs, neg, max(PHASH_THRESHOLDS), True, limit=40
        ),
        "cross_negatives_variant_vs_other_original": cross_negative_rates(
            items, originals, PHASH_THRESHOLDS
        ),
        "curve": rows,
    }


def encoder_is_random(spec_checkpoint: str | None, spec_pretrained: str | None) -> bool:
    """True for the offline default (seeded random weights) and for checkpoints marked as such."""
    if spec_pretrained:
        return False
    if not spec_checkpoint:
        return True
    import torch

    try:
        state = torch.load(spec_checkpoint, map_location="cpu", weights_only=True)
    except Exception:
        return False  # not our format: assume the user knows it is trained
    return isinstance(state, dict) and state.get("kind") == "local-random"


def calibrate_semantic(
    originals: Sequence[Original],
    items: Sequence[Item],
    args: argparse.Namespace,
    weights_dir: Path,
) -> dict:
    from realsyn_assets.core.embedding.encoder import LOCAL_WEIGHTS_SEED, Encoder, EncoderSpec

    spec = EncoderSpec(
        model_name=args.encoder_model,
        checkpoint=args.encoder_checkpoint,
        pretrained=args.encoder_pretrained,
        device="cpu",
        batch_size=128,
    )
    encoder = Encoder(spec, weights_dir)
    random_weights = encoder_is_random(args.encoder_checkpoint, args.encoder_pretrained)
    usable = [it for it in items if it.path is not None]
    index = {id(it): k for k, it in enumerate(usable)}
    start = time.perf_counter()
    vecs = encoder.encode_images([it.path for it in usable])  # type: ignore[misc]
    seconds = time.perf_counter() - start

    variants = [it for it in usable if it.variant is not None]
    pos = np.array(
        [float(vecs[index[id(it)]] @ vecs[index[id(items[it.original])]]) for it in variants]
    )
    families = [it.variant.family for it in variants]  # type: ignore[union-attr]
    orig_rows = np.array([index[id(items[i])] for i in range(len(originals))])
    sims = vecs[orig_rows] @ vecs[orig_rows].T
    ii, jj = np.triu_indices(len(orig_rows), k=1)
    neg = sims[ii, jj]
    pairs = np.stack([ii, jj], axis=1)
    kinds = [_pair_kind(originals, int(a), int(b)) for a, b in pairs]
    rows = curve(pos, families, neg, kinds, COSINE_THRESHOLDS, match_if_at_most=False)
    chosen = (
        None
        if random_weights
        else choose(rows, args.min_precision, args.max_fpr, larger_is_looser=False)
    )
    out = {
        "criterion": "cosine of L2-normalised image embeddings of the normalised images; match "
        "when cosine >= threshold",
        "encoder": {
            "model": args.encoder_model,
            "source": f"local-random (seed {LOCAL_WEIGHTS_SEED})"
            if encoder.source.startswith("local-random:")
            else encoder.source,
            "identity": encoder.identity,
            "random_weights": random_weights,
            "encode_seconds": round(seconds, 2),
        },
        "meaningful": not random_weights,
        "rule": f"max recall (non-flip variants) subject to precision >= {args.min_precision} "
        f"and false-positive rate <= {args.max_fpr:g}; only with a trained or pretrained encoder",
        "chosen_threshold": chosen["threshold"] if chosen else None,
        "at_chosen": chosen,
        "positive_cosine_min_by_family": {
            fam: round(float(pos[np.asarray(families) == fam].min()), 4)
            for fam in sorted(set(families))
        },
        "negative_cosine_quantiles": {
            q: round(float(np.quantile(neg, float(q))), 4)
            for q in ("0.5", "0.9", "0.99", "0.999", "1.0")
        },
        "closest_negative_pairs": _close_negatives(
            originals, pairs, neg, float(np.quantile(neg, 0.9999)), False, limit=20
        ),
        "curve": rows,
    }
    if random_weights:
        out["note"] = (
            "random encoder - not meaningful: realsyn-tiny with seeded random weights (the offline "
            "default). Numbers recorded for completeness; no threshold chosen. Re-run with "
            "--encoder-checkpoint PATH or --encoder-pretrained TAG."
        )
    return out


# --------------------------------------------------------------------------- output


def _display_path(path: Path) -> str:
    """Relative to the repository when inside its parent (keeps the committed JSON portable)."""
    try:
        return os.path.relpath(path.resolve(), REPO)
    except ValueError:
        return str(path)


def atomic_write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # temporary files are 0600; this file is meant to be committed


def format_table(result: dict) -> str:
    ph = result["phash"]
    lines = [
        f"pHash: {ph['positives']} positive pairs (+{ph['positives_flip']} flipped), "
        f"{ph['negatives']} negative pairs",
        "  t      tp     fp  precision  recall      F1  FP-rate    reenc  resize  crop  bright  "
        "combo  flip",
    ]
    for r in ph["curve"]:
        fam = r["recall_by_family"]
        mark = " <- chosen" if r["threshold"] == ph["chosen_max_distance"] else ""
        lines.append(
            f"{r['threshold']:3d} {r['tp']:7d} {r['fp']:6d}  {r['precision']:9.4f}  "
            f"{r['recall']:6.4f}  {r['f1']:6.4f}  {r['false_positive_rate']:7.2g}   "
            f"{fam.get('reencode', 0):6.3f} {fam.get('resize', 0):6.3f} {fam.get('crop', 0):5.3f} "
            f"{fam.get('brightness', 0):6.3f} {fam.get('combo', 0):6.3f} {fam.get('flip', 0):5.3f}"
            f"{mark}"
        )
    sem = result.get("semantic")
    if sem:
        tag = "" if sem["meaningful"] else "  [random encoder - not meaningful]"
        lines.append(f"semantic ({sem['encoder']['source']}){tag}")
        lines.append("   cos      tp     fp  precision  recall      F1   flip")
        for r in sem["curve"]:
            if r["threshold"] not in (
                0.5,
                0.7,
                0.8,
                0.85,
                0.9,
                0.93,
                0.95,
                0.97,
                0.98,
                0.99,
                0.995,
            ):
                continue
            mark = " <- chosen" if r["threshold"] == sem["chosen_threshold"] else ""
            lines.append(
                f" {r['threshold']:5.3f} {r['tp']:7d} {r['fp']:6d}  {r['precision']:9.4f}  "
                f"{r['recall']:6.4f}  {r['f1']:6.4f}  {r['recall_by_family'].get('flip', 0):5.3f}"
                f"{mark}"
            )
    rec = result["recommended_defaults"]
    lines.append(
        f"recommended: phash_max_distance={rec['phash_max_distance']} "
        f"semantic_threshold={rec['semantic_threshold']} ({rec['semantic_source']}); "
        f"current: {CURRENT_DEFAULTS}"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="realsyn bench calibrate-dedup",
        description="Calibrate the image dedup thresholds (pHash distance, embedding cosine) on "
        "near-duplicates of the shared photos; writes the result JSON and prints a table.",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    p.add_argument("--seed", type=int, default=0, help="variant parameters")
    p.add_argument("--limit", type=int, default=None, help="originals per data set (tests)")
    p.add_argument("--min-precision", type=float, default=0.99)
    p.add_argument(
        "--max-fpr", type=float, default=1e-5, help="max false-positive rate per negative pair"
    )
    p.add_argument("--encoder-model", default="realsyn-tiny")
    p.add_argument("--encoder-checkpoint", default=None, help="local trained checkpoint")
    p.add_argument(
        "--encoder-pretrained", default=None, help="open_clip pretrained tag (downloads!)"
    )
    p.add_argument("--no-semantic", action="store_true", help="skip the embedding criterion")
    p.add_argument("--work", type=Path, default=None, help="keep normalised images here")
    return p


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    originals = find_originals(args.data, args.limit)
    if len(originals) < 2:
        raise SystemExit(
            f"calibrate_dedup: no shared images under {args.data} (expected "
            + " and ".join(DATASETS.values())
            + "); pass --data DIR"
        )
    with tempfile.TemporaryDirectory(prefix="calibrate_dedup_") as tmp:
        work = args.work or Path(tmp)
        need_files = not args.no_semantic
        items, problems = build_items(originals, args.seed, work if need_files else None)
        variants = [it for it in items if it.variant is not None]
        result: dict = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "script": "realsyn_assets/bench/calibrate_dedup.py",
            "command": " ".join(["realsyn bench calibrate-dedup", *args.argv]),
            "data": {
                "root": _display_path(args.data),
                "originals_by_dataset": dict(Counter(o.dataset for o in originals)),
                "originals": len(originals),
                "limit_per_dataset": args.limit,
                "problems": problems,
            },
            "variants": {
                "seed": args.seed,
                "recipes": [{"kind": k, "family": f} for k, f in RECIPES],
                "parameters": "re-encode: quality 50-69 (low) / 70-90 (high), combos 50-69, "
                "single transforms 85-95; resize: scale 0.5-0.9 (Lanczos); crop: 3-10 % of "
                "width and of height, split at random between the two borders; brightness: "
                "factor 0.85-0.95 or 1.05-1.15; flip: horizontal mirror",
                "total": len(variants),
                "by_family": dict(sorted(Counter(v.variant.family for v in variants).items())),
                "would_be_rejected_by_default_filters": dict(
                    sorted(
                        Counter(v.pipeline_reject for v in variants if v.pipeline_reject).items()
                    )
                ),
                "originals_rejected_by_default_filters": dict(
                    sorted(
                        Counter(
                            it.pipeline_reject
                            for it in items
                            if it.variant is None and it.pipeline_reject
                        ).items()
                    )
                ),
                "filters_note": "hashes are computed with the quality filter off (min_side=1), "
                "normalisation unchanged (output_max_side "
                f"{HASH_CONFIG.output_max_side}); in the pipeline the items counted above "
                "would never reach dedup",
            },
            "phash": calibrate_phash(originals, items, args.min_precision, args.max_fpr),
            "environment": {
                "python": platform.python_version(),
                "pillow": Image.__version__,
                "numpy": np.__version__,
            },
        }
        if not args.no_semantic:
            weights_dir = work / "weights"
            result["semantic"] = calibrate_semantic(originals, items, args, weights_dir)
    phash_t = result["phash"]["chosen_max_distance"]
    sem = result.get("semantic")
    sem_t = sem["chosen_threshold"] if sem else None
    result["current_defaults"] = CURRENT_DEFAULTS
    result["recommended_defaults"] = {
        "phash_max_distance": phash_t
        if phash_t is not None
        else CURRENT_DEFAULTS["phash_max_distance"],
        "semantic_threshold": sem_t
        if sem_t is not None
        else CURRENT_DEFAULTS["semantic_threshold"],
        "semantic_source": "calibrated" if sem_t is not None else "unchanged (no trained encoder)",
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if not args.data.is_dir():
        print(
            f"calibrate_dedup: data folder {args.data} not found; pass --data DIR "
            "(the folder holding flickr8k_thumbs_dev/ and wikipedia_raycharles_interleaved/)",
            file=sys.stderr,
        )
        return 2
    try:
        result = run(args)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    atomic_write_json(args.out, result)
    print(format_table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
