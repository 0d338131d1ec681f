"""train: a CLIP checkpoint per scale on its balanced subset, and its evaluation (paper §4)."""

import json

import dagster as dg
import numpy as np
import pyarrow.compute as pc

from realsyn_assets.assets._checks import Result, check_result
from realsyn_assets.assets._common import png_bytes_metadata, stage_metadata
from realsyn_assets.core.io import atomic_write_bytes, read_table
from realsyn_assets.partitions import scale_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
)

TEXT_COLUMNS = ("text1", "text2", "text3", "syn_text")


class TrainAssetConfig(dg.Config):
    """Paper defaults (ViT-B/32, 32 epochs, batch 4096); the demo passes smaller values."""

    model_name: str = "ViT-B-32"
    epochs: int = 32
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.2
    max_steps: int = 0  # 0 = no cap
    seed: int = 0
    num_workers: int = 0


def _subset(storage: StorageResource, scale: str):
    path = storage.layout.asset_dir("balanced_subset") / scale / "realsyn.parquet"
    return read_table(path)


@dg.asset(
    group_name="train",
    partitions_def=scale_partitions,
    deps=["balanced_subset"],
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
    from realsyn_assets.core.training.clip import TrainConfig, TrainSample, train_clip

    scale = context.partition_key
    table = _subset(storage, scale)
    table = table.filter(pc.equal(table.column("split"), "train"))
    rows = table.select(["image_path", *TEXT_COLUMNS]).to_pylist()
    samples = [
        TrainSample(image_path=r["image_path"], texts=[r[c] for c in TEXT_COLUMNS if r[c]])
        for r in rows
    ]
    samples = [s for s in samples if s.texts]
    if len(samples) < 2:
        raise dg.Failure(f"{scale}: only {len(samples)} training samples")
    train_config = TrainConfig(
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
    out_dir = storage.layout.asset_dir("clip_checkpoint") / scale
    result = train_clip(samples, train_config, out_dir, log=context.log.info)
    losses = np.asarray(result.losses, dtype=np.float64)
    head = float(losses[: max(1, len(losses) // 10)].mean())
    tail = float(losses[-max(1, len(losses) // 10) :].mean())
    counts = {
        "samples": len(samples),
        "steps": result.steps,
        "seconds": float(result.seconds),
        "loss_first": head,
        "loss_last": tail,
    }
    meta = stage_metadata(metrics, "clip_checkpoint", scale, counts, path=result.checkpoint_path)
    meta["model_name"] = config.model_name
    if result.loss_plot_path is not None:
        meta["loss_curve"] = png_bytes_metadata(result.loss_plot_path.read_bytes(), "loss")
    return dg.MaterializeResult(metadata=meta)


def _evaluate(encoder, paths, texts, concepts, class_names) -> dict[str, float]:
    from realsyn_assets.core.evaluation import retrieval_recall, zero_shot_accuracy

    image_emb = encoder.encode_images(paths)
    text_emb = encoder.encode_texts(texts)
    scores = retrieval_recall(image_emb, text_emb, np.arange(len(paths)), ks=(1, 5, 10))
    if class_names:
        labelled = [i for i, c in enumerate(concepts) if c in class_names]
        if labelled:
            class_emb = encoder.encode_texts([f"a photo of a {c}" for c in class_names])
            labels = np.array([class_names.index(concepts[i]) for i in labelled])
            scores["zero_shot_accuracy"] = zero_shot_accuracy(
                image_emb[labelled], class_emb, labels
            )
    return scores


@dg.asset(
    group_name="train",
    partitions_def=scale_partitions,
    deps=["clip_checkpoint"],
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
    from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec
    from realsyn_assets.core.evaluation import chance_recall

    scale = context.partition_key
    table = _subset(storage, scale)
    held = table.filter(pc.equal(table.column("split"), "eval"))
    if held.num_rows < 2:
        raise dg.Failure(f"{scale}: eval split has {held.num_rows} rows; raise eval_fraction")
    paths = held.column("image_path").to_pylist()
    texts = [t or "" for t in held.column("text1").to_pylist()]
    concepts: list[str | None] = [None] * len(paths)
    class_names: list[str] = []
    home = storage.layout
    if home.ground_truth is not None:
        from realsyn_assets.demo.corpus import CONCEPTS, load_ground_truth

        truth = load_ground_truth(home.ground_truth)
        concepts = [truth.image_concept(i) for i in held.column("image_id").to_pylist()]
        class_names = list(CONCEPTS)
    checkpoint = home.asset_dir("clip_checkpoint") / scale / "checkpoint.pt"
    import torch

    model_name = torch.load(checkpoint, map_location="cpu", weights_only=False).get("model_name")
    trained = Encoder(
        EncoderSpec(model_name=model_name, checkpoint=str(checkpoint), device=encoder.device),
        home.models,
    )
    untrained = Encoder(EncoderSpec(model_name=model_name, device=encoder.device), home.models)
    after = _evaluate(trained, paths, texts, concepts, class_names)
    before = _evaluate(untrained, paths, texts, concepts, class_names)
    result = {
        "scale": scale,
        "eval_images": len(paths),
        "trained": after,
        "untrained": before,
        "chance_i2t_R@5": chance_recall(len(paths), 1.0, 5),
    }
    out = home.asset_dir("clip_evaluation") / scale / "metrics.json"
    atomic_write_bytes(out, json.dumps(result, indent=2).encode())
    counts = {
        "eval_images": len(paths),
        **{f"{k}": float(v) for k, v in after.items()},
        **{f"untrained_{k}": float(v) for k, v in before.items()},
        "chance_i2t_R@5": float(result["chance_i2t_R@5"]),
    }
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, "clip_evaluation", scale, counts, path=out)
    )


@dg.asset_check(
    asset="clip_checkpoint",
    partitions_def=scale_partitions,
    description="Training lowered the loss and wrote a checkpoint.",
)
def training_lowered_loss(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    counts = metrics.counts("clip_checkpoint", context.partition_key)
    exists = (
        storage.layout.asset_dir("clip_checkpoint") / context.partition_key / "checkpoint.pt"
    ).exists()
    first, last = counts.get("loss_first", float("nan")), counts.get("loss_last", float("nan"))
    return check_result(
        exists and last < first,
        f"loss {first:.3f} -> {last:.3f}; checkpoint exists: {exists}",
        loss_first=float(first),
        loss_last=float(last),
    )


@dg.asset_check(
    asset="clip_evaluation",
    partitions_def=scale_partitions,
    description="Recall metrics are valid probabilities, measured on held-out images.",
)
def evaluation_valid(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    counts = metrics.counts("clip_evaluation", context.partition_key)
    recalls = {k: v for k, v in counts.items() if "R@" in k}
    ok = (
        bool(recalls)
        and all(0.0 <= v <= 1.0 for v in recalls.values())
        and counts.get("eval_images", 0) >= 2
    )
    return check_result(
        ok,
        f"{len(recalls)} recall metrics on {int(counts.get('eval_images', 0))} images",
        **{k.replace("@", "_at_"): float(v) for k, v in recalls.items()},
    )
