"""The rows of one balanced subset: the selected pairs joined with their retrieved texts,
synthetic text and image source, plus a deterministic train / eval split."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
# Columns the subset takes from the synthetic_texts and extracted_images tables.
SYNTHETIC_COLUMNS = ["image_id", "shard", "syn_text", "tags"]
SOURCE_COLUMNS = ["image_id", "shard", "source_ref"]
# retrieved_texts columns renamed in the subset so they say they describe the image.
_RENAMED = {"doc_id": "image_doc_id", "position": "image_position", "path": "image_path"}


class MissingRowsError(LookupError):
    """A selected image has no row in an upstream table (that upstream is stale or partial)."""


def eval_split(image_ids: list[str], fraction: float, min_count: int = 16) -> list[str]:
    """Deterministic held-out split by id hash: the same image is held out at every scale.

    At least `min_count` images (the lowest hashes) are held out so small subsets still get a
    usable evaluation set, but never more than half of a subset by that rule, so a tiny subset
    still has images to train on.
    """

    def bucket(iid: str) -> float:
        return int(hashlib.sha1(iid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    buckets = [bucket(i) for i in image_ids]
    held = min(min_count, len(buckets) // 2)
    cutoff = sorted(buckets)[held - 1] if held > 0 else -1.0
    return [EVAL_SPLIT if b < fraction or b <= cutoff else TRAIN_SPLIT for b in buckets]


def composite_key(table: pa.Table) -> pa.Array:
    """One string per row joining `shard` and `image_id` (a row's identity across tables)."""
    return pc.binary_join_element_wise(table.column("shard"), table.column("image_id"), "\x1f")


def align(table: pa.Table, keys: pa.Table, name: str) -> pa.Table:
    """Rows of `table` in the order of `keys`, matched on (shard, image_id)."""
    index = pc.index_in(composite_key(keys), value_set=composite_key(table))
    if index.null_count:
        raise MissingRowsError(
            f"{index.null_count} selected images have no {name} row: "
            f"rematerialize {name} for all shards"
        )
    return table.take(index)


def subset_rows(
    assignments: pa.Table,
    selected: np.ndarray,
    retrieved: pa.Table,
    synthetic: pa.Table,
    sources: pa.Table,
) -> pa.Table:
    """The selected pairs, sorted by (image_id, shard), with their texts and full lineage.

    `retrieved`, `synthetic` and `sources` are the whole retrieved_texts, synthetic_texts
    (`SYNTHETIC_COLUMNS`) and extracted_images (`SOURCE_COLUMNS`) tables.
    """
    chosen = assignments.take(pa.array(selected, pa.int64())).select(
        ["image_id", "shard", "cluster", "syn_score"]
    )
    chosen = chosen.take(
        pc.sort_indices(chosen, [("image_id", "ascending"), ("shard", "ascending")])
    )
    retrieved = align(retrieved, chosen, "retrieved_texts")
    synthetic = align(synthetic, chosen, "synthetic_texts")
    sources = align(sources, chosen, "extracted_images")
    table = chosen
    for name in retrieved.column_names:
        if name not in ("image_id", "shard"):
            table = table.append_column(_RENAMED.get(name, name), retrieved.column(name))
    table = table.append_column("syn_text", synthetic.column("syn_text"))
    table = table.append_column("tags", synthetic.column("tags"))
    return table.append_column("raw_image_url", sources.column("source_ref"))


def with_split(table: pa.Table, eval_fraction: float, min_eval_images: int) -> pa.Table:
    """`table` with a `split` column ("train" / "eval") from `eval_split` of its image ids."""
    split = eval_split(table.column("image_id").to_pylist(), eval_fraction, min_eval_images)
    return table.append_column("split", pa.array(split))


def split_size(table: pa.Table, split: str) -> int:
    """Rows of `table` in `split`."""
    return int(pc.sum(pc.equal(table.column("split"), split)).as_py() or 0)


def split_rows(table: pa.Table, split: str) -> pa.Table:
    """The rows of `table` in `split`."""
    return table.filter(pc.equal(table.column("split"), split))


def missing_from(outer: pa.Table, inner: pa.Table) -> int:
    """Rows of `inner` whose (shard, image_id) is not in `outer`: 0 when inner ⊆ outer."""
    if inner.num_rows == 0:
        return 0
    present = pc.is_in(composite_key(inner), value_set=composite_key(outer))
    return int(inner.num_rows - (pc.sum(present).as_py() or 0))
