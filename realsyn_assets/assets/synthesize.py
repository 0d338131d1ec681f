"""synthesize: one synthetic text per image, fused from its top realistic text, a caption and
calibrated open-set tags (paper §3.2, "image semantic augmented generation"), validated, with
the invalid-output policy applied and generation cached by content."""

import functools
import hashlib
import math
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from realsyn_assets.assets._checks import Result, check_result, shard_check, zero_rows_result
from realsyn_assets.assets._common import code_version, stage_metadata
from realsyn_assets.assets.caption import SPEED_FIELDS
from realsyn_assets.core.generation import synthesis
from realsyn_assets.core.generation.cache import CACHE_DIR
from realsyn_assets.core.generation.captioners import CAPTION_PROMPT_VERSION
from realsyn_assets.core.generation.offline_captioner import OFFLINE_CAPTIONER_FILE
from realsyn_assets.core.generation.tagging import read_tag_list
from realsyn_assets.core.io import read_table, resolve_column, write_table
from realsyn_assets.core.retrieval.clustering import MEMBERS
from realsyn_assets.demo.hook import demo_scorer
from realsyn_assets.names import Asset, Group, Kind, RetrievedTextsMetrics, SyntheticTextsMetrics
from realsyn_assets.names import SyntheticTextsMetadata as MD
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    CaptionerResource,
    EncoderResource,
    EngineResource,
    GeneratorResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
    engine_steps,
)
from realsyn_assets.resources.engine import task_name

M = SyntheticTextsMetrics
TEXT_COLUMNS = ["text1", "text2", "text3"]


class SynthesisConfig(dg.Config):
    tag_vocabulary_size: int = Field(
        8000,
        description="Tags in the vocabulary (paper: RAM++'s 4k tags plus 4k mined from real "
        "sentences): the user tag list first, then words mined from the clustered sentences.",
    )
    tag_list_path: str = Field(
        "", description="A tag list file (one tag per line, e.g. RAM++'s); empty = mined only."
    )
    max_tags: int = Field(5, description="Most tags per image above the calibrated threshold.")
    tag_prompt: str = Field(
        "a photo of {}", description="Text prompt each tag is embedded in ({} = the tag)."
    )
    invalid_policy: Literal["fallback", "drop"] = Field(
        "fallback",
        description="An invalid synthetic text: fallback = the offline grounded rewrite for that "
        "row (flagged); drop = the row is removed and counted.",
    )
    max_invalid_share: float = Field(
        0.05, description="synthetic_invalid_share fails above this share of invalid outputs."
    )


def _inputs(storage: StorageResource, vectors: VectorStoreResource, key: str):
    home = storage.layout
    columns = ["image_id", "path"] + TEXT_COLUMNS + [f"{c}_id" for c in TEXT_COLUMNS]
    table = resolve_column(
        read_table(home.partition_file(Asset.RETRIEVED_TEXTS, key), columns=columns),
        "path",
        home.root,
    )
    ids = table.column("image_id").to_pylist()
    rows, matrix = vectors.shard_matrix("images", [key])
    texts = list(zip(*(table.column(c).to_pylist() for c in TEXT_COLUMNS), strict=True))
    text_ids = list(zip(*(table.column(f"{c}_id").to_pylist() for c in TEXT_COLUMNS), strict=True))
    return synthesis.ShardInputs(
        image_ids=ids,
        image_paths=table.column("path").to_pylist(),
        image_vecs=synthesis.rows_for(ids, rows.column("image_id").to_pylist(), matrix),
        texts=[list(t) for t in texts],
        text_ids=[list(t) for t in text_ids],
    )


@dg.asset(
    group_name=Group.SYNTHESIZE,
    partitions_def=shard_partitions,
    deps=[
        Asset.RETRIEVED_TEXTS,
        Asset.IMAGE_EMBEDDINGS,
        Asset.SENTENCE_CLUSTERS,
        Asset.IMAGE_CAPTIONER,
    ],
    code_version=code_version(
        "1",
        SynthesisConfig,
        GeneratorResource,
        CaptionerResource,
        exclude=(*SPEED_FIELDS, "max_invalid_share"),
    ),
    kinds={Kind.PARQUET, Kind.PYTORCH, Kind.VLLM},
    description="Per image of one shard: a caption (captioner resource), open-set tags over a "
    "user + mined vocabulary with a threshold calibrated on the images' own real texts, and "
    "the synthetic text fused by the generator resource (offline grounded rewrite, an "
    "OpenAI-compatible server or in-process vLLM), every caption and text validated; plus the "
    "text's image cosine (used by semantic balance sampling). Stored as "
    "`data/synthetic_texts/<shard>.parquet`. The data version names the fusion backend, model "
    "and prompt version, the captioner's, and the file's content hash, so a new model or "
    "prompt marks the subsets stale. A rerun regenerates only what the content cache "
    "(`data/synthetic_texts/_cache/`, keyed by inputs, model and prompt) lacks.",
)
def synthetic_texts(
    context: dg.AssetExecutionContext,
    config: SynthesisConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
    generator: GeneratorResource,
    captioner: CaptionerResource,
    engine: EngineResource,
) -> dg.MaterializeResult:
    home, key = storage.layout, context.partition_key
    inputs = _inputs(storage, vectors, key)
    user_tags = read_tag_list(config.tag_list_path)
    out_dir = home.asset_dir(Asset.SYNTHETIC_TEXTS)
    vocabulary = engine_steps.VocabularyJob(
        home.asset_dir(Asset.SENTENCE_CLUSTERS) / MEMBERS,
        out_dir,
        config.tag_prompt,
        config.tag_vocabulary_size,
        user_tags,
    )
    cfg = synthesis.StepConfig(
        config.invalid_policy, config.max_tags, "", out_dir / CACHE_DIR, key, ""
    )
    makers = _makers(engine, encoder, captioner, generator, home, context.log)
    job = engine_steps.SynthesisJob(inputs, makers, vocabulary, cfg, generator.prompt_version)
    backends = f"captioner {captioner.backend}, generator {generator.backend}"
    context.log.info(f"{key}: {len(inputs.image_ids)} images, {backends}")
    gpu = _uses_gpu(encoder, captioner, generator)
    name = task_name(Asset.SYNTHETIC_TEXTS, key)
    done = engine.run(engine_steps.synthesize_shard, job, name=name, gpu=gpu)
    result, cap_name, version = done.result, done.captioner, done.prompt_version
    path = write_table(result.table, home.partition_file(Asset.SYNTHETIC_TEXTS, key))
    counts = _counts(result, len(inputs.image_ids), done.vocabulary_size, len(user_tags))
    counts[M.MAX_INVALID_SHARE] = float(config.max_invalid_share)
    counts.update(_ground_truth(home, inputs, result))
    meta = stage_metadata(metrics, Asset.SYNTHETIC_TEXTS, key, counts, None, result.table, path)
    meta[MD.CAPTIONER], meta[MD.CAPTIONER_MODEL] = cap_name
    meta[MD.GENERATOR], meta[MD.GENERATOR_MODEL] = done.generator
    meta[MD.PROMPT_VERSION] = version
    meta[MD.ENCODER] = done.encoder_identity
    texts1 = [result.texts1[i] for i in result.kept]
    meta[MD.EXAMPLES] = dg.MetadataValue.json(synthesis.examples(result.table, texts1))
    identity = (*done.generator, version, *cap_name, CAPTION_PROMPT_VERSION)
    return dg.MaterializeResult(metadata=meta, data_version=_data_version(identity, path))


def _data_version(identity: tuple[str, ...], path: Path) -> dg.DataVersion:
    """`<fusion backend>:<model>@<prompt version>+<captioner backend>:<model>@<caption prompt
    version>#<sha256 of the written file>`: readable in the UI, and different whenever the
    model, a prompt or the shard's content changes."""
    gen, gen_model, version, cap, cap_model, cap_version = identity
    content = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return dg.DataVersion(f"{gen}:{gen_model}@{version}+{cap}:{cap_model}@{cap_version}#{content}")


def _makers(engine, encoder, captioner, generator, home, log) -> engine_steps.Makers:
    """How the engine's worker gets its models: the resources' own `get` in this process;
    for a Ray task, factories over their configuration (the encoder spec, the captioner's
    fields, the generator's options), since the worker builds the models itself."""
    if not engine.settings().is_ray:
        return engine_steps.Makers(
            encoder=encoder.get,
            captioner=functools.partial(_captioner, captioner, home, log),
            generator=lambda enc: generator.get(encoder=enc),
        )
    enc = encoder.get()  # lazy: the spec and weights folder, no model loaded here
    path = home.asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE
    fields = {name: getattr(captioner, name) for name in type(captioner).model_fields}
    if captioner.backend == "offline" and not path.exists():
        log.warning(f"no offline captioner at {path} (nothing to train on): no captions")
        fields = None
    return engine_steps.remote_makers(
        enc.spec, str(enc.weights_dir), fields, str(path), generator.backend, generator.options()
    )


def _uses_gpu(encoder, captioner, generator) -> bool:
    """A GPU task when a model backend runs in the worker on a GPU: in-process vLLM fusion, a
    vLLM or transformers captioner, or an encoder configured for CUDA."""
    return (
        generator.backend == "vllm"
        or captioner.backend in ("vllm", "transformers")
        or str(encoder.device).startswith("cuda")
    )


def _captioner(captioner: CaptionerResource, home, log):
    """The configured captioner; None (fusion without captions, logged) when the offline
    captioner was not trained because the corpus had no image or sentence embeddings."""
    path = home.asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE
    try:
        return captioner.get(offline_path=path)
    except FileNotFoundError:
        if captioner.backend != "offline":
            raise
        log.warning(f"no offline captioner at {path} (nothing to train on): no captions")
        return None


def _counts(result: synthesis.ShardResult, n: int, vocab: int, user: int) -> dict:
    info, tokens = result.info, result.info["tokens"]
    counts = {
        M.IMAGES: n,
        M.ROWS_WRITTEN: result.table.num_rows,
        M.EMPTY_SYN_TEXT: sum(1 for s in result.table.column("syn_text").to_pylist() if not s),
        M.TAG_VOCABULARY: vocab,
        M.USER_TAGS: user,
        M.TAG_THRESHOLD: float(result.threshold),
        M.TAG_CALIBRATION_F1: float(info["calibration"].f1),
        M.MEAN_TAGS: float(info["mean_tags"]),
        M.IMAGES_WITHOUT_TAGS: info["untagged"],
        M.MEAN_SYN_SCORE: float(info["mean_score"]),
        M.GENERATED_NOW: info["generated_now"],
        M.CACHE_HITS: info["cache_hits"],
        M.CAPTIONS_GENERATED_NOW: info["captions_generated_now"],
        M.CAPTION_CACHE_HITS: info["caption_cache_hits"],
        M.TEXTS_PER_SECOND: float(n / max(info["seconds"], 1e-9)),
        M.TOKENS_MEAN: tokens["mean"],
        M.TOKENS_P50: tokens["p50"],
        M.TOKENS_P95: tokens["p95"],
        M.TOKENS_MAX: tokens["max"],
        M.SYN_INVALID: info["invalid"],
        M.SYN_INVALID_SHARE: float(info["invalid"] / n) if n else 0.0,
        M.CAPTION_INVALID: sum(result.caption_failures.values()),
        M.FALLBACK: info["fallback"],
        M.DROPPED: info["dropped"],
    }
    for kind in synthesis.FAILURE_KINDS:
        counts[M.SYN_INVALID_PREFIX + kind] = result.syn_failures.get(kind, 0)
        counts[M.CAPTION_INVALID_PREFIX + kind] = result.caption_failures.get(kind, 0)
    return counts


def _ground_truth(home, inputs: synthesis.ShardInputs, result: synthesis.ShardResult) -> dict:
    """Demo only: caption / tag / text1 / syn_text concept counts (`gt_*`); {} on real data."""
    scorer = demo_scorer(home)
    if scorer is None:
        return {}
    rows = {r["image_id"]: r for r in result.table.to_pylist()}
    got = [rows.get(i, {}) for i in inputs.image_ids]
    gt = synthesis.ground_truth_counts(
        scorer.names_concept,
        inputs.image_ids,
        [r.get("caption") for r in got],
        [r.get("tags") or [] for r in got],
        result.texts1,
        [r.get("syn_text") for r in got],
    )
    return {M.GT_PREFIX + k if k != "scored" else M.GT_IMAGES_SCORED: v for k, v in gt.items()}


@shard_check(
    Asset.SYNTHETIC_TEXTS,
    "synthetic_rows_complete",
    "Every image retrieved_texts kept for the shard has exactly one row with a non-empty "
    "synthetic text and a finite image cosine, unless the drop policy removed it (counted). "
    "Blocking: image_clusters and the balanced subsets read these rows.",
    blocking=True,
)
def synthetic_rows_complete(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    return _synthetic_ok(metrics, context.partition_key, storage)


def _synthetic_ok(metrics: MetricsResource, key: str, storage: StorageResource) -> Result:
    """The check's logic, on the shard's synthetic_texts file against its retrieved_texts file
    (the drop count comes from the metrics the materialization recorded)."""
    counts = metrics.counts(Asset.SYNTHETIC_TEXTS, key)
    retrieved_images = metrics.counts(Asset.RETRIEVED_TEXTS, key).get(
        RetrievedTextsMetrics.IMAGES, -1
    )
    if retrieved_images == 0 and counts.get(M.IMAGES) == 0:
        return zero_rows_result(f"{key} has no image to write a synthetic text for", images=0)
    home = storage.layout
    try:
        images = read_table(home.partition_file(Asset.RETRIEVED_TEXTS, key), columns=["image_id"])
        rows = read_table(
            home.partition_file(Asset.SYNTHETIC_TEXTS, key),
            columns=["image_id", "syn_text", "syn_score"],
        )
    except FileNotFoundError as error:
        return check_result(False, f"missing file: {error}", threshold=0)
    expected, ids = images.column("image_id").to_pylist(), rows.column("image_id").to_pylist()
    dropped = int(counts.get(M.DROPPED, 0))
    bad = {
        "rows_unaccounted": abs(len(set(expected)) - dropped - len(set(ids) & set(expected))),
        "unexpected_rows": len(set(ids) - set(expected)) + len(ids) - len(set(ids)),
        "empty_syn_text": sum(1 for t in rows.column("syn_text").to_pylist() if not t),
        "non_finite_score": sum(
            1 for v in rows.column("syn_score").to_pylist() if v is None or not math.isfinite(v)
        ),
    }
    if not counts:
        bad["missing_metrics"] = 1
    return check_result(
        not any(bad.values()),
        ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in bad.items() if n)
        or f"{len(ids)} rows + {dropped} dropped of {len(expected)} images, all with text",
        images=len(expected),
        rows_written=len(ids),
        dropped=dropped,
        **bad,
        problems=sum(bad.values()),
        threshold=0,
    )


@shard_check(
    Asset.SYNTHETIC_TEXTS,
    "synthetic_invalid_share",
    "Share of synthetic texts that failed validation (empty, echo, refusal, repetition, too "
    "long, garbage) is at most the configured threshold (default 5%). WARN, not blocking: "
    "invalid rows were already replaced by the offline rewrite or dropped, so what downstream "
    "reads is valid; a high share says the model or prompt needs attention.",
)
def synthetic_invalid_share(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    return _invalid_share_ok(metrics, context.partition_key)


def _invalid_share_ok(metrics: MetricsResource, key: str) -> Result:
    """The threshold is the one the materialization was configured with (recorded with it)."""
    counts = metrics.counts(Asset.SYNTHETIC_TEXTS, key)
    threshold = counts.get(M.MAX_INVALID_SHARE, SynthesisConfig().max_invalid_share)
    images = int(counts.get(M.IMAGES, 0))
    if images == 0:
        return zero_rows_result(f"{key} has no synthetic text to validate", images=0)
    share = float(counts.get(M.SYN_INVALID_SHARE, 1.0))
    by_kind = {k: int(counts.get(M.SYN_INVALID_PREFIX + k, 0)) for k in synthesis.FAILURE_KINDS}
    return check_result(
        share <= threshold,
        f"{share:.1%} of {images} synthetic texts invalid (threshold {threshold:.0%})",
        dg.AssetCheckSeverity.WARN,
        invalid_share=share,
        threshold=threshold,
        **{f"invalid_{k}": v for k, v in by_kind.items()},
    )
