"""train: a CLIP checkpoint per scale on its balanced subset, and its evaluation (paper §4)."""

import json

import dagster as dg
import pyarrow as pa
import pydantic

from realsyn_assets.assets._checks import Result, check_result
from realsyn_assets.assets._common import png_bytes_metadata, stage_metadata
from realsyn_assets.core.balance import subset as subset_core
from realsyn_assets.core.evaluation import chance_recall
from realsyn_assets.core.io import atomic_write_bytes, read_table, resolve_column
from realsyn_assets.core.training import clip as clip_core
from realsyn_assets.core.training.evaluate import RECALLS, evaluate_checkpoint
from realsyn_assets.demo.hook import demo_scorer
from realsyn_assets.names import Asset, Group
from realsyn_assets.names import ClipCheckpointMetrics as TM
from realsyn_assets.names import ClipEvaluationMetrics as EM
from realsyn_assets.partitions import scale_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
)

# Every recall clip_evaluation records: trained, untrained and the chance level.
RECALL_METRICS = frozenset(
    [*RECALLS, *(f"{EM.UNTRAINED_PREFIX}{r}" for r in RECALLS), EM.CHANCE_I2T_R_AT_5]
)


class TrainAssetConfig(dg.Config):
    """Paper defaults (ViT-B/32, 32 epochs, batch 4096); the demo passes smaller values."""

    model_name: str = pydantic.Field("ViT-B-32", description="open_clip model to train.")
    epochs: int = pydantic.Field(32, description="Passes over the training split.")
    batch_size: int = pydantic.Field(4096, description="Image-text pairs per step.")
    lr: float = pydantic.Field(1e-3, description="Peak learning rate of the OneCycle schedule.")
    weight_decay: float = pydantic.Field(0.2, description="AdamW weight decay (matrices only).")
    max_steps: int = pydantic.Field(0, description="Cap on the total steps; 0 = no cap.")
    seed: int = pydantic.Field(0, description="Seed of initialisation, order and caption draws.")
    num_workers: int = pydantic.Field(0, description="DataLoader worker processes.")


def _split(storage: StorageResource, scale: str, split: str) -> pa.Table:
    """The rows of the scale's balanced subset in `split`."""
    path = storage.layout.asset_dir(Asset.BALANCED_SUBSET) / scale / "realsyn.parquet"
    return resolve_column(
        subset_core.split_rows(read_table(path), split), "image_path", storage.layout.root
    )


@dg.asset(
    group_name=Group.TRAIN,
    partitions_def=scale_partitions,
    deps=[Asset.BALANCED_SUBSET],
    pool="encoder",
    description="An open_clip model trained from scratch on the scale's balanced subset: AdamW "
    "(lr 1e-3, wd 0.2, betas 0.9/0.98, eps 1e-6), OneCycle (pct_start 0.1), temperature 0.07, "
    "each step's caption drawn uniformly from the 3 realistic + 1 synthetic texts.",
)
def clip_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainAssetConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    scale = context.partition_key
    table = _split(storage, scale, subset_core.TRAIN_SPLIT)
    samples = clip_core.samples_from_rows(
        table.select(["image_path", *clip_core.TEXT_COLUMNS]).to_pylist()
    )
    if len(samples) < 2:
        raise dg.Failure(f"{scale}: only {len(samples)} training samples")
    train_config = clip_core.TrainConfig(
        model_name=config.model_name,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        max_steps=config.max_steps or None,
        seed=config.seed,
        num_workers=config.num_workers,
        device=encoder.device,
    )
    out_dir = storage.layout.asset_dir(Asset.CLIP_CHECKPOINT) / scale
    result = clip_core.train_clip(samples, train_config, out_dir, log=context.log.info)
    loss_first, loss_last = clip_core.loss_first_last(result.losses)
    counts = {
        TM.SAMPLES: len(samples),
        TM.STEPS: result.steps,
        TM.SECONDS: float(result.seconds),
        TM.LOSS_FIRST: loss_first,
        TM.LOSS_LAST: loss_last,
    }
    meta = stage_metadata(
        metrics, Asset.CLIP_CHECKPOINT, scale, counts, path=result.checkpoint_path
    )
    meta["model_name"] = config.model_name
    if result.loss_plot_path is not None:
        meta["loss_curve"] = png_bytes_metadata(result.loss_plot_path.read_bytes(), "loss")
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=Group.TRAIN,
    partitions_def=scale_partitions,
    deps=[Asset.CLIP_CHECKPOINT],
    description="Held-out evaluation of the scale's checkpoint against the same model untrained: "
    "image<->text1 retrieval R@1/5/10 on the eval split, and zero-shot accuracy over the demo "
    "concepts when the home holds the demo ground truth.",
)
def clip_evaluation(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    metrics: MetricsResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    scale, home = context.partition_key, storage.layout
    held = _split(storage, scale, subset_core.EVAL_SPLIT)
    if held.num_rows < 2:
        raise dg.Failure(f"{scale}: eval split has {held.num_rows} rows; raise eval_fraction")
    paths = held.column("image_path").to_pylist()
    texts = [t or "" for t in held.column("text1").to_pylist()]
    ids = held.column("image_id").to_pylist()
    scorer = demo_scorer(home)  # zero-shot classes exist only for the demo corpus
    concepts = scorer.image_concepts(ids) if scorer else [None] * len(ids)
    after, before = evaluate_checkpoint(
        home.asset_dir(Asset.CLIP_CHECKPOINT) / scale / clip_core.CHECKPOINT_NAME,
        home.models,
        encoder.device,
        paths,
        texts,
        concepts,
        scorer.class_names() if scorer else [],
    )
    chance = chance_recall(len(paths), 1.0, 5)
    counts = {
        EM.EVAL_IMAGES: len(paths),
        **{k: float(v) for k, v in after.items()},
        **{f"{EM.UNTRAINED_PREFIX}{k}": float(v) for k, v in before.items()},
        EM.CHANCE_I2T_R_AT_5: float(chance),
    }
    result = {
        "scale": scale,
        EM.EVAL_IMAGES: len(paths),
        "trained": after,
        "untrained": before,
        EM.CHANCE_I2T_R_AT_5: chance,
    }
    out = home.asset_dir(Asset.CLIP_EVALUATION) / scale / "metrics.json"
    atomic_write_bytes(out, json.dumps(result, indent=2).encode())
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, Asset.CLIP_EVALUATION, scale, counts, path=out)
    )


@dg.asset_check(
    asset=Asset.CLIP_CHECKPOINT,
    partitions_def=scale_partitions,
    description="Training lowered the loss and wrote a checkpoint.",
)
def training_lowered_loss(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    scale = context.partition_key
    counts = metrics.counts(Asset.CLIP_CHECKPOINT, scale)
    exists = (
        storage.layout.asset_dir(Asset.CLIP_CHECKPOINT) / scale / clip_core.CHECKPOINT_NAME
    ).exists()
    first = counts.get(TM.LOSS_FIRST, float("nan"))
    last = counts.get(TM.LOSS_LAST, float("nan"))
    return check_result(
        exists and last < first,
        f"loss {first:.3f} -> {last:.3f}; checkpoint exists: {exists}",
        loss_first=float(first),
        loss_last=float(last),
    )


@dg.asset_check(
    asset=Asset.CLIP_EVALUATION,
    partitions_def=scale_partitions,
    description="Recall metrics are valid probabilities, measured on held-out images.",
)
def evaluation_valid(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    counts = metrics.counts(Asset.CLIP_EVALUATION, context.partition_key)
    recalls = {k: v for k, v in counts.items() if k in RECALL_METRICS}
    ok = (
        bool(recalls)
        and all(0.0 <= v <= 1.0 for v in recalls.values())
        and counts.get(EM.EVAL_IMAGES, 0) >= 2
    )
    return check_result(
        ok,
        f"{len(recalls)} recall metrics on {int(counts.get(EM.EVAL_IMAGES, 0))} images",
        **{k.replace("@", "_at_"): float(v) for k, v in recalls.items()},
    )
