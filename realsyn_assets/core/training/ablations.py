"""The paper's ablations (§10, Tables 5-6) at one scale: CLIP trained on the same number of pairs
with the same training config, changing one thing at a time.

* realistic_only: the balanced subset's train split, captions drawn from text1..text3;
* synthetic_only: the same pairs, captions = syn_text;
* random_sampling: as many pairs drawn uniformly from the same candidate pool (image_clusters'
  in-window rows, held-out images excluded) instead of balanced per cluster, all four texts;
* the RealSyn recipe (balanced, realistic + synthetic) is `clip_checkpoint` itself, not retrained.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from realsyn_assets.core.balance.sampling import select_random
from realsyn_assets.core.training.clip import TEXT_COLUMNS, TrainConfig

REALSYN = "realsyn"
REALISTIC_ONLY = "realistic_only"
SYNTHETIC_ONLY = "synthetic_only"
RANDOM_SAMPLING = "random_sampling"
UNTRAINED = "untrained"
BALANCED = "balanced"
RANDOM = "random"


@dataclass(frozen=True)
class Variant:
    name: str
    text_columns: tuple[str, ...]
    sampling: str  # BALANCED or RANDOM
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(REALSYN, TEXT_COLUMNS, BALANCED, "RealSyn recipe: text1-3 + syn_text, balanced"),
        Variant(REALISTIC_ONLY, TEXT_COLUMNS[:3], BALANCED, "realistic texts text1-3 only"),
        Variant(SYNTHETIC_ONLY, TEXT_COLUMNS[3:], BALANCED, "synthetic text syn_text only"),
        Variant(RANDOM_SAMPLING, TEXT_COLUMNS, RANDOM, "random pairs of the same count"),
    )
}


def random_pool_indices(
    assignments: pa.Table, held_out: Collection[tuple[str, str]], size: int, seed: int
) -> np.ndarray:
    """Rows of the image_clusters `assignments` for the random-sampling variant: `size` rows
    drawn uniformly (seeded) from the in-window candidates whose (shard, image_id) is not held
    out, so the variant never trains on an evaluation image. Sorted row indices."""
    in_window = np.asarray(assignments.column("in_window").to_numpy(zero_copy_only=False))
    keys = zip(
        assignments.column("shard").to_pylist(),
        assignments.column("image_id").to_pylist(),
        strict=True,
    )
    held = set(held_out)
    pool = np.array(
        [i for i, key in enumerate(keys) if in_window[i] and key not in held], dtype=np.int64
    )
    if size > len(pool):
        raise ValueError(f"random sampling needs {size} pairs; the pool holds {len(pool)}")
    return np.sort(pool[np.asarray(select_random(len(pool), size, seed), dtype=np.int64)])


def held_out_keys(table: pa.Table) -> set[tuple[str, str]]:
    """(shard, image_id) of every row of a subset table."""
    return set(
        zip(table.column("shard").to_pylist(), table.column("image_id").to_pylist(), strict=True)
    )


def train_config_from(saved: Mapping, device: str) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with (`train_config` of its state), on `device`;
    keys this TrainConfig does not know are ignored."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in known}
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return TrainConfig(**{**values, "device": device})


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """A GitHub markdown table of `rows` (dicts) over `columns`; missing cells stay empty."""
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body]) + "\n"
