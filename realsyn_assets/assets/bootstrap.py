"""bootstrap_encoder: a small CLIP trained on in-document (image, nearby text) pairs.

Used by the encoder resource whenever no pretrained model or checkpoint is configured, so that
air-gapped runs (and the demo) retrieve texts that make sense instead of noise.
"""

import dataclasses
import json

import dagster as dg
import numpy as np
import pyarrow as pa

from realsyn_assets.assets._common import png_bytes_metadata, stage_metadata
from realsyn_assets.assets.retrieve import ALL_SHARDS
from realsyn_assets.core.bootstrap import (
    label_precision,
    mine_pairs,
    reselect_pairs,
    retrieval_precision,
)
from realsyn_assets.resources import EncoderResource, MetricsResource, StorageResource
from realsyn_assets.resources.encoder import bootstrap_checkpoint
from realsyn_assets.resources.home import atomic_write_bytes


class BootstrapConfig(dg.Config):
    model_name: str = "realsyn-tiny"  # small enough to train in minutes on 2 CPU cores
    window: int = 1  # nearest text block(s) before and after each image
    epochs: int = 30  # first round, on every nearby sentence
    rounds: int = 3  # later rounds re-select each image's best nearby sentence with the last model
    refine_epochs: int = 15  # each later round, starting from the previous checkpoint
    batch_size: int = 64
    lr: float = 1e-3
    max_steps: int = 0  # 0 = no cap
    seed: int = 0
    eval_images: int = 300


def _evaluate(encoder, image_rows: list[dict], sentences: pa.Table, truth, seed: int) -> dict:
    """Top-1..3 exact retrieval over every kept sentence for a sample of images."""
    from realsyn_assets.core.retrieval import retrieve_exact

    texts = sentences.column("text").to_pylist()
    ids = sentences.column("sentence_id").to_pylist()
    doc_ids = sentences.column("doc_id").to_pylist()
    image_vecs = encoder.encode_images([r["path"] for r in image_rows])
    result = retrieve_exact(image_vecs, encoder.encode_texts(texts), k=3)
    same_doc = float(
        np.mean(
            [
                doc_ids[i] == r["doc_id"]
                for i, r in zip(result.indices[:, 0], image_rows, strict=True)
            ]
        )
    )
    scores = {"top1_same_document": same_doc}
    if truth is not None:
        retrieved = [[ids[i] if i >= 0 else None for i in row] for row in result.indices]
        scores.update(
            retrieval_precision(
                [r["image_id"] for r in image_rows],
                retrieved,
                truth.describes,
                lambda i: truth.image_concept(i) is not None,
            )
        )
    return scores


@dg.asset(
    group_name="embed",
    deps=[
        dg.AssetDep("raw_documents", partition_mapping=ALL_SHARDS),
        dg.AssetDep("extracted_images", partition_mapping=ALL_SHARDS),
        dg.AssetDep("extracted_sentences", partition_mapping=ALL_SHARDS),
    ],
    pool="encoder",
    description="A small open_clip model trained contrastively on (image, nearest text block) "
    "pairs mined from the documents; the encoder resource uses it whenever no pretrained model "
    "or checkpoint is configured. Metadata compares its retrieval with random weights.",
)
def bootstrap_encoder(
    context: dg.AssetExecutionContext,
    config: BootstrapConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    from realsyn_assets.core.encoder import Encoder, EncoderSpec, file_sha1
    from realsyn_assets.core.train import TrainConfig, train_clip

    home = storage.layout
    if encoder.pretrained or encoder.checkpoint:
        identity = encoder.get().identity
        context.log.info(f"not training: the configured encoder wins ({identity})")
        return dg.MaterializeResult(
            metadata={"used": False, "encoder": identity}, data_version=dg.DataVersion(identity)
        )
    items = storage.read_shards("raw_documents", columns=["doc_id", "position", "kind"])
    images = storage.read_shards(
        "extracted_images", columns=["image_id", "doc_id", "position", "path"]
    )
    sentences = storage.read_shards(
        "extracted_sentences", columns=["sentence_id", "doc_id", "position", "text"]
    )
    samples = mine_pairs(items, images, sentences, window=config.window)
    if len(samples) < 8:
        raise dg.Failure(f"only {len(samples)} (image, nearby text) pairs: too few to train on")
    out_dir = home.asset_dir("bootstrap_encoder")
    train_config = TrainConfig(
        model_name=config.model_name,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        max_steps=config.max_steps or None,
        seed=config.seed,
        device=encoder.device,
    )
    pairs, init, losses, steps, seconds = samples, None, [], 0, 0.0
    label_history = []
    first_round_steps = 0
    for round_index in range(1, max(1, config.rounds) + 1):
        last = round_index == max(1, config.rounds)
        if round_index > 1:
            pairs = reselect_pairs(
                Encoder(
                    EncoderSpec(
                        model_name=config.model_name, checkpoint=init, device=encoder.device
                    ),
                    home.models,
                ),
                samples,
            )
        label_history.append(pairs)
        context.log.info(f"round {round_index}: training {config.model_name} on {len(pairs)} pairs")
        epochs = config.epochs if round_index == 1 else config.refine_epochs
        result = train_clip(
            pairs,
            dataclasses.replace(train_config, epochs=epochs),
            out_dir if last else out_dir / f"round{round_index}",
            init_checkpoint=init,
            log=context.log.info,
        )
        init = str(result.checkpoint_path)
        if round_index == 1:
            first_round_steps = result.steps
        losses += list(result.losses)
        steps += result.steps
        seconds += result.seconds

    truth = None
    if home.ground_truth is not None:
        from realsyn_assets.core.demo_corpus import load_ground_truth

        truth = load_ground_truth(home.ground_truth)
    rng = np.random.default_rng(config.seed)
    rows = images.to_pylist()
    rows = [
        rows[i]
        for i in sorted(rng.choice(len(rows), min(config.eval_images, len(rows)), replace=False))
    ]
    trained = Encoder(
        EncoderSpec(
            model_name=config.model_name,
            checkpoint=str(result.checkpoint_path),
            device=encoder.device,
        ),
        home.models,
    )
    random = Encoder(EncoderSpec(model_name=config.model_name, device=encoder.device), home.models)
    after = _evaluate(trained, rows, sentences, truth, config.seed)
    before = _evaluate(random, rows, sentences, truth, config.seed)
    in_doc: dict[str, float] = {}
    if truth is not None:
        from realsyn_assets.core.ids import sentence_id

        def labelled(image_id: str) -> bool:
            return truth.image_concept(image_id) is not None

        nearest = {s.image_path: s.texts[0] for s in samples}
        in_doc = retrieval_precision(
            [r["image_id"] for r in rows],
            [[sentence_id(nearest[r["path"]])] if r["path"] in nearest else [None] for r in rows],
            truth.describes,
            labelled,
        )
        id_of = dict(
            zip(
                images.column("path").to_pylist(),
                images.column("image_id").to_pylist(),
                strict=True,
            )
        )
        for r, used in enumerate(label_history, start=1):
            in_doc[f"round{r}_label_precision"] = label_precision(
                used, id_of.__getitem__, truth.describes, labelled, sentence_id
            )
    # loss of the first round: the contrastive objective on the raw mined pairs
    first_round = np.asarray(losses[:first_round_steps] or losses)
    tenth = max(1, len(first_round) // 10)
    counts = {
        "pairs": len(samples),
        "rounds": max(1, config.rounds),
        "steps": steps,
        "seconds": float(seconds),
        "loss_first": float(first_round[:tenth].mean()),
        "loss_last": float(first_round[-tenth:].mean()),
        **{f"bootstrap_{k}": float(v) for k, v in after.items()},
        **{f"random_{k}": float(v) for k, v in before.items()},
        **{
            f"in_document_{k}": float(v)
            for k, v in in_doc.items()
            if k.startswith(("precision_text1", "round"))
        },
    }
    meta = stage_metadata(
        metrics, "bootstrap_encoder", "__all__", counts, path=result.checkpoint_path
    )
    meta["used"] = True
    if result.loss_plot_path is not None:
        meta["loss_curve"] = png_bytes_metadata(result.loss_plot_path.read_bytes(), "loss")
    sidecar = {"model_name": config.model_name, "checkpoint": str(result.checkpoint_path)}
    atomic_write_bytes(out_dir / "encoder.json", json.dumps(sidecar).encode())
    if result.checkpoint_path != bootstrap_checkpoint(home):
        raise dg.Failure(
            f"checkpoint written to {result.checkpoint_path}, expected {bootstrap_checkpoint(home)}"
        )
    return dg.MaterializeResult(
        metadata=meta, data_version=dg.DataVersion(file_sha1(result.checkpoint_path))
    )
