"""Issue 18, failure 3, at the check level: a shard with zero rows (a zero-byte file, every line
invalid, no documents, or documents without any image / sentence) is a valid state. Its checks
say "0 rows" as a WARN (passed False, severity WARN) instead of crashing, failing as an ERROR or
passing silently; a real inconsistency stays an ERROR."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pyarrow as pa

from realsyn_assets.assets._checks import funnel_check
from realsyn_assets.core.generation.synthesis import ShardInputs, synthetic_table
from realsyn_assets.core.io import write_table
from realsyn_assets.names import (
    Asset,
    ExtractedSentencesMetrics,
    RawDocumentsMetrics,
    RetrievedTextsMetrics,
    SyntheticTextsMetrics,
)
from realsyn_assets.resources import (
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

WARN = dg.AssetCheckSeverity.WARN
ERROR = dg.AssetCheckSeverity.ERROR
D = RawDocumentsMetrics
FUNNEL = (D.DOCUMENTS_IN, D.DOCUMENTS_KEPT, D.DOCUMENTS_REJECTED)


def _resources(tmp_path):
    home = HomeResource(path=str(tmp_path))
    return (
        MetricsResource(home=home),
        StorageResource(home=home),
        VectorStoreResource(home=home),
    )


def _is_zero_rows_warning(result) -> bool:
    return not result.passed and result.severity == WARN and "0 rows" in (result.description or "")


def test_fault_funnel_of_an_empty_shard_warns_zero_rows(tmp_path):
    metrics, _, _ = _resources(tmp_path)
    metrics.record(Asset.RAW_DOCUMENTS, "zero", {name: 0 for name in FUNNEL}, {})
    result = funnel_check(metrics, Asset.RAW_DOCUMENTS, "zero", *FUNNEL)
    assert _is_zero_rows_warning(result), result


def test_fault_funnel_of_an_all_rejected_shard_warns_instead_of_failing(tmp_path):
    metrics, _, _ = _resources(tmp_path)
    counts = {D.DOCUMENTS_IN: 3, D.DOCUMENTS_KEPT: 0, D.DOCUMENTS_REJECTED: 3}
    metrics.record(Asset.RAW_DOCUMENTS, "invalid", counts, {"invalid_json": 3})
    result = funnel_check(metrics, Asset.RAW_DOCUMENTS, "invalid", *FUNNEL)
    assert _is_zero_rows_warning(result), result
    assert "invalid_json" in result.description


def test_fault_funnel_that_does_not_add_up_is_still_an_error(tmp_path):
    metrics, _, _ = _resources(tmp_path)
    counts = {D.DOCUMENTS_IN: 3, D.DOCUMENTS_KEPT: 0, D.DOCUMENTS_REJECTED: 2}
    metrics.record(Asset.RAW_DOCUMENTS, "bad", counts, {"invalid_json": 2})
    result = funnel_check(metrics, Asset.RAW_DOCUMENTS, "bad", *FUNNEL)
    assert not result.passed and result.severity == ERROR
    # a normal shard still passes, and one with no metrics at all is an error
    counts = {D.DOCUMENTS_IN: 3, D.DOCUMENTS_KEPT: 2, D.DOCUMENTS_REJECTED: 1}
    metrics.record(Asset.RAW_DOCUMENTS, "ok", counts, {"invalid_json": 1})
    assert funnel_check(metrics, Asset.RAW_DOCUMENTS, "ok", *FUNNEL).passed
    missing = funnel_check(metrics, Asset.RAW_DOCUMENTS, "missing", *FUNNEL)
    assert not missing.passed and missing.severity == ERROR


def test_fault_vectors_check_of_an_empty_shard_before_any_table_warns(tmp_path):
    from realsyn_assets.assets.embed import IMAGES, SENTENCES, _vectors_ok

    metrics, _, vectors = _resources(tmp_path)
    for spec in (IMAGES, SENTENCES):
        metrics.record(spec.source, "zero", {spec.source_kept: 0})
        # before the fix: FileNotFoundError "LanceDB table 'images' does not exist"
        assert _is_zero_rows_warning(_vectors_ok(spec, vectors, metrics, "zero"))


def test_fault_survivors_check_of_an_empty_shard_warns(tmp_path):
    from realsyn_assets.assets.dedup import _no_duplicate_survivors

    _, storage, _ = _resources(tmp_path)
    layout = storage.layout
    layout.register_shards([_touch(tmp_path / "zero.jsonl")])
    empty = pa.table({"sentence_id": pa.array([], pa.string()), "kept": pa.array([], pa.bool_())})
    write_table(empty, layout.partition_file(Asset.SENTENCE_DEDUP, "zero"))
    result = _no_duplicate_survivors(storage, Asset.SENTENCE_DEDUP, "sentence_id", "zero")
    assert _is_zero_rows_warning(result), result


def test_fault_retrieval_and_synthesis_checks_of_an_empty_shard_warn(tmp_path):
    from realsyn_assets.assets.retrieve import _recall_ok, _three_texts_ok
    from realsyn_assets.assets.synthesize import _synthetic_ok

    metrics, storage, _ = _resources(tmp_path)
    columns = ["text1_id", "text2_id", "text3_id", "text1_score", "text2_score", "text3_score"]
    empty = pa.table(
        {c: pa.array([], pa.float32() if "score" in c else pa.string()) for c in columns}
    )
    write_table(empty, storage.layout.partition_file(Asset.RETRIEVED_TEXTS, "zero"))
    R, S = RetrievedTextsMetrics, SyntheticTextsMetrics
    metrics.record(Asset.RETRIEVED_TEXTS, "zero", {R.IMAGES: 0, R.IMAGES_WITH_K_TEXTS: 0})
    synthetic = {S.IMAGES: 0, S.EMPTY_SYN_TEXT: 0, S.TAG_VOCABULARY: 5, S.MEAN_SYN_SCORE: 0.0}
    metrics.record(Asset.SYNTHETIC_TEXTS, "zero", synthetic)
    assert _is_zero_rows_warning(_three_texts_ok(storage, "zero"))
    assert _is_zero_rows_warning(_recall_ok(metrics, "zero"))
    assert _is_zero_rows_warning(_synthetic_ok(metrics, "zero", storage))


def test_fault_empty_synthetic_table_keeps_its_schema():
    one = ShardInputs(["a"], ["/a.jpg"], np.ones((1, 2), np.float32), [["t"]], [["s"]])
    kw = {"captions": [None], "caption_meta": ("offline", "m"), "tags": [["tag"]]}
    kw |= {"tag_scores": [[0.5]], "syn": ["text"], "gen_meta": ("offline", "m", "v")}
    kw |= {"caption_flags": [[]], "syn_flags": [[]]}
    full = synthetic_table(one, "s", [0], scores=np.ones(1), **kw)
    empty = synthetic_table(one, "s", [], scores=np.zeros(0), **kw)
    assert empty.num_rows == 0
    assert empty.schema.equals(full.schema), (empty.schema, full.schema)


def test_fault_sentence_funnel_of_a_shard_without_sentences_warns(tmp_path):
    metrics, _, _ = _resources(tmp_path)
    E = ExtractedSentencesMetrics
    counts = {E.TEXT_BLOCKS: 1, E.SENTENCES_IN: 1, E.SENTENCES_KEPT: 0, E.SENTENCES_REJECTED: 1}
    metrics.record(Asset.EXTRACTED_SENTENCES, "junk", counts, {"url": 1})
    funnel = (E.SENTENCES_IN, E.SENTENCES_KEPT, E.SENTENCES_REJECTED)
    result = funnel_check(metrics, Asset.EXTRACTED_SENTENCES, "junk", *funnel)
    assert _is_zero_rows_warning(result), result


def _touch(path):
    path.write_bytes(b"")
    return path
