"""Issue 18, failure 3: an empty shard is a valid state, through Dagster.

Next to a 24-document demo corpus (2 shards) four empty kinds are registered, one of them first
(so the LanceDB tables do not exist yet when it is embedded): a zero-byte file, a shard whose
every line is invalid, a parquet shard with 0 documents and a document without any image or
usable sentence. `run_pipeline` (what `realsyn run` executes) must materialize every per-shard
asset of them with zero rows and the same schema as a normal shard, their checks must say
"0 rows" as a WARN (never fail, which would make `realsyn run` exit non-zero), every check of the
normal shards must pass, and the corpus-wide results must equal those computed without them.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from realsyn_assets.core.io import atomic_write_bytes
from realsyn_assets.names import Asset, Job

EMPTY = ("zero", "invalid", "nodocs", "junk")
PER_SHARD_FILES = (
    Asset.RAW_DOCUMENTS,
    Asset.EXTRACTED_IMAGES,
    Asset.EXTRACTED_SENTENCES,
    Asset.IMAGE_DEDUP,
    Asset.SEMANTIC_FILTER,
    Asset.SENTENCE_DEDUP,
    Asset.RETRIEVED_TEXTS,
    Asset.SYNTHETIC_TEXTS,
)
SHARD_JOBS = (Job.SHARD_EXTRACT, Job.SHARD_EMBED, Job.SHARD_SENTENCE_DEDUP, Job.SHARD_RETRIEVE)
SCALE = "15M"
# Short training: this test is about empty shards, not about how good the encoders get.
RUN_CONFIGS = {
    Job.BOOTSTRAP_ENCODER: {"ops": {Asset.BOOTSTRAP_ENCODER: {"config": {"epochs": 16}}}},
    Job.SENTENCE_CLUSTERS: {"ops": {Asset.SENTENCE_CLUSTERS: {"config": {"n_clusters": 4}}}},
    Job.SCALE: {
        "ops": {
            Asset.CLIP_CHECKPOINT: {
                "config": {"model_name": "realsyn-tiny", "epochs": 2, "batch_size": 32}
            }
        }
    },
}


def _empty_shards(folder, parquet_example):
    folder.mkdir()
    (folder / "zero.jsonl").write_bytes(b"")
    (folder / "invalid.jsonl").write_text('not json\n{"texts": 3}\n[1, 2]\n{"texts": ["a"\n')
    schema = pq.read_schema(parquet_example)
    pq.write_table(schema.empty_table(), folder / "nodocs.parquet")
    junk = {"texts": ["http://example.com 😀😀😀"], "images": [None]}
    (folder / "junk.jsonl").write_text(json.dumps(junk) + "\n")
    return [
        folder / name for name in ("zero.jsonl", "invalid.jsonl", "nodocs.parquet", "junk.jsonl")
    ]


def _corpus_results(layout) -> dict:
    """What the corpus-wide assets computed (minus bookkeeping such as timings and shard lists)."""
    words = layout.asset_dir(Asset.WORD_STATISTICS)
    clusters = layout.asset_dir(Asset.SENTENCE_CLUSTERS)
    window = json.loads((words / "perplexity_window.json").read_text())
    subset = layout.asset_dir(Asset.BALANCED_SUBSET) / SCALE / "realsyn.parquet"
    return {
        "words": pq.read_table(words / "words.parquet").to_pylist(),
        "ngram": (words / "ngram.npz").read_bytes(),
        "window": [window["low"], window["high"], window["ppl_median"]],
        "centroids": np.load(clusters / "centroids.npy").tolist(),
        "members": pq.read_table(clusters / "members.parquet").to_pylist(),
        "assignments": pq.read_table(
            layout.asset_dir(Asset.IMAGE_CLUSTERS) / "assignments.parquet"
        ).to_pylist(),
        "subset": pq.read_table(subset).to_pylist(),
    }


def _unregister(layout, keys) -> None:
    registry = json.loads(layout.registry_path.read_text())
    kept = {k: v for k, v in registry.items() if k not in keys}
    atomic_write_bytes(layout.registry_path, json.dumps(kept, indent=2).encode())


@pytest.mark.timeout(1500)
def test_fault_empty_shards_materialize_zero_rows_and_warn(fresh_home):
    from realsyn_assets.pipeline import register, run_pipeline, run_stage
    from realsyn_assets.resources import HomeResource, VectorStoreResource

    layout, make_corpus = fresh_home
    corpus = make_corpus(24, 2, 5)
    zero, invalid, nodocs, junk = _empty_shards(
        layout.root / "empty", next(p for p in corpus.shard_paths if p.suffix == ".parquet")
    )
    order = [zero, corpus.shard_paths[0], invalid, nodocs, corpus.shard_paths[1], junk]
    keys = register(layout, order)
    assert [k for k in keys if k not in EMPTY] == ["shard-000", "shard-001"], keys
    normal = ["shard-000", "shard-001"]

    reports = run_pipeline(layout, [SCALE], RUN_CONFIGS)

    failed = [(r.label, r.error) for r in reports if not r.success]
    assert not failed, failed
    # `realsyn run` exits 0: no ERROR check failed anywhere
    assert not [f for r in reports for f in r.checks_failed], [r.checks_failed for r in reports]
    by_stage = {(r.job, r.partition): r for r in reports}
    for job in SHARD_JOBS:
        for key in normal:  # every check of a normal shard passes, none warns
            report = by_stage[(job, key)]
            assert report.checks_passed > 0 and not report.check_warnings, (job, key, report)
        for key in EMPTY:  # an empty shard's checks say "0 rows" as a warning
            report = by_stage[(job, key)]
            assert report.check_warnings, (job, key, report)
            assert all("0 rows" in w for w in report.check_warnings), report.check_warnings

    # every per-shard table exists with zero rows and a normal shard's schema
    for asset in PER_SHARD_FILES:
        schema = pq.read_schema(layout.partition_file(asset, normal[0])).remove_metadata()
        for key in EMPTY:
            path = layout.partition_file(asset, key)
            if asset == Asset.RAW_DOCUMENTS and key == "junk":
                continue  # its one document is kept; it just has nothing usable in it
            assert pq.read_metadata(path).num_rows == 0, (asset, key)
            assert pq.read_schema(path).remove_metadata().equals(schema), (asset, key)
    vectors = VectorStoreResource(home=HomeResource(path=str(layout.root)))
    for table in ("images", "sentences"):
        assert vectors.read(table, shards=list(EMPTY)).num_rows == 0
        assert vectors.read(table, shards=normal).num_rows > 0

    # the corpus-wide assets are unaffected: the same results without the empty shards
    with_empty = _corpus_results(layout)
    assert with_empty["subset"], "the balanced subset is empty"
    _unregister(layout, EMPTY)
    assert layout.shard_order() == normal
    refit = {"ops": {Asset.SENTENCE_CLUSTERS: {"config": {"n_clusters": 4, "recluster": True}}}}
    for job, partition, config in (
        (Job.WORD_STATISTICS, None, None),
        (Job.SENTENCE_CLUSTERS, None, refit),
        (Job.IMAGE_CLUSTERS, None, None),
        (Job.SCALE, SCALE, RUN_CONFIGS[Job.SCALE]),
    ):
        report = run_stage(job, partition, config)
        assert report.success and not report.checks_failed, report
    without = _corpus_results(layout)
    for name, value in with_empty.items():
        assert without[name] == value, f"{name} changed by the empty shards"
