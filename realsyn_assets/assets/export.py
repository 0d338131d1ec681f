"""export: a scale's balanced subset as train and eval files apart (parquet + WebDataset tars
that open_clip_train reads as they are) and its data card with plots (paper §3.3, §5)."""

import json

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydantic

from realsyn_assets.assets._checks import Result, check_result, zero_rows_result
from realsyn_assets.assets._common import code_version, png_metadata, stage_metadata
from realsyn_assets.core.balance import datacard as card_core
from realsyn_assets.core.balance import export as export_core
from realsyn_assets.core.balance import sampling as balance_core
from realsyn_assets.core.balance import subset as subset_core
from realsyn_assets.core.balance.files import (
    ASSIGNMENTS,
    CLUSTER_SIZES_FILE,
    SELECTION_FILE,
    SUBSET_FILE,
)
from realsyn_assets.core.io import read_table
from realsyn_assets.core.quality import report as report_core
from realsyn_assets.names import Asset, Group, Kind
from realsyn_assets.names import BalancedSubsetMetadata as BD
from realsyn_assets.names import BalancedSubsetMetrics as BM
from realsyn_assets.names import SubsetExportMetrics as XM
from realsyn_assets.partitions import ALL_SHARDS, scale_partitions
from realsyn_assets.resources import EncoderResource, MetricsResource, StorageResource

DATA_CARD = "DATA_CARD.md"
CLUSTER_PLOT = "cluster_sizes.png"
SIMILARITY_PLOT = "similarity.png"
SPLITS = (subset_core.TRAIN_SPLIT, subset_core.EVAL_SPLIT)
# synthetic_texts columns naming how each syn_text was made (the model columns are optional).
GENERATOR_COLUMNS = {"backend": "generator", "model": "generator_model"}
CAPTIONER_COLUMNS = {"backend": "caption_backend", "model": "caption_model"}
# Similarity histograms: text column -> its image-text cosine column in the subset.
SCORE_COLUMNS = {"text1": "text1_score", "syn_text": "syn_score"}


class ExportConfig(dg.Config):
    samples_per_tar: int = pydantic.Field(1000, description="Samples per WebDataset tar shard.")
    random_seed: int = pydantic.Field(
        0,
        description="Seed of the random sampling of the same size shown beside balanced "
        "sampling on the data card.",
    )


@dg.asset(
    group_name=Group.BALANCE,
    partitions_def=scale_partitions,
    deps=[
        Asset.BALANCED_SUBSET,
        Asset.IMAGE_CLUSTERS,
        dg.AssetDep(Asset.SYNTHETIC_TEXTS, partition_mapping=ALL_SHARDS),
    ],
    code_version=code_version("1", ExportConfig),
    kinds={Kind.PARQUET},
    description="One scale's balanced subset exported for training, train and eval apart, in "
    "data/subset_export/<scale>/: train.parquet / eval.parquet and WebDataset tars "
    "webdataset/train/*.tar / webdataset/eval/*.tar (jpg + txt = text1 + json = text2, text3, "
    "syn_text, lineage) that open_clip_train reads as they are, and DATA_CARD.md with "
    "cluster-size and similarity plots, token lengths, the funnel, the generator and encoder, "
    "and balanced vs random sampling. A rerun rewrites every file with the same bytes for the "
    "same subset.",
)
def subset_export(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    scale = context.partition_key
    table = read_table(storage.layout.asset_dir(Asset.BALANCED_SUBSET) / scale / SUBSET_FILE)
    out_dir = storage.layout.asset_dir(Asset.SUBSET_EXPORT) / scale
    try:
        exports = export_core.export_splits(
            table,
            out_dir,
            SPLITS,
            samples_per_shard=config.samples_per_tar,
            image_root=storage.layout.root,
        )
    except ValueError as exc:
        raise dg.Failure(f"{scale}: {exc}") from exc
    by_split = {e.split: e for e in exports}
    skipped: dict[str, int] = {}
    for e in exports:
        for reason, n in e.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    train, held = by_split[subset_core.TRAIN_SPLIT], by_split[subset_core.EVAL_SPLIT]
    counts = {
        XM.SUBSET_ROWS: table.num_rows,
        XM.TRAIN_SAMPLES: train.rows,
        XM.EVAL_SAMPLES: held.rows,
        XM.SKIPPED_ROWS: sum(skipped.values()),
        XM.TRAIN_SHARDS: len(train.shards),
        XM.EVAL_SHARDS: len(held.shards),
    }
    kept = pa.concat_tables([read_table(e.parquet) for e in exports])
    card, figures = _data_card(storage, metrics, encoder, scale, kept, exports, config.random_seed)
    card_core.write_data_card(out_dir / DATA_CARD, card)
    meta = stage_metadata(
        metrics, Asset.SUBSET_EXPORT, scale, counts, skipped, kept, out_dir / DATA_CARD
    )
    for name, figure in figures.items():
        meta[name.removesuffix(".png")] = png_metadata(figure)
    meta["data_card"] = dg.MetadataValue.md(card_core.render_data_card(card))
    meta["train_data"] = export_core.webdataset_pattern(train.shards) or ""
    return dg.MaterializeResult(metadata=meta)


def _selection(storage: StorageResource, scale: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """balanced_subset's selection record and cluster sizes before / after (by cluster id);
    empty when the subset was drawn before it wrote them."""
    folder = storage.layout.asset_dir(Asset.BALANCED_SUBSET) / scale
    record = {}
    if (folder / SELECTION_FILE).exists():
        record = json.loads((folder / SELECTION_FILE).read_text())
    before = after = np.zeros(0, np.int64)
    if (folder / CLUSTER_SIZES_FILE).exists():
        with np.load(folder / CLUSTER_SIZES_FILE) as sizes:
            before, after = sizes["before"], sizes["after"]
    return record, before, after


def _provenance(storage: StorageResource, ids: pa.Array) -> tuple[list[str], list[str]]:
    """Generator and captioner lines for the syn_texts of these image ids, from the columns
    synthetic_texts has (GENERATOR_COLUMNS, CAPTIONER_COLUMNS)."""
    files = storage.shard_files(Asset.SYNTHETIC_TEXTS)
    names = set(pq.read_schema(files[0]).names) if files else set()
    wanted = [c for c in (*GENERATOR_COLUMNS.values(), *CAPTIONER_COLUMNS.values()) if c in names]
    if not wanted:
        return [], []
    syn = storage.read_shards(Asset.SYNTHETIC_TEXTS, columns=["image_id", *wanted])
    syn = syn.filter(pc.is_in(syn.column("image_id"), value_set=ids))
    lines = []
    for columns, role in ((GENERATOR_COLUMNS, "generator"), (CAPTIONER_COLUMNS, "captioner")):
        values = {k: syn.column(c).to_pylist() for k, c in columns.items() if c in names}
        lines.append(card_core.provenance_lines(values, role) if "backend" in values else [])
    return lines[0], lines[1]


def _sampling_rows(storage: StorageResource, kept: pa.Table, seed: int) -> list[dict]:
    """Balanced (the exported rows) vs uniform random sampling of the same size from the
    in-window pool of image_clusters."""
    pool = read_table(
        storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS,
        columns=["in_window", "cluster", "syn_score"],
    )
    pool = pool.filter(pool.column("in_window"))
    size = min(kept.num_rows, pool.num_rows)
    return card_core.sampling_comparison(
        pool.column("cluster").to_numpy(),
        pool.column("syn_score").to_numpy(zero_copy_only=False),
        kept.column("cluster").to_numpy(),
        kept.column("syn_score").to_numpy(zero_copy_only=False),
        balance_core.select_random(pool.num_rows, size, seed),
    )


def _funnel(metrics: MetricsResource, scale: str, samples: int) -> list[dict]:
    """The image funnel the quality report shows, plus this subset as its last step."""
    rows = report_core.funnel_rows(
        report_core.IMAGE_FUNNEL, metrics.total, report_core.PAPER_IMAGES
    )
    first = rows[0]["count"] if rows else 0
    paper = balance_core.PAPER_SCALE_SAMPLES_M.get(scale)
    rows.append(
        {
            "step": f"{scale} subset (exported)",
            "count": samples,
            "fraction": samples / first if first else None,
            "paper_fraction": paper * 1e6 / report_core.PAPER_IMAGES[0] if paper else None,
        }
    )
    return rows


def _figures(storage, scale: str, kept: pa.Table, record: dict) -> dict:
    """The card's plots, written as PNGs next to it: cluster sizes before / after (from the
    selection sidecar, else counted from the data) and the similarity histograms."""
    _, before, after = _selection(storage, scale)
    if not before.size:
        pool = read_table(
            storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS, ["in_window", "cluster"]
        )
        before = card_core.sizes_by_id(pool.filter(pool.column("in_window")).column("cluster"))
        after = card_core.sizes_by_id(kept.column("cluster"))
    cap = record.get(BM.CAP_PER_CLUSTER)
    scores = {
        text: kept.column(score).to_numpy(zero_copy_only=False)
        for text, score in SCORE_COLUMNS.items()
        if score in kept.column_names
    }
    figures = {
        CLUSTER_PLOT: card_core.cluster_size_figure(
            card_core.sizes_by_rank(before),
            card_core.sizes_by_rank(after),
            int(cap) if cap is not None else None,
        ),
        SIMILARITY_PLOT: card_core.similarity_figure(scores),
    }
    out_dir = storage.layout.asset_dir(Asset.SUBSET_EXPORT) / scale
    for name, figure in figures.items():
        card_core.save_png(figure, out_dir / name)
    return figures


def _relative_pattern(shards, storage: StorageResource, scale: str) -> str | None:
    """The train tars' brace pattern relative to the export folder (where the card is)."""
    pattern = export_core.webdataset_pattern(shards)
    folder = str(storage.layout.asset_dir(Asset.SUBSET_EXPORT) / scale) + "/"
    return pattern.removeprefix(folder) if pattern else None


def _data_card(storage, metrics, encoder, scale: str, kept: pa.Table, exports, seed: int):
    """The card's content and its figures."""
    record, _, _ = _selection(storage, scale)
    record = {**metrics.counts(Asset.BALANCED_SUBSET, scale), **record}
    figures = _figures(storage, scale, kept, record)
    generators, captioners = _provenance(storage, kept.column("image_id"))
    texts = {
        c: kept.column(c).to_pylist() for c in card_core.TEXT_COLUMNS if c in kept.column_names
    }
    as_int = {
        k: int(record[k])
        for k in (BM.CAP_PER_CLUSTER, BM.CLUSTERS, BM.CANDIDATE_PAIRS)
        if k in record
    }
    card = card_core.DataCard(
        scale=scale,
        train_samples=exports[0].rows,
        eval_samples=exports[1].rows,
        columns=kept.column_names,
        cap=as_int.get(BM.CAP_PER_CLUSTER),
        cap_rule=record.get(BD.CAP_RULE),
        target_share=record.get(BM.TARGET_SHARE),
        achieved_share=record.get(BM.ACHIEVED_SHARE),
        clusters=as_int.get(BM.CLUSTERS),
        candidate_pairs=as_int.get(BM.CANDIDATE_PAIRS),
        clusters_version=record.get(BD.CLUSTERS_VERSION),
        shards={e.split: len(e.shards) for e in exports},
        train_data=_relative_pattern(exports[0].shards, storage, scale),
        encoder=encoder.get().identity,
        generators=generators,
        captioners=captioners,
        funnel=_funnel(metrics, scale, kept.num_rows),
        token_lengths=card_core.token_length_rows(texts, card_core.clip_token_counter()),
        sampling=_sampling_rows(storage, kept, seed),
        plots={
            "Cluster sizes before / after balance sampling": CLUSTER_PLOT,
            "Image–text1 and image–syn_text cosine similarity": SIMILARITY_PLOT,
        },
    )
    return card, figures


def _export_check(description: str):
    """A blocking per-scale check of subset_export (training reads what it guards)."""
    return dg.asset_check(
        asset=Asset.SUBSET_EXPORT,
        partitions_def=scale_partitions,
        blocking=True,
        description=description,
    )


def _export_dir(storage: StorageResource, scale: str):
    return storage.layout.asset_dir(Asset.SUBSET_EXPORT) / scale


def _parquet_ids(storage: StorageResource, scale: str) -> dict[str, list[str]]:
    """Split -> the image ids of its parquet file."""
    folder = _export_dir(storage, scale)
    return {
        split: read_table(folder / f"{split}.parquet", ["image_id"]).column("image_id").to_pylist()
        for split in SPLITS
    }


def _tar_samples(storage: StorageResource, scale: str) -> dict[str, dict[str, dict[str, int]]]:
    """Split -> its tars' samples (key -> {extension: bytes})."""
    folder = _export_dir(storage, scale)
    return {s: export_core.tar_inventory(export_core.shard_paths(folder, s)) for s in SPLITS}


@_export_check("No image is in both train and eval (parquet files and tar sets).")
def export_splits_disjoint(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return splits_disjoint(storage, context.partition_key)


def splits_disjoint(storage: StorageResource, scale: str) -> Result:
    """The result of `export_splits_disjoint` for one scale."""
    ids = _parquet_ids(storage, scale)
    tars = _tar_samples(storage, scale)
    train, held = SPLITS
    in_both = set(ids[train]) & set(ids[held])
    tar_both = set(tars[train]) & set(tars[held])
    return check_result(
        not in_both and not tar_both,
        f"{len(in_both)} image ids in both parquet splits, {len(tar_both)} keys in both tar "
        f"sets (threshold 0); train {len(ids[train])}, eval {len(ids[held])}",
        shared_ids=len(in_both),
        shared_tar_keys=len(tar_both),
        threshold=0,
    )


@_export_check("Each split's tars hold exactly the samples of its parquet file.")
def export_tars_match_parquet(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return tars_match_parquet(storage, context.partition_key)


def tars_match_parquet(storage: StorageResource, scale: str) -> Result:
    """The result of `export_tars_match_parquet` for one scale."""
    ids = _parquet_ids(storage, scale)
    tars = _tar_samples(storage, scale)
    problems, meta, mismatched = [], {}, 0
    for split in SPLITS:
        expected = {export_core.sample_key(i) for i in ids[split]}
        meta[f"{split}_parquet_rows"] = len(ids[split])
        meta[f"{split}_tar_samples"] = len(tars[split])
        only_one = len(expected ^ set(tars[split]))
        mismatched += only_one + abs(len(tars[split]) - len(ids[split])) * (not only_one)
        if len(tars[split]) != len(ids[split]) or set(tars[split]) != expected:
            problems.append(
                f"{split}: {len(tars[split])} tar samples vs {len(ids[split])} parquet rows, "
                f"{only_one} ids in only one of them"
            )
    return check_result(
        not problems,
        "; ".join(problems) or "tar samples = parquet rows in every split",
        mismatched_samples=mismatched,
        threshold=0,
        **meta,
    )


@_export_check("Every tar sample has a non-empty image (jpg/png/jpeg/webp) and txt.")
def export_samples_complete(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return samples_complete(storage, context.partition_key)


def samples_complete(storage: StorageResource, scale: str) -> Result:
    """The result of `export_samples_complete` for one scale."""
    tars = _tar_samples(storage, scale)
    samples = {key: members for split in SPLITS for key, members in tars[split].items()}
    if not tars[subset_core.TRAIN_SPLIT]:
        return zero_rows_result(f"{scale} exported no training sample")
    incomplete = sorted(
        key
        for key, members in samples.items()
        if not members.get("txt")
        or not any(members.get(ext) for ext in export_core.IMAGE_EXTENSIONS)
    )
    return check_result(
        not incomplete,
        f"{len(incomplete)} of {len(samples)} samples lack an image or a caption (threshold 0)"
        + (f", e.g. {incomplete[:3]}" if incomplete else ""),
        incomplete=len(incomplete),
        samples=len(samples),
        threshold=0,
    )
