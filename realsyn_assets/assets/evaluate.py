"""evaluate: the paper's ablations at each scale and one evaluation table of every model
(paper §4, §8, §10).

`clip_ablations` trains the variants (realistic texts only, synthetic text only, random instead of
balanced sampling) with the training config `clip_checkpoint` used; `clip_evaluation` depends on
it and scores every model of the scale (RealSyn recipe, variants, untrained) on the same held-out
split and user sets, so one table compares them and a rerun of any model marks it stale.
"""

import dataclasses
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pydantic

from realsyn_assets.assets._checks import Result
from realsyn_assets.assets._common import code_version, png_bytes_metadata, stage_metadata
from realsyn_assets.core.balance import subset as subset_core
from realsyn_assets.core.balance.files import ASSIGNMENTS
from realsyn_assets.core.embedding.runtime import load_checkpoint
from realsyn_assets.core.evaluation import chance_recall
from realsyn_assets.core.io import atomic_write_bytes, read_table, resolve_column
from realsyn_assets.core.training import ablations as ablations_core
from realsyn_assets.core.training import clip as clip_core
from realsyn_assets.core.training import evaluate as evaluate_core
from realsyn_assets.core.training import user_sets as user_sets_core
from realsyn_assets.core.training.ablations import (
    BALANCED,
    RANDOM,
    RANDOM_SAMPLING,
    REALISTIC_ONLY,
    REALSYN,
    SYNTHETIC_ONLY,
    UNTRAINED,
    VARIANTS,
)
from realsyn_assets.demo.hook import demo_scorer
from realsyn_assets.names import Asset, Group, Kind
from realsyn_assets.names import ClipAblationsMetrics as AM
from realsyn_assets.names import ClipCheckpointMetrics as TM
from realsyn_assets.names import ClipEvaluationMetrics as EM
from realsyn_assets.partitions import ALL_SHARDS, scale_partitions
from realsyn_assets.resources import EncoderResource, MetricsResource, StorageResource

ABLATIONS_FILE = "ablations.json"
METRICS_FILE = "metrics.json"
TABLE_FILE = "evaluation.md"
# The trained model must beat the untrained one by this much mean held-out recall, and by more
# than one held-out image's worth (1 / eval images: one image changing rank in all six recalls
# moves their mean by that much), whichever is larger: see `min_recall_gain`.
MIN_RECALL_GAIN = 0.05
MIN_EVAL_IMAGES = 2
# Metric prefix of each model's scores in clip_evaluation (the RealSyn recipe's have none).
EVAL_PREFIX = {
    REALSYN: "",
    UNTRAINED: EM.UNTRAINED_PREFIX,
    REALISTIC_ONLY: EM.REALISTIC_ONLY_PREFIX,
    SYNTHETIC_ONLY: EM.SYNTHETIC_ONLY_PREFIX,
    RANDOM_SAMPLING: EM.RANDOM_SAMPLING_PREFIX,
}
TRAIN_PREFIX = {
    REALISTIC_ONLY: AM.REALISTIC_ONLY_PREFIX,
    SYNTHETIC_ONLY: AM.SYNTHETIC_ONLY_PREFIX,
    RANDOM_SAMPLING: AM.RANDOM_SAMPLING_PREFIX,
}


class AblationConfig(dg.Config):
    """Which of the paper's ablations to train; each costs one more `clip_checkpoint` run."""

    realistic_only: bool = pydantic.Field(
        True, description="Train on the same pairs with captions from text1-3 only."
    )
    synthetic_only: bool = pydantic.Field(
        True, description="Train on the same pairs with syn_text as the only caption."
    )
    random_sampling: bool = pydantic.Field(
        True,
        description="Train on as many pairs drawn uniformly from the cosine-window pool "
        "(held-out images excluded) instead of semantic balance, all four texts.",
    )
    seed: int = pydantic.Field(0, description="Seed of the random_sampling draw.")

    def variants(self) -> list[str]:
        """The variants switched on, in table order (none: clip_evaluation scores the recipe)."""
        chosen = (self.realistic_only, self.synthetic_only, self.random_sampling)
        names = (REALISTIC_ONLY, SYNTHETIC_ONLY, RANDOM_SAMPLING)
        return [name for name, on in zip(names, chosen, strict=True) if on]


class EvaluationConfig(dg.Config):
    """User evaluation sets (format: docs/evaluation.md), scored for every model."""

    captions_sets: list[str] = pydantic.Field(
        [],
        description="Folders holding captions.jsonl (image path + captions per line) for "
        "image<->text R@1/5/10; absolute or relative to the home.",
    )
    classification_sets: list[str] = pydantic.Field(
        [],
        description="Folders of <class name>/<image> for zero-shot accuracy with a prompt "
        "ensemble; absolute or relative to the home.",
    )


def _recipe_checkpoint(storage: StorageResource, scale: str) -> Path:
    path = storage.layout.asset_dir(Asset.CLIP_CHECKPOINT) / scale / clip_core.CHECKPOINT_NAME
    if not path.exists():
        raise dg.Failure(f"{scale}: no clip_checkpoint at {path}; materialize clip_checkpoint")
    return path


def _random_rows(storage: StorageResource, scale: str, size: int, seed: int) -> pa.Table:
    """`size` pairs drawn uniformly from image_clusters' in-window pool, eval images excluded,
    with the same columns as the balanced subset."""
    home = storage.layout
    assignments = read_table(home.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS)
    held = ablations_core.held_out_keys(storage.subset_split(scale, subset_core.EVAL_SPLIT))
    try:
        rows = subset_core.subset_rows(
            assignments,
            ablations_core.random_pool_indices(assignments, held, size, seed),
            storage.read_shards(Asset.RETRIEVED_TEXTS),
            storage.read_shards(Asset.SYNTHETIC_TEXTS, columns=subset_core.SYNTHETIC_COLUMNS),
            storage.read_shards(Asset.EXTRACTED_IMAGES, columns=subset_core.SOURCE_COLUMNS),
        )
    except (subset_core.MissingRowsError, ValueError) as exc:
        raise dg.Failure(f"{scale}: random_sampling: {exc}") from exc
    return resolve_column(rows, "image_path", home.root)


def _train_variant(variant, rows: pa.Table, base, out_dir: Path, log):
    """Train one variant with the recipe's config on `rows`; (result, numbers recorded)."""
    samples = clip_core.samples_from_rows(rows.to_pylist(), variant.text_columns)
    run = dataclasses.replace(base, text_columns=variant.text_columns)
    result = clip_core.train_clip(samples, run, out_dir / variant.name, log=log)
    first, last = clip_core.loss_first_last(result.losses)
    return result, {
        TM.SAMPLES: len(samples),
        TM.STEPS: result.steps,
        TM.SECONDS: float(result.seconds),
        TM.LOSS_FIRST: first,
        TM.LOSS_LAST: last,
        TM.LOSS_DROP: clip_core.loss_drop(result.losses, result.batch_sizes),
    }


@dg.asset(
    group_name=Group.TRAIN,
    partitions_def=scale_partitions,
    deps=[
        Asset.CLIP_CHECKPOINT,
        Asset.IMAGE_CLUSTERS,
        dg.AssetDep(Asset.RETRIEVED_TEXTS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.SYNTHETIC_TEXTS, partition_mapping=ALL_SHARDS),
    ],
    pool="encoder",
    code_version=code_version("1", AblationConfig),
    kinds={Kind.PYTORCH},
    description="The paper's ablations (§10) at one scale, each an open_clip model trained "
    "with clip_checkpoint's own config (read from its checkpoint): realistic texts only, "
    "synthetic text only, and random sampling of as many in-window pairs instead of semantic "
    "balance. The RealSyn recipe itself is clip_checkpoint (not retrained). Stored as "
    "data/clip_ablations/<scale>/<variant>/checkpoint.pt and ablations.json (each variant's "
    "checkpoint, texts, sampling, loss). A rerun trains the switched-on variants again; the same "
    "inputs and seed give the same manifest.",
)
def clip_ablations(
    context: dg.AssetExecutionContext,
    config: AblationConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    scale = context.partition_key
    saved = load_checkpoint(_recipe_checkpoint(storage, scale))["train_config"]
    base = ablations_core.train_config_from(saved, encoder.device)
    balanced = storage.subset_split(scale, subset_core.TRAIN_SPLIT)
    out_dir = storage.layout.asset_dir(Asset.CLIP_ABLATIONS) / scale
    counts: dict[str, float] = {AM.VARIANTS_TRAINED: len(config.variants())}
    trained, plots = {}, {}
    for name in config.variants():
        rows = balanced
        if VARIANTS[name].sampling == RANDOM:
            rows = _random_rows(storage, scale, balanced.num_rows, config.seed)
        context.log.info(f"{scale} ablation {name}: {VARIANTS[name].description}")
        result, facts = _train_variant(VARIANTS[name], rows, base, out_dir, context.log.info)
        counts.update({f"{TRAIN_PREFIX[name]}{k}": v for k, v in facts.items()})
        trained[name] = {
            "checkpoint": str(result.checkpoint_path.relative_to(out_dir)),
            "text_columns": list(VARIANTS[name].text_columns),
            "sampling": VARIANTS[name].sampling,
            **{k: v for k, v in facts.items() if k != TM.SECONDS},  # same inputs, same bytes
        }
        if result.loss_plot_path is not None:
            plots[f"loss_{name}"] = png_bytes_metadata(result.loss_plot_path.read_bytes(), name)
    manifest = out_dir / ABLATIONS_FILE
    atomic_write_bytes(
        manifest, json.dumps({"scale": scale, "variants": trained}, indent=2).encode()
    )
    meta = stage_metadata(metrics, Asset.CLIP_ABLATIONS, scale, counts, path=manifest)
    return dg.MaterializeResult(metadata={**meta, **plots})


def _user_sets(config: EvaluationConfig, root: Path) -> evaluate_core.UserSets:
    """The configured sets, loaded and validated; a bad set fails naming its file and line."""
    try:
        return evaluate_core.UserSets(
            captions=[
                user_sets_core.load_captions_set(p)
                for p in evaluate_core.user_set_paths(config.captions_sets, root)
            ],
            classification=[
                user_sets_core.load_classification_set(p)
                for p in evaluate_core.user_set_paths(config.classification_sets, root)
            ],
        )
    except user_sets_core.UserSetError as exc:
        raise dg.Failure(f"bad evaluation set: {exc}") from exc


def _held_out(storage: StorageResource, scale: str) -> evaluate_core.HeldOut | int:
    """The scale's held-out images, or their number when there are too few to evaluate."""
    held = storage.subset_split(scale, subset_core.EVAL_SPLIT)
    if held.num_rows < MIN_EVAL_IMAGES:
        return held.num_rows
    ids = held.column("image_id").to_pylist()
    scorer = demo_scorer(storage.layout)  # zero-shot classes exist only for the demo corpus
    return evaluate_core.HeldOut(
        paths=held.column("image_path").to_pylist(),
        texts=[t or "" for t in held.column("text1").to_pylist()],
        concepts=scorer.image_concepts(ids) if scorer else [],
        class_names=scorer.class_names() if scorer else [],
    )


def _models(storage: StorageResource, scale: str) -> tuple[str, dict[str, Path | None], dict]:
    """The recipe's open_clip model name, the checkpoint of each model (None = untrained) and
    each model's training facts for the table."""
    recipe = _recipe_checkpoint(storage, scale)
    state = load_checkpoint(recipe)
    columns = state.get("train_config", {}).get("text_columns", clip_core.TEXT_COLUMNS)
    facts = {REALSYN: {"sampling": BALANCED, "text_columns": list(columns)}}
    checkpoints: dict[str, Path | None] = {REALSYN: recipe, UNTRAINED: None}
    folder = storage.layout.asset_dir(Asset.CLIP_ABLATIONS) / scale
    if (folder / ABLATIONS_FILE).exists():
        variants = json.loads((folder / ABLATIONS_FILE).read_text())["variants"]
        for name, entry in variants.items():
            checkpoints[name] = folder / entry["checkpoint"]
            facts[name] = entry
    return state["model_name"], checkpoints, facts


def _table(results: dict, facts: dict, samples: float) -> tuple[list[dict], str]:
    """One row per model: how it was trained, then every score."""
    rows = []
    for name, scores in results.items():
        fact = facts.get(name, {})
        texts = "+".join(fact.get("text_columns", [])) or "-"
        count = samples if name == REALSYN else fact.get(TM.SAMPLES)
        head = {"model": name, "sampling": fact.get("sampling", "-"), "texts": texts}
        rows.append({**head, TM.SAMPLES: None if count is None else int(count), **scores})
    columns = ["model", "sampling", "texts", TM.SAMPLES, *evaluate_core.score_columns(results)]
    return rows, ablations_core.markdown_table(rows, columns)


@dg.asset(
    group_name=Group.TRAIN,
    partitions_def=scale_partitions,
    deps=[Asset.CLIP_CHECKPOINT, Asset.CLIP_ABLATIONS],
    pool="encoder",
    code_version=code_version("1", EvaluationConfig),
    kinds={Kind.PYTORCH},
    description="Every model of one scale (the RealSyn recipe, the ablation variants, the same "
    "architecture untrained) scored on the same held-out split of the balanced subset: "
    "image<->text1 R@1/5/10, zero-shot accuracy on the demo concepts, and the configured user "
    "caption / classification sets. Stored as data/clip_evaluation/<scale>/metrics.json and "
    "evaluation.md (one table, also shown here); every score is recorded in metrics.duckdb. A "
    "rerun scores the current checkpoints again.",
)
def clip_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    scale, home = context.partition_key, storage.layout
    user_sets = _user_sets(config, home.root)
    held_out = _held_out(storage, scale)
    if isinstance(held_out, int):
        return _too_few_to_evaluate(context, metrics, home, scale, held_out)
    model_name, checkpoints, facts = _models(storage, scale)
    encoders = evaluate_core.model_encoders(checkpoints, model_name, home.models, encoder.device)
    results = evaluate_core.evaluate_models(encoders, held_out, user_sets)
    chance = chance_recall(len(held_out.paths), 1.0, 5)
    counts = {EM.EVAL_IMAGES: len(held_out.paths), EM.CHANCE_I2T_R_AT_5: float(chance)}
    for name, scores in results.items():
        counts.update({f"{EVAL_PREFIX[name]}{k}": float(v) for k, v in scores.items()})
    samples = metrics.counts(Asset.CLIP_CHECKPOINT, scale).get(TM.SAMPLES, 0)
    rows, markdown = _table(results, facts, samples)
    out_dir = home.asset_dir(Asset.CLIP_EVALUATION) / scale
    report = {
        "scale": scale,
        EM.EVAL_IMAGES: len(held_out.paths),
        "trained": results[REALSYN],
        "untrained": results[UNTRAINED],
        EM.CHANCE_I2T_R_AT_5: chance,
        "models": rows,
    }
    atomic_write_bytes(out_dir / METRICS_FILE, json.dumps(report, indent=2).encode())
    atomic_write_bytes(out_dir / TABLE_FILE, markdown.encode())
    meta = stage_metadata(
        metrics, Asset.CLIP_EVALUATION, scale, counts, path=out_dir / METRICS_FILE
    )
    return dg.MaterializeResult(metadata={**meta, "table": dg.MetadataValue.md(markdown)})


def _too_few_to_evaluate(context, metrics: MetricsResource, home, scale: str, n: int):
    """A subset too small to hold out 2 images (a tiny corpus): nothing is scored; the
    evaluation_valid check warns."""
    reason = f"{scale}: {n} held-out image(s), fewer than {MIN_EVAL_IMAGES}: nothing to evaluate"
    context.log.warning(reason + " (a larger corpus or eval_fraction gives an evaluation)")
    out = home.asset_dir(Asset.CLIP_EVALUATION) / scale / METRICS_FILE
    report = {"scale": scale, EM.EVAL_IMAGES: n, "skipped": reason}
    atomic_write_bytes(out, json.dumps(report, indent=2).encode())
    counts = {EM.EVAL_IMAGES: n}
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, Asset.CLIP_EVALUATION, scale, counts, path=out)
    )


@dg.asset_check(
    asset=Asset.CLIP_ABLATIONS,
    partitions_def=scale_partitions,
    blocking=True,
    description="Every configured variant wrote its checkpoint and lowered its training loss by "
    f"at least {clip_core.MIN_LOSS_DROP:.0%} from the first to the last tenth of its steps "
    "(ERROR: clip_evaluation scores these checkpoints); a run too short to judge "
    f"(< {clip_core.MIN_JUDGED_STEPS} steps) that misses it only warns.",
)
def ablations_trained(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    return _ablations_ok(storage, metrics, context.partition_key)


def _ablations_ok(storage: StorageResource, metrics: MetricsResource, scale: str) -> Result:
    counts = metrics.counts(Asset.CLIP_ABLATIONS, scale)
    folder = storage.layout.asset_dir(Asset.CLIP_ABLATIONS) / scale
    manifest = folder / ABLATIONS_FILE
    variants = json.loads(manifest.read_text())["variants"] if manifest.exists() else {}
    configured = int(counts.get(AM.VARIANTS_TRAINED, -1))
    problems = [] if configured == len(variants) else [f"{configured} configured"]
    short = []  # a loss that did not fall in fewer steps than can be judged: WARN only
    drops = {}
    for name, entry in variants.items():
        first = counts.get(f"{TRAIN_PREFIX[name]}{TM.LOSS_FIRST}", float("nan"))
        last = counts.get(f"{TRAIN_PREFIX[name]}{TM.LOSS_LAST}", float("nan"))
        steps = int(counts.get(f"{TRAIN_PREFIX[name]}{TM.STEPS}", 0))
        # relative to chance as for clip_checkpoint; from the raw losses when not recorded
        drops[name] = counts.get(
            f"{TRAIN_PREFIX[name]}{TM.LOSS_DROP}", 1.0 - last / first if first else float("nan")
        )
        if not (folder / entry["checkpoint"]).exists():
            problems.append(f"{name}: checkpoint missing")
        if not drops[name] >= clip_core.MIN_LOSS_DROP:
            note = (
                f"{name}: loss {first:.3f} -> {last:.3f} fell {drops[name]:.1%} "
                f"(needs {clip_core.MIN_LOSS_DROP:.0%}) in {steps} steps"
            )
            (problems if steps >= clip_core.MIN_JUDGED_STEPS else short).append(note)
    found = problems or short
    return Result(
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN,
        description="; ".join(found)
        or f"{len(variants)} variants trained, every loss fell by >= {clip_core.MIN_LOSS_DROP:.0%}",
        metadata={
            "variants": len(variants),
            "variants_configured": configured,
            "min_loss_drop_seen": float(min(drops.values(), default=float("nan"))),
            "min_loss_drop": float(clip_core.MIN_LOSS_DROP),
            "min_judged_steps": clip_core.MIN_JUDGED_STEPS,
        },
    )


@dg.asset_check(
    asset=Asset.CLIP_EVALUATION,
    partitions_def=scale_partitions,
    description="ERROR: a score outside [0, 1] or a mean recall missing. WARN (clip_evaluation "
    "is the last asset: nothing downstream reads it, the result is a finding to report): fewer "
    f"than {MIN_EVAL_IMAGES} held-out images, or the trained model's mean held-out recall "
    "beating the untrained one's by less than max("
    f"{MIN_RECALL_GAIN}, 1 / held-out images), one image's worth, so small eval sets are judged "
    "too.",
)
def evaluation_valid(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return _evaluation_ok(metrics, context.partition_key)


def min_recall_gain(images: int) -> float:
    """The mean-recall gain over the untrained model that counts as learning on `images`
    held-out images: `MIN_RECALL_GAIN`, or one image's worth (1 / images) when larger."""
    return max(MIN_RECALL_GAIN, 1.0 / images) if images > 0 else float("inf")


def _evaluation_ok(metrics: MetricsResource, scale: str) -> Result:
    """Invalid or missing scores are an ERROR; too few eval images, or a model that did not
    beat its untrained self by `min_recall_gain`, a WARN."""
    counts = metrics.counts(Asset.CLIP_EVALUATION, scale)
    images = int(counts.get(EM.EVAL_IMAGES, 0))
    scores = {k: v for k, v in counts.items() if k != EM.EVAL_IMAGES}
    invalid = sorted(k for k, v in scores.items() if not 0.0 <= v <= 1.0)
    trained = evaluate_core.mean_recall(counts)
    untrained = evaluate_core.mean_recall(counts, EM.UNTRAINED_PREFIX)
    gain, needed = trained - untrained, min_recall_gain(images)
    problems = [f"{len(invalid)} scores outside [0, 1]: {invalid[:3]}"] if invalid else []
    warnings = [f"{images} eval images < {MIN_EVAL_IMAGES}"] if images < MIN_EVAL_IMAGES else []
    if images >= MIN_EVAL_IMAGES and gain != gain:  # NaN: a mean recall was not recorded
        problems.append("the trained or the untrained model's recalls are missing")
    elif images >= MIN_EVAL_IMAGES and not gain >= needed:
        warnings.append(
            f"mean recall gain {gain:.3f} over untrained < {needed:.3f} on {images} images"
        )
    return Result(
        passed=not (problems or warnings),
        severity=dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN,
        description="; ".join(problems + warnings)
        or f"trained {trained:.3f} vs untrained {untrained:.3f} mean recall: gain {gain:.3f} "
        f">= {needed:.3f} on {images} held-out images",
        metadata={
            "eval_images": images,
            "min_eval_images": MIN_EVAL_IMAGES,
            "mean_recall_trained": float(trained),
            "mean_recall_untrained": float(untrained),
            "mean_recall_gain": float(gain),
            "min_recall_gain": float(needed),
            "scores_out_of_range": len(invalid),
        },
    )
