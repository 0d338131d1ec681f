"""The ablation helpers: the random-sampling draw (same pool, held-out images never drawn), the
recipe's training config carried over, and the markdown table."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.training import ablations as ab
from realsyn_assets.core.training.clip import TEXT_COLUMNS, TrainConfig


def _assignments(n: int = 40) -> pa.Table:
    return pa.table(
        {
            "image_id": [f"img{i:03d}" for i in range(n)],
            "shard": ["s0" if i % 2 else "s1" for i in range(n)],
            "syn_score": np.linspace(0, 1, n).astype(np.float32),
            "in_window": [i % 5 != 0 for i in range(n)],
            "cluster": [i % 3 if i % 5 else -1 for i in range(n)],
        }
    )


def test_random_pool_draws_in_window_rows_and_never_a_held_out_image():
    table = _assignments()
    held = {("s0", "img001"), ("s1", "img002"), ("s0", "img003")}
    picked = ab.random_pool_indices(table, held, size=20, seed=0)
    assert len(picked) == len(set(picked.tolist())) == 20
    assert list(picked) == sorted(picked)
    keys = ab.held_out_keys(table.take(pa.array(picked)))
    assert not keys & held
    assert all(table.column("in_window")[int(i)].as_py() for i in picked)
    again = ab.random_pool_indices(table, held, size=20, seed=0)
    assert np.array_equal(picked, again)
    assert not np.array_equal(picked, ab.random_pool_indices(table, held, size=20, seed=1))


def test_random_pool_larger_than_the_pool_fails_clearly():
    with pytest.raises(ValueError, match="pool holds 30"):
        ab.random_pool_indices(_assignments(), {("s0", "img001"), ("s1", "img002")}, 31, 0)


def test_variants_change_one_thing_each():
    recipe = ab.VARIANTS[ab.REALSYN]
    assert recipe.text_columns == TEXT_COLUMNS and recipe.sampling == ab.BALANCED
    assert ab.VARIANTS[ab.REALISTIC_ONLY].text_columns == ("text1", "text2", "text3")
    assert ab.VARIANTS[ab.SYNTHETIC_ONLY].text_columns == ("syn_text",)
    random = ab.VARIANTS[ab.RANDOM_SAMPLING]
    assert random.text_columns == TEXT_COLUMNS and random.sampling == ab.RANDOM


def test_train_config_is_the_recipes_on_this_device():
    saved = {**TrainConfig(epochs=7, batch_size=16, seed=3).__dict__, "unknown_key": 1}
    saved["betas"] = list(saved["betas"])  # as a checkpoint stores it
    config = ab.train_config_from(saved, "cpu")
    assert (config.epochs, config.batch_size, config.seed, config.device) == (7, 16, 3, "cpu")
    assert config.betas == TrainConfig().betas


def test_markdown_table_formats_floats_and_leaves_gaps():
    rows = [{"model": "a", "x": 0.12345, "y": 3}, {"model": "b", "x": math.nan}]
    text = ab.markdown_table(rows, ["model", "x", "y"])
    assert text.splitlines() == [
        "| model | x | y |",
        "|---|---|---|",
        "| a | 0.123 | 3 |",
        "| b |  |  |",
    ]


def test_table_columns_group_held_out_scores_then_each_user_set():
    from realsyn_assets.core.training.evaluate import RECALLS, score_columns
    from realsyn_assets.names import ClipEvaluationMetrics as EM

    caps = f"{EM.CAPTIONS_SET_PREFIX}f"
    keys = [f"{caps}/i2t_R@10", f"{caps}/i2t_R@5", EM.ZERO_SHOT_ACCURACY, *reversed(RECALLS)]
    assert score_columns({"m": dict.fromkeys(keys, 0.5)}) == [
        *RECALLS,
        EM.ZERO_SHOT_ACCURACY,
        f"{caps}/i2t_R@5",
        f"{caps}/i2t_R@10",
    ]
