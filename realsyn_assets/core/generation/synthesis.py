"""The `synthetic_texts` step for one shard (paper §3.2, image semantic augmented generation):
a caption per image, calibrated open-set tags, the fused synthetic text, every caption and text
validated, the invalid-output policy applied, generation cached by content, and the output
table with its per-shard statistics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from realsyn_assets.core.balance.sampling import pair_cosine
from realsyn_assets.core.generation import cache as cache_core
from realsyn_assets.core.generation import tagging
from realsyn_assets.core.generation.offline import GroundedRewriteFusion
from realsyn_assets.core.generation.prompts import FusionInput
from realsyn_assets.core.generation.validation import FAILURE_KINDS, clip_token_count, validate_text

FALLBACK = "fallback"  # the flag of a row whose text the offline fusion replaced


def rows_for(ids: Sequence[str], row_ids: Sequence[str], matrix: np.ndarray) -> np.ndarray:
    """The rows of `matrix` (one per `row_ids`) that belong to `ids`, in the order of `ids`."""
    row_of = {iid: r for r, iid in enumerate(row_ids)}
    return matrix[np.array([row_of[i] for i in ids], dtype=np.int64)] if ids else matrix[:0]


@dataclass
class ShardInputs:
    """What the step reads for one shard: per image its id, file, vector and retrieved texts."""

    image_ids: list[str]
    image_paths: list[str]
    image_vecs: np.ndarray
    texts: list[list[str | None]]  # text1..textk
    text_ids: list[list[str | None]]


@dataclass
class StepConfig:
    invalid_policy: str = "fallback"  # "fallback" | "drop"
    max_tags: int = 5
    prompt_version: str = ""
    cache_dir: Path | None = None
    shard: str = ""
    encoder_identity: str = ""


@dataclass
class ShardResult:
    table: pa.Table
    counts: dict[str, float] = field(default_factory=dict)
    syn_failures: Counter = field(default_factory=Counter)
    caption_failures: Counter = field(default_factory=Counter)
    threshold: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    kept: list[int] = field(default_factory=list)
    texts1: list[str] = field(default_factory=list)


def _cache_file(cfg: StepConfig, kind: str) -> Path | None:
    return None if cfg.cache_dir is None else cfg.cache_dir / f"{cfg.shard}.{kind}.parquet"


def _cached(cfg: StepConfig, kind: str, keys: list[str], generate) -> tuple[list, int]:
    path = _cache_file(cfg, kind)
    cache = cache_core.load_cache(path) if path is not None else {}
    out, entries, generated = cache_core.cached_generate(keys, cache, generate)
    if path is not None and (generated or set(entries) != set(cache)):
        cache_core.save_cache(path, entries)
    return out, generated


def captions_for(captioner, inputs: ShardInputs, cfg: StepConfig, make_input, version: str):
    """(captions, generated now): cached by image id + vector bytes + backend + model +
    caption prompt version."""
    vecs = np.asarray(inputs.image_vecs, np.float32)
    keys = [
        cache_core.content_key(
            "caption", iid, vecs[i].tobytes(), captioner.backend, captioner.model, version
        )
        for i, iid in enumerate(inputs.image_ids)
    ]

    def generate(missing: list[int]) -> list[str | None]:
        items = [make_input(Path(inputs.image_paths[i]), vecs[i]) for i in missing]
        return list(captioner.caption(items))

    return _cached(cfg, "captions", keys, generate)


def calibrated_tags(
    inputs: ShardInputs, vocabulary: list[str], tag_vecs: np.ndarray, max_tags: int
) -> tuple[list[list[str]], list[list[float]], tagging.Calibration]:
    """Tags per image over the shard, threshold calibrated on the images' own real texts."""
    sims = tagging.tag_similarity(inputs.image_vecs, tag_vecs)
    labels = tagging.mention_labels(vocabulary, inputs.texts)
    cal = tagging.calibrate_threshold(sims, labels)
    tags, scores = tagging.select_calibrated(sims, vocabulary, cal.threshold, max_tags)
    return tags, scores, cal


def _fusion_keys(inputs, captions, tags, gen, cfg: StepConfig) -> list[str]:
    return [
        cache_core.content_key(
            "fusion",
            iid,
            inputs.text_ids[i],
            inputs.texts[i],
            captions[i],
            tags[i],
            gen.name,
            gen.model,
            cfg.prompt_version,
            cfg.encoder_identity,
        )
        for i, iid in enumerate(inputs.image_ids)
    ]


def validate_many(texts: Sequence[str | None], inputs: Sequence[Sequence[str]]) -> list[list[str]]:
    """Failure kinds per text (`validation.validate_text`)."""
    return [validate_text(t, ins) for t, ins in zip(texts, inputs, strict=True)]


def apply_policy(
    texts: list[str | None],
    flags: list[list[str]],
    policy: str,
    fallback: Callable[[list[int]], list[str]],
) -> tuple[list[str | None], list[int], list[bool]]:
    """Invalid texts replaced by `fallback(indices)` ("fallback") or their rows dropped
    ("drop"). Returns (texts, indices of the rows kept, fell back per row)."""
    bad = [i for i, f in enumerate(flags) if f]
    fell = [False] * len(texts)
    if policy == "drop":
        return texts, [i for i, f in enumerate(flags) if not f], fell
    if policy != "fallback":
        raise ValueError(f"invalid_policy must be 'fallback' or 'drop', got {policy!r}")
    out = list(texts)
    for i, text in zip(bad, fallback(bad) if bad else [], strict=True):
        out[i], fell[i] = text, True
    return out, list(range(len(texts))), fell


def token_stats(texts: Sequence[str]) -> dict[str, float]:
    """CLIP token lengths (start/end included): mean, p50, p95, max."""
    n = np.array([clip_token_count(t) for t in texts], np.float64)
    if not len(n):
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "mean": float(n.mean()),
        "p50": float(np.percentile(n, 50)),
        "p95": float(np.percentile(n, 95)),
        "max": float(n.max()),
    }


def run_shard(
    inputs: ShardInputs,
    captioner,
    make_caption_input,
    caption_version: str,
    generator,
    encoder,
    vocabulary: list[str],
    tag_vecs: np.ndarray,
    cfg: StepConfig,
) -> ShardResult:
    """Captions, tags, fusion, validation and policy for one shard; see the module docstring."""
    start = time.perf_counter()
    n = len(inputs.image_ids)
    captions, cap_now = (
        captions_for(captioner, inputs, cfg, make_caption_input, caption_version)
        if captioner is not None and n
        else ([None] * n, 0)
    )
    cap_flags = validate_many(captions, [()] * n) if captioner is not None else [[]] * n
    usable = [None if f else c for c, f in zip(captions, cap_flags, strict=True)]
    tags, tag_scores, cal = calibrated_tags(inputs, vocabulary, tag_vecs, cfg.max_tags)
    texts1 = [(t[0] if t else None) or "" for t in inputs.texts]
    items = [FusionInput(t, c, tg) for t, c, tg in zip(texts1, usable, tags, strict=True)]
    keys = _fusion_keys(inputs, usable, tags, generator, cfg)
    rewrite = generator if isinstance(generator, GroundedRewriteFusion) else None
    rewrite = rewrite or GroundedRewriteFusion(encoder=encoder)

    def fuse(gen, idx: list[int]) -> list[str | None]:
        vecs = inputs.image_vecs[idx]
        if isinstance(gen, GroundedRewriteFusion):  # grounded by the other texts too
            return gen.generate([items[i] for i in idx], vecs, [inputs.texts[i][1:] for i in idx])
        return gen.generate([items[i] for i in idx], vecs)

    syn, gen_now = _cached(cfg, "fusion", keys, lambda idx: fuse(generator, idx))
    offline = getattr(generator, "name", "") == "offline"
    echo_inputs = [() if offline else (t, c or "") for t, c in zip(texts1, usable, strict=True)]
    syn_flags = validate_many(syn, echo_inputs)
    syn, kept, fell = apply_policy(
        syn, syn_flags, cfg.invalid_policy, lambda idx: fuse(rewrite, idx)
    )
    seconds = time.perf_counter() - start
    kept_syn = [syn[i] or "" for i in kept]
    scores = (
        pair_cosine(inputs.image_vecs[kept], encoder.encode_texts(kept_syn))
        if kept
        else np.zeros(0, np.float32)
    )
    table = synthetic_table(
        inputs,
        cfg.shard,
        kept,
        captions=captions,
        caption_meta=(getattr(captioner, "backend", None), getattr(captioner, "model", None)),
        tags=tags,
        tag_scores=tag_scores,
        syn=syn,
        scores=scores,
        gen_meta=(generator.name, generator.model, cfg.prompt_version),
        caption_flags=cap_flags,
        syn_flags=[f + ([FALLBACK] if b else []) for f, b in zip(syn_flags, fell, strict=True)],
    )
    result = ShardResult(table=table, threshold=cal.threshold, kept=kept, texts1=texts1)
    result.syn_failures = Counter(k for f in syn_flags for k in f)
    result.caption_failures = Counter(k for f in cap_flags for k in f)
    result.info = {
        "generated_now": gen_now,
        "captions_generated_now": cap_now,
        "cache_hits": n - gen_now,
        "caption_cache_hits": (n - cap_now) if captioner is not None else 0,
        "invalid": sum(1 for f in syn_flags if f),
        "fallback": sum(fell),
        "dropped": n - len(kept),
        "seconds": seconds,
        "calibration": cal,
        "tokens": token_stats(kept_syn),
        "mean_tags": float(np.mean([len(t) for t in tags])) if tags else 0.0,
        "untagged": sum(1 for t in tags if not t),
        "mean_score": float(np.mean(scores)) if len(scores) else 0.0,
    }
    return result


def synthetic_table(
    inputs: ShardInputs,
    shard: str,
    kept: list[int],
    *,
    captions,
    caption_meta,
    tags,
    tag_scores,
    syn,
    scores,
    gen_meta,
    caption_flags,
    syn_flags,
) -> pa.Table:
    """The rows of `kept`, one per image."""
    m = len(kept)

    def pick(values):
        return [values[i] for i in kept]

    strings = pa.list_(pa.string())
    return pa.table(
        {
            "image_id": pa.array(pick(inputs.image_ids), pa.string()),
            "shard": pa.array([shard] * m, pa.string()),
            "caption": pa.array(pick(captions), pa.string()),
            "caption_backend": pa.array([caption_meta[0]] * m, pa.string()),
            "caption_model": pa.array([caption_meta[1]] * m, pa.string()),
            "tags": pa.array(pick(tags), strings),
            "tag_scores": pa.array(pick(tag_scores), pa.list_(pa.float32())),
            "syn_text": pa.array(pick(syn), pa.string()),
            "syn_score": pa.array(np.asarray(scores, dtype=np.float32)),
            "generator": pa.array([gen_meta[0]] * m, pa.string()),
            "generator_model": pa.array([gen_meta[1]] * m, pa.string()),
            "prompt_version": pa.array([gen_meta[2]] * m, pa.string()),
            "caption_flags": pa.array(pick(caption_flags), strings),
            "syn_flags": pa.array(pick(syn_flags), strings),
        }
    )


def ground_truth_counts(
    names_concept: Callable[[Sequence[str], Sequence[str | None]], list[bool | None]],
    image_ids: Sequence[str],
    captions: Sequence[str | None],
    tags: Sequence[Sequence[str]],
    texts1: Sequence[str | None],
    syn: Sequence[str | None],
) -> dict[str, int]:
    """Counts over labelled images (demo only): captions / tags / text1 / syn_text naming the
    image's concept, text1 wrong, and syn_text right where text1 is wrong."""
    cap = names_concept(image_ids, captions)
    tag = names_concept(image_ids, [" ".join(t) for t in tags])
    t1 = names_concept(image_ids, texts1)
    sy = names_concept(image_ids, syn)
    scored = [i for i, v in enumerate(t1) if v is not None]
    return {
        "scored": len(scored),
        "caption_right": sum(bool(cap[i]) for i in scored),
        "tags_right": sum(bool(tag[i]) for i in scored),
        "text1_right": sum(bool(t1[i]) for i in scored),
        "syn_right": sum(bool(sy[i]) for i in scored),
        "text1_wrong": sum(not t1[i] for i in scored),
        "syn_right_text1_wrong": sum(bool(sy[i]) and not t1[i] for i in scored),
    }


def examples(rows: pa.Table, texts1: Sequence[str], n: int = 3) -> list[dict]:
    """The first `n` (text1, caption, tags, syn_text) of the output, for the metadata."""
    out = []
    for r, t in list(zip(rows.slice(0, n).to_pylist(), texts1, strict=False))[:n]:
        out.append({"text1": t, "caption": r["caption"], "tags": r["tags"], "syn": r["syn_text"]})
    return out


__all__ = ["FAILURE_KINDS", "FALLBACK", "ShardInputs", "StepConfig", "run_shard"]
