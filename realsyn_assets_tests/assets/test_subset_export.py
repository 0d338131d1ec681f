"""The subset_export asset on a small home built here: train / eval files apart, the data card
and its plots, same bytes on a rerun, and each of its checks failing on a broken export."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from realsyn_assets.assets import export as ex
from realsyn_assets.core.io import write_table
from realsyn_assets.names import Asset
from realsyn_assets.names import BalancedSubsetMetadata as BD
from realsyn_assets.names import BalancedSubsetMetrics as BM
from realsyn_assets.resources import (
    EncoderResource,
    HomeResource,
    MetricsResource,
    StorageResource,
)
from realsyn_assets.resources.home import Home

SCALE = "15M"
CHECKS = [ex.export_splits_disjoint, ex.export_tars_match_parquet, ex.export_samples_complete]


def _home(root: Path, n_pool: int = 30, n_subset: int = 20) -> Path:
    """A home with the files subset_export reads: images, image_clusters assignments (pool of
    `n_pool` pairs, one skewed cluster) and the scale's balanced subset (`n_subset` rows)."""
    rng = np.random.default_rng(0)
    ids = [f"img_{i:04d}" for i in range(n_pool)]
    clusters = [0 if i < n_pool // 2 else 1 + i % 3 for i in range(n_pool)]
    scores = rng.uniform(0.5, 0.9, n_pool).round(4)
    for i in range(n_subset):
        path = root / "images" / f"{ids[i]}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    write_table(
        pa.table(
            {
                "image_id": ids,
                "shard": ["shard-000"] * n_pool,
                "syn_score": scores,
                "in_window": [True] * n_pool,
                "cluster": clusters,
            }
        ),
        root / "data" / Asset.IMAGE_CLUSTERS / "assignments.parquet",
    )
    sel = range(n_subset)
    subset = pa.table(
        {
            "image_id": [ids[i] for i in sel],
            "shard": ["shard-000"] * n_subset,
            "cluster": [clusters[i] for i in sel],
            "syn_score": [float(scores[i]) for i in sel],
            "image_path": [f"images/{ids[i]}.jpg" for i in sel],
            "text1": [f"a photo of thing {i}" for i in sel],
            "text1_score": [float(scores[i]) - 0.05 for i in sel],
            "text2": [f"another view {i}" for i in sel],
            "text3": [None if i % 4 == 0 else f"third text {i}" for i in sel],
            "syn_text": [f"a photo of thing {i}, red and round" for i in sel],
            "raw_image_url": [f"http://example.org/{i}.jpg" for i in sel],
            "split": ["eval" if i % 5 == 0 else "train" for i in sel],
        }
    )
    folder = root / "data" / Asset.BALANCED_SUBSET / SCALE
    write_table(subset, folder / "realsyn.parquet")
    selection = {
        BM.CAP_PER_CLUSTER: 7,
        BD.CAP_RULE: "paper_fraction",
        BM.TARGET_SHARE: 0.0906,
        BM.ACHIEVED_SHARE: 0.0911,
        BM.CLUSTERS: 4,
        BM.CANDIDATE_PAIRS: n_pool,
        BD.CLUSTERS_VERSION: "v-test",
    }
    (folder / "selection.json").write_text(json.dumps(selection))
    # one registered shard whose synthetic texts name their generator and captioner
    (root / "docs.jsonl").write_text('{"id": 1}\n')
    (key,) = [e.key for e in Home(root).register_shards([root / "docs.jsonl"])]
    n_llm = 6
    write_table(
        pa.table(
            {
                "image_id": ids,
                "shard": [key] * n_pool,
                "syn_text": ["x"] * n_pool,
                "generator": ["vllm"] * n_llm + ["offline"] * (n_pool - n_llm),
                "generator_model": ["Qwen/Qwen2.5-7B-Instruct"] * n_llm + [None] * (n_pool - n_llm),
                "caption_backend": ["offline"] * n_pool,
            }
        ),
        root / "data" / Asset.SYNTHETIC_TEXTS / f"{key}.parquet",
    )
    return root


def _resources(root: Path) -> dict:
    home = HomeResource(path=str(root))
    return {
        "storage": StorageResource(home=home),
        "metrics": MetricsResource(home=home),
        "encoder": EncoderResource(home=home),
    }


def _materialize(root: Path, checks=CHECKS):
    return dg.materialize(
        [ex.subset_export, *checks],
        resources=_resources(root),
        partition_key=SCALE,
        raise_on_error=False,
    )


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = _home(tmp_path_factory.mktemp("export_home"))
    result = _materialize(root)
    assert result.success
    assert all(_checks(result).values()), _checks(result)
    return root


def test_splits_are_written_apart_and_card_is_complete(exported):
    out = exported / "data" / Asset.SUBSET_EXPORT / SCALE
    train, held = pq.read_table(out / "train.parquet"), pq.read_table(out / "eval.parquet")
    assert (train.num_rows, held.num_rows) == (16, 4)
    assert "split" not in train.column_names
    assert not set(train.column("image_id").to_pylist()) & set(held.column("image_id").to_pylist())
    assert [p.name for p in (out / "webdataset" / "train").iterdir()] == ["00000.tar"]
    with tarfile.open(out / "webdataset" / "eval" / "00000.tar") as tar:
        names = sorted(tar.getnames())
    assert len(names) == 12 and {n.rsplit(".", 1)[1] for n in names} == {"jpg", "json", "txt"}
    card = (out / "DATA_CARD.md").read_text()
    assert "**20** = train **16** + eval **4**" in card
    assert "Samples: **not recorded**" not in card
    for needle in ("cluster_sizes.png", "similarity.png", "| `syn_text` | 20 |", "| random |"):
        assert needle in card
    assert "| balanced | 20 | 4 |" in card  # 4 clusters covered
    assert "15M subset (exported)" in card
    assert "Per-cluster cap: **7** (rule: `paper_fraction`" in card  # from selection.json
    assert "target 9.06%, achieved 9.11%" in card and "`v-test`" in card
    assert "`vllm` / `Qwen/Qwen2.5-7B-Instruct`: 6 samples (language-model generator)" in card
    assert "`offline`: 14 samples (the project's offline rule-based fusion" in card
    assert "- Captioner: `offline`: 20 samples" in card
    assert "--train-data 'webdataset/train/00000.tar' --train-num-samples 16" in card
    for png in ("cluster_sizes.png", "similarity.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_gives_the_same_bytes(exported):
    out = exported / "data" / Asset.SUBSET_EXPORT / SCALE
    before = _digests(out)
    assert _materialize(exported, checks=[]).success
    assert _digests(out) == before


def _tampered(root: Path, tmp_path: Path) -> tuple[Path, StorageResource]:
    """A copy of the exported home to break, and its storage resource."""
    copy = tmp_path / "home"
    shutil.copytree(root, copy)
    return copy / "data" / Asset.SUBSET_EXPORT / SCALE, StorageResource(
        home=HomeResource(path=str(copy))
    )


def _add_sample(tar_path: Path, key: str, members: dict[str, bytes]) -> None:
    with tarfile.open(tar_path, "a") as tar:
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# Dagster cannot run a partitioned check without its asset in one job, so the broken exports
# are checked by the functions the checks return (the passing runs above go through Dagster).
def test_export_splits_disjoint_fails_when_an_image_is_in_both_splits(exported, tmp_path):
    out, storage = _tampered(exported, tmp_path)
    assert ex.splits_disjoint(storage, SCALE).passed
    train = pq.read_table(out / "train.parquet")
    held = pa.concat_tables([pq.read_table(out / "eval.parquet"), train.slice(0, 1)])
    pq.write_table(held, out / "eval.parquet")
    result = ex.splits_disjoint(storage, SCALE)
    assert not result.passed and result.metadata["shared_ids"].value == 1
    assert result.severity == dg.AssetCheckSeverity.ERROR


def test_export_tars_match_parquet_fails_when_a_tar_misses_parquet_rows(exported, tmp_path):
    out, storage = _tampered(exported, tmp_path)
    assert ex.tars_match_parquet(storage, SCALE).passed
    (out / "webdataset" / "eval" / "00000.tar").unlink()
    result = ex.tars_match_parquet(storage, SCALE)
    assert not result.passed and "eval: 0 tar samples vs 4 parquet rows" in result.description
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["mismatched_samples"].value == 4
    assert result.metadata["threshold"].value == 0


def test_export_samples_complete_fails_on_a_sample_without_caption(exported, tmp_path):
    out, storage = _tampered(exported, tmp_path)
    assert ex.samples_complete(storage, SCALE).passed
    _add_sample(out / "webdataset" / "train" / "00000.tar", "img_9999", {"jpg": b"\xff"})
    result = ex.samples_complete(storage, SCALE)
    assert not result.passed and "img_9999" in result.description
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert not ex.tars_match_parquet(storage, SCALE).passed  # one sample more than rows
