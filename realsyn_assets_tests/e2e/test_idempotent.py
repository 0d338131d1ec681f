"""Re-materializing a shard replaces its rows everywhere: no duplicates in LanceDB or DuckDB."""

from __future__ import annotations

import duckdb
import lancedb
import pyarrow.parquet as pq
import pytest


@pytest.fixture
def small_home(fresh_home):
    from realsyn_assets import pipeline

    layout, make_corpus = fresh_home
    corpus = make_corpus(16, 2, 3)
    return layout, pipeline.register(layout, corpus.shard_paths)


def _snapshot(layout):
    db = lancedb.connect(str(layout.lancedb_uri))
    images = db.open_table("images").to_arrow()
    sentences = db.open_table("sentences").to_arrow()
    con = duckdb.connect(str(layout.metrics_db), read_only=True)
    counts = sorted(
        con.execute("SELECT stage, partition, metric, value FROM stage_counts").fetchall()
    )
    rejections = sorted(
        con.execute("SELECT stage, partition, reason, count FROM rejections").fetchall()
    )
    con.close()
    dedup = {
        p.name: pq.read_table(p).to_pylist()
        for p in (layout.asset_dir("image_dedup")).glob("*.parquet")
    }
    return (
        sorted(images.column("image_id").to_pylist()),
        sorted(sentences.column("sentence_id").to_pylist()),
        counts,
        rejections,
        dedup,
    )


def test_rematerializing_a_shard_is_idempotent(small_home):
    from realsyn_assets.pipeline import run_stage

    layout, keys = small_home
    for key in keys:
        assert run_stage("shard_ingest_job", key).success
    first = _snapshot(layout)
    assert len(first[0]) > 10 and len(first[1]) > 30
    # rerun the first shard (and its dedup, compared with nothing earlier) and the second
    for key in keys:
        report = run_stage("shard_ingest_job", key)
        assert report.success and not report.checks_failed
    second = _snapshot(layout)
    assert first == second
    # the second shard's dedup saw the first shard's items
    con = duckdb.connect(str(layout.metrics_db), read_only=True)
    compared = con.execute(
        "SELECT value FROM stage_counts WHERE stage='image_dedup' AND "
        "partition=? AND metric='compared_with_earlier'",
        [keys[1]],
    ).fetchone()[0]
    con.close()
    assert compared > 0
