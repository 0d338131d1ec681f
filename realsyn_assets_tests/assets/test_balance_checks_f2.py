"""The balance checks on small homes built here: `cosine_window_sane` through Dagster (a
corrupted synthetic_texts shard fails it and, the check being blocking, keeps balanced_subset
from materializing in the same run), the subset checks by their functions on hand-made files."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.assets import balance
from realsyn_assets.core.balance import sampling
from realsyn_assets.core.balance.files import ASSIGNMENTS, SELECTION_FILE, SUBSET_FILE
from realsyn_assets.core.io import write_table
from realsyn_assets.names import Asset
from realsyn_assets.names import BalancedSubsetMetadata as BD
from realsyn_assets.names import BalancedSubsetMetrics as BM
from realsyn_assets.resources import (
    EncoderResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.home import Home
from realsyn_assets.resources.vectors import vectors_column

PAIRS = 80
ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def _resources(root: Path) -> dict:
    home = HomeResource(path=str(root))
    return {
        "storage": StorageResource(home=home),
        "metrics": MetricsResource(home=home),
        "vectors": VectorStoreResource(home=home),
        "encoder": EncoderResource(home=home, device="cpu"),
    }


def _pairs_home(root: Path, nan_share: float = 0.0) -> Path:
    """One registered shard: PAIRS image embeddings in LanceDB and their synthetic texts' scores,
    the first `nan_share` of them NaN (a synthetic_texts shard whose scores broke)."""
    rng = np.random.default_rng(0)
    (root / "docs.jsonl").write_text('{"id": 1}\n')
    (key,) = [e.key for e in Home(root).register_shards([root / "docs.jsonl"])]
    ids = [f"img_{i:03d}" for i in range(PAIRS)]
    scores = rng.uniform(0.2, 0.9, PAIRS).astype(np.float32)
    scores[: int(nan_share * PAIRS)] = np.nan
    syn = pa.table({"image_id": ids, "shard": [key] * PAIRS, "syn_score": scores})
    write_table(syn, root / "data" / Asset.SYNTHETIC_TEXTS / f"{key}.parquet")
    vecs = rng.normal(size=(PAIRS, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = pa.table({"shard": [key] * PAIRS, "image_id": ids, "vector": vectors_column(vecs)})
    _resources(root)["vectors"].replace_shard("images", key, rows)
    return root


def _cluster(root: Path, assets: list, **config) -> dg.ExecuteInProcessResult:
    config = {"n_clusters": 4, **config}
    return dg.materialize(
        [balance.image_clusters, balance.cosine_window_sane, *assets],
        resources=_resources(root),
        run_config={"ops": {Asset.IMAGE_CLUSTERS: {"config": config}}},
        raise_on_error=False,
    )


def _evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    (found,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return found


def test_cosine_window_sane_passes_on_a_calibrated_window(tmp_path):
    result = _cluster(_pairs_home(tmp_path), [])
    assert result.success
    check = _evaluation(result, "cosine_window_sane")
    assert check.passed, check.description
    meta = {k: v.value for k, v in check.metadata.items()}
    assert abs(meta["kept_fraction"] - sampling.PAPER_KEEP_FRACTION) <= meta["tolerance"]
    assert meta["window_calibrated"] is True and meta["mismatched_rows"] == 0


def test_cosine_window_sane_fails_on_nan_scores_and_blocks_the_subset(tmp_path):
    """30% of the pairs lost their score: the calibrated window keeps 85% of the rest, ~60% of
    all pairs; the blocking ERROR stops balanced_subset in the same run."""
    result = _cluster(_pairs_home(tmp_path, nan_share=0.3), [balance.balanced_subset])
    check = _evaluation(result, "cosine_window_sane")
    assert check.passed is False and check.severity == ERROR
    assert check.metadata["nan_scores"].value == 24
    assert check.metadata["kept_fraction"].value < 0.7
    assert check.metadata["paper_keep_fraction"].value == pytest.approx(0.85, abs=0.001)
    assert "calibrated window keeps" in check.description
    assert not result.success
    assert result.asset_materializations_for_node(Asset.IMAGE_CLUSTERS)
    assert not result.asset_materializations_for_node(Asset.BALANCED_SUBSET)


def test_cosine_window_sane_fails_as_a_warning_for_a_configured_window(tmp_path):
    """A window the user configured that keeps ~30% of pairs: honoured, but flagged (WARN)."""
    result = _cluster(_pairs_home(tmp_path), [], window_low=0.2, window_high=0.4)
    check = _evaluation(result, "cosine_window_sane")
    assert check.passed is False and check.severity == WARN, check.description
    assert check.metadata["window_calibrated"].value is False


def test_cosine_window_sane_fails_when_assignments_disagree_with_the_window(tmp_path):
    root = _pairs_home(tmp_path)
    assert _cluster(root, []).success
    storage, metrics = _resources(root)["storage"], _resources(root)["metrics"]
    path = root / "data" / Asset.IMAGE_CLUSTERS / ASSIGNMENTS
    table = pa.parquet.read_table(path)
    flags = np.asarray(table.column("in_window"))
    flags[:3] = ~flags[:3]  # three pairs flipped in or out of the window
    write_table(table.set_column(3, "in_window", pa.array(flags)), path)
    result = balance.window_sane(storage, metrics)
    assert result.passed is False and result.severity == ERROR
    assert result.metadata["mismatched_rows"].value == 3
    assert result.metadata["bad_cluster_rows"].value > 0


# ---- the balanced_subset checks, by their functions on hand-made files ------------------------

SIZES = (40, 30, 20, 10)  # in-window pairs per cluster


def _assignments(root: Path, seed: int = 0) -> pa.Table:
    labels = np.repeat(np.arange(len(SIZES)), SIZES)
    labels = np.random.default_rng(seed).permutation(labels)
    n = labels.size + 20  # 20 more pairs outside the window
    table = pa.table(
        {
            "image_id": [f"img_{i:03d}" for i in range(n)],
            "shard": ["s0"] * n,
            "syn_score": np.full(n, 0.5, np.float32),
            "in_window": [True] * labels.size + [False] * 20,
            "cluster": [*labels.tolist(), *([-1] * 20)],
        }
    )
    write_table(table, root / "data" / Asset.IMAGE_CLUSTERS / ASSIGNMENTS)
    return table


def _draw(root: Path, scale: str, rule: str = "paper_fraction", as_scale: str | None = None):
    """Write `scale`'s subset files and metrics as balanced_subset does, drawn for `as_scale`
    (default: the same scale) from the current assignments."""
    pool = pa.parquet.read_table(root / "data" / Asset.IMAGE_CLUSTERS / ASSIGNMENTS)
    chosen = sampling.select_balanced(pool, as_scale or scale, rule)
    rows = pool.take(chosen.indices).select(["image_id", "shard", "cluster"])
    folder = root / "data" / Asset.BALANCED_SUBSET / scale
    write_table(rows, folder / SUBSET_FILE)
    version = balance.clusters_core.content_version(
        root / "data" / Asset.IMAGE_CLUSTERS / ASSIGNMENTS
    )
    record = {BD.CAP_RULE: rule, BD.CLUSTERS_VERSION: version}
    (folder / SELECTION_FILE).write_text(json.dumps(record))
    counts = {BM.SAMPLES: rows.num_rows, BM.CAP_PER_CLUSTER: chosen.cap}
    _resources(root)["metrics"].record(Asset.BALANCED_SUBSET, scale, counts)
    return rows


def _size(root: Path, scale: str):
    res = _resources(root)
    return balance.size_within_target(res["storage"], res["metrics"], scale)


def test_subset_size_within_target_passes_for_both_cap_rules(tmp_path):
    _assignments(tmp_path)
    for scale in ("15M", "30M", "100M"):
        _draw(tmp_path, scale)
        result = _size(tmp_path, scale)
        assert result.passed, result.description
        target = sampling.SCALE_SHARES[scale] * sum(SIZES)
        assert result.metadata["target_samples"].value == pytest.approx(target)
    _draw(tmp_path, "30M", rule="paper_cap")  # caps 35: 35 + 30 + 20 + 10
    result = _size(tmp_path, "30M")
    assert result.passed and result.metadata["target_samples"].value == 95.0


def test_subset_size_within_target_fails_when_a_scale_holds_another_scales_draw(tmp_path):
    """The 15M files hold the 100M draw: the asset's own numbers agree with each other (rows =
    recorded samples, cap respected) but not with 9.06% of the in-window pool."""
    _assignments(tmp_path)
    rows = _draw(tmp_path, "15M", as_scale="100M")
    result = _size(tmp_path, "15M")
    assert result.passed is False and result.severity == ERROR
    assert result.metadata["samples"].value == rows.num_rows == 61
    assert result.metadata["recorded_samples"].value == 61
    assert result.metadata["target_samples"].value == pytest.approx(0.0906 * 100, abs=0.01)
    assert result.metadata["tolerance"].value == 2.0  # 4 clusters: half a pair each
    assert "61 samples, target 9.1" in result.description


def test_subset_size_within_target_fails_on_duplicate_rows(tmp_path):
    _assignments(tmp_path)
    rows = _draw(tmp_path, "100M")
    folder = tmp_path / "data" / Asset.BALANCED_SUBSET / "100M"
    write_table(pa.concat_tables([rows, rows.slice(0, 2)]), folder / SUBSET_FILE)
    result = _size(tmp_path, "100M")
    assert result.passed is False and result.severity == ERROR
    assert result.metadata["duplicate_ids"].value == 2


def _context_checks(root: Path, scale: str) -> dict[str, dg.AssetCheckResult]:
    context = dg.build_op_context(partition_key=scale)
    storage = _resources(root)["storage"]
    return {
        "matches": balance.subset_matches_clusters(context, storage=storage),
        "nested": balance.subsets_nested(context, storage=storage),
    }


def test_subset_matches_clusters_fails_after_image_clusters_changed(tmp_path):
    _assignments(tmp_path)
    _draw(tmp_path, "15M")
    assert _context_checks(tmp_path, "15M")["matches"].passed
    _assignments(tmp_path, seed=1)  # image_clusters re-materialized: other assignments
    result = _context_checks(tmp_path, "15M")["matches"]
    assert result.passed is False and result.severity == ERROR
    assert balance.STALE_SUBSET in result.description
    assert result.metadata["drawn_version"].value != result.metadata["current_version"].value


def test_subsets_nested_fails_when_a_smaller_scale_has_rows_the_larger_lacks(tmp_path):
    pool = _assignments(tmp_path).select(["image_id", "shard", "cluster"])
    small = _draw(tmp_path, "15M")
    large = _draw(tmp_path, "30M")
    assert _context_checks(tmp_path, "15M")["nested"].passed
    # 15M gains an in-window pair that 30M does not hold (a hand edit, a partial rewrite)
    outside = set(large.column("image_id").to_pylist())
    extra = next(i for i in range(100) if pool["image_id"][i].as_py() not in outside)
    folder = tmp_path / "data" / Asset.BALANCED_SUBSET
    write_table(pa.concat_tables([small, pool.slice(extra, 1)]), folder / "15M" / SUBSET_FILE)
    for scale in ("15M", "30M"):  # both neighbours see the break
        result = _context_checks(tmp_path, scale)["nested"]
        assert result.passed is False and result.severity == ERROR
        assert result.metadata["missing_rows"].value == 1
        assert result.metadata["threshold"].value == 0
