"""Fault injection through Dagster, issue 18 failures 4 and 7: a document over the text limit is
a `too_long` rejection of `raw_documents`, a block over the block limit one of
`extracted_sentences` (counted by reason, the funnels still add up), and lines with invalid UTF-8
are counted in `raw_documents`' metadata. Both limits are run config."""

from __future__ import annotations

import io
import json

import dagster as dg
import pyarrow.parquet as pq
import pytest
from PIL import Image

from realsyn_assets.core.text.sentences import REJECT_TOO_LONG
from realsyn_assets.names import (
    Asset,
    ExtractedSentencesMetrics,
    Job,
    RawDocumentsMetrics,
)

ACTIONS = [
    "A brown dog runs across the green park near the river.",
    "Two children fly a red kite over the sandy beach.",
    "The old farmer drives his tractor along the muddy road.",
    "A woman paints a small boat beside the quiet harbour.",
    "Three cyclists climb the steep hill in the morning sun.",
    "A black cat sleeps on the warm wooden fence at noon.",
]


def _shard(folder) -> None:
    image = io.BytesIO()
    Image.new("RGB", (160, 120), (30, 120, 200)).save(image, "JPEG")
    (folder / "a.jpg").write_bytes(image.getvalue())
    lines = [
        json.dumps({"id": f"n{i}", "texts": [text, None], "images": [None, "a.jpg"]}).encode()
        for i, text in enumerate(ACTIONS)
    ]
    long_doc = {"id": "long", "texts": [ACTIONS[0] * 100], "images": [None]}  # 5,400 characters
    block_doc = {"id": "block", "texts": [ACTIONS[1] * 30, ACTIONS[2] + " Again."]}
    block_doc["images"] = [None, None]  # a 1,470-character block, a normal one
    lines += [json.dumps(long_doc).encode(), json.dumps(block_doc).encode()]
    lines.append(
        b'{"id": "latin1", "texts": ["A caf\xe9 owner sweeps the floor."], "images": [null]}'
    )
    (folder / "s.jsonl").write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.timeout(300)
def test_fault_text_limits_and_invalid_utf8_through_dagster(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from realsyn_assets import pipeline
    from realsyn_assets.resources import HomeResource, MetricsResource

    layout = pipeline.prepare_environment(tmp_path / "home")
    monkeypatch.setenv("REALSYN_HOME", str(layout.root))
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    (tmp_path / "corpus").mkdir()
    _shard(tmp_path / "corpus")
    (key,) = pipeline.register(layout, [tmp_path / "corpus" / "s.jsonl"])
    config = {
        "ops": {
            Asset.RAW_DOCUMENTS: {"config": {"max_document_chars": 5000}},
            Asset.EXTRACTED_SENTENCES: {"config": {"max_block_chars": 1000}},
        }
    }
    report = pipeline.run_stage(Job.SHARD_EXTRACT, key, config)
    assert report.success and not report.checks_failed, report.checks_failed

    metrics = MetricsResource(home=HomeResource(path=str(layout.root)))
    docs = metrics.counts(Asset.RAW_DOCUMENTS, key)
    assert docs[RawDocumentsMetrics.INVALID_UTF8_LINES] == 1
    assert docs[RawDocumentsMetrics.DOCUMENTS_KEPT] == 8
    assert metrics.rejection_counts(Asset.RAW_DOCUMENTS, key) == {REJECT_TOO_LONG: 1}
    rejected_docs = pq.read_table(
        layout.partition_file(Asset.RAW_DOCUMENTS, key, ".rejected.parquet")
    ).to_pylist()
    assert [(r["source_row"], r["reason"]) for r in rejected_docs] == [(6, REJECT_TOO_LONG)]
    assert rejected_docs[0]["detail"] == f"{len(ACTIONS[0]) * 100} characters of text, limit 5000"

    sentences = metrics.counts(Asset.EXTRACTED_SENTENCES, key)
    assert sentences[ExtractedSentencesMetrics.TEXT_BLOCKS_TOO_LONG] == 1
    assert metrics.rejection_counts(Asset.EXTRACTED_SENTENCES, key)[REJECT_TOO_LONG] == 1
    rejected = pq.read_table(
        layout.partition_file(Asset.EXTRACTED_SENTENCES, key, ".rejected.parquet")
    ).to_pylist()
    (block,) = [r for r in rejected if r["sent_index"] == -1]
    assert block["reason"] == REJECT_TOO_LONG
    assert block["detail"] == f"text block of {len(ACTIONS[1]) * 30} characters, limit 1000"

    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(dg.AssetKey(Asset.RAW_DOCUMENTS))
    metadata = event.asset_materialization.metadata
    assert metadata[RawDocumentsMetrics.INVALID_UTF8_LINES].value == 1
    assert metadata["rejections"].value == {REJECT_TOO_LONG: 1}
