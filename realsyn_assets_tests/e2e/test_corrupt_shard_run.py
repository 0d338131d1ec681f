"""Issue 18, failure 2, end to end: a shard corrupted after registration fails alone in
`realsyn run`.

Before: a truncated parquet raised `ArrowInvalid: Parquet magic bytes not found` and `realsyn run`
stopped for every shard after it. Now its partition fails with the file and the cause, the other
shards go through every stage, corpus-wide assets and the scale are built from them, the run
exits non-zero naming the failure, and `realsyn status` shows the failed partition.
"""

from __future__ import annotations

import functools

import pyarrow.parquet as pq
import pytest

from realsyn_assets import cli, pipeline
from realsyn_assets.demo.corpus import generate_demo_corpus
from realsyn_assets.names import Asset


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_corrupt_shard_fails_alone_in_realsyn_run(tmp_path, clean_env, monkeypatch, capsys):
    corpus = generate_demo_corpus(tmp_path / "corpus", n_docs=24, n_shards=3, seed=0)
    *jsonl, parquet = corpus.shard_paths
    home = str(tmp_path / "home")
    # the parquet shard first in registration order, so that shards after it must still run
    assert cli.main(["ingest", "--home", home, str(parquet), *map(str, jsonl)]) == 0
    data = parquet.read_bytes()
    parquet.write_bytes(data[: len(data) // 2])  # truncated after registration

    # `realsyn run` in process, with the demo's small CLIP training instead of ViT-B-32
    run = functools.partial(pipeline.run_pipeline, run_configs=cli.demo_run_configs())
    monkeypatch.setattr(pipeline, "run_pipeline", run)
    capsys.readouterr()
    code = cli.main(["run", "--home", home, "--scales", "15M"])
    out, err = capsys.readouterr()
    assert code != 0, err[-4000:]
    failures = [line for line in err.splitlines() if "run failed" in line]
    assert len(failures) == 1, err[-4000:]
    assert str(parquet) in failures[0] and "PAR1" in failures[0], failures[0]

    bad, good = "shard-002", ["shard-000", "shard-001"]
    data_dir = tmp_path / "home" / "data"
    for key in good:  # every per-shard stage ran for the shards after the bad one
        for asset in (Asset.RAW_DOCUMENTS, Asset.IMAGE_DEDUP, Asset.SYNTHETIC_TEXTS):
            assert (data_dir / asset / f"{key}.parquet").exists(), (asset, key)
    assert not list((data_dir / Asset.RAW_DOCUMENTS).glob(f"{bad}*"))
    subset = pq.read_table(data_dir / Asset.BALANCED_SUBSET / "15M" / "realsyn.parquet")
    assert subset.num_rows > 0
    assert (data_dir / Asset.CLIP_CHECKPOINT / "15M" / "checkpoint.pt").exists()
    assert (data_dir / Asset.QUALITY_REPORT / "report.md").exists()

    assert cli.main(["status", "--home", home]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if f"{Asset.RAW_DOCUMENTS} " in ln)
    assert f"2/3 partitions, 1 FAILED: {bad}" in line, out
