"""The two checks that score against the demo corpus's ground truth behave alike: with nothing
to judge (real data, or a configured model that was not trained here) they pass and say "not
applicable: no ground truth" with a null value; on a demo home where the training should have
recorded a score, a missing score fails as a WARN."""

from __future__ import annotations

import dagster as dg

from realsyn_assets.assets import caption
from realsyn_assets.assets.bootstrap import in_document_result
from realsyn_assets.names import CORPUS, Asset
from realsyn_assets.names import BootstrapEncoderMetrics as B
from realsyn_assets_tests.assets.test_checks_fail_upstream_c import Home

WARN = dg.AssetCheckSeverity.WARN


def _value(result):
    """The `value` metadata entry (Dagster stores None as a null metadata value)."""
    entry = result.metadata["value"]
    return getattr(entry, "value", entry)


def _not_applicable(result) -> bool:
    return (
        result.passed
        and result.description.startswith("not applicable: no ground truth")
        and _value(result) is None
    )


def test_both_checks_are_not_applicable_on_real_data(tmp_path):
    metrics = Home(tmp_path).metrics
    metrics.record(Asset.BOOTSTRAP_ENCODER, CORPUS, {B.TRAINED: 1, B.PAIRS: 600})
    assert _not_applicable(in_document_result(metrics, demo_corpus=False))
    assert _not_applicable(caption.concept_rate_result(metrics, demo_corpus=False))


def test_both_checks_are_not_applicable_for_a_configured_model(tmp_path):
    metrics = Home(tmp_path).metrics
    metrics.record(Asset.BOOTSTRAP_ENCODER, CORPUS, {B.TRAINED: 0})
    encoder = in_document_result(metrics, demo_corpus=True)
    assert _not_applicable(encoder) and "configured encoder" in encoder.description
    captioner = caption.concept_rate_result(metrics, demo_corpus=True, backend="openai")
    assert _not_applicable(captioner) and "configured openai captioner" in captioner.description


def test_bootstrap_beats_in_document_fails_on_a_demo_home_without_a_score(tmp_path):
    metrics = Home(tmp_path).metrics
    metrics.record(Asset.BOOTSTRAP_ENCODER, CORPUS, {B.TRAINED: 1, B.PAIRS: 600})
    result = in_document_result(metrics, demo_corpus=True)
    assert result.passed is False and result.severity == WARN
    assert _value(result) is None
    captioner = caption.concept_rate_result(metrics, demo_corpus=True)
    assert captioner.passed is False and captioner.severity == WARN


def test_not_applicable_is_stored_with_a_null_value(tmp_path):
    home = Home(tmp_path)  # no demo_corpus/ground_truth.json: real data
    home.metrics.record(Asset.BOOTSTRAP_ENCODER, CORPUS, {B.TRAINED: 1, B.PAIRS: 600})
    evaluation = home.evaluate("bootstrap_beats_in_document", None)
    assert evaluation.passed, evaluation
    assert evaluation.description == "not applicable: no ground truth (real data)"
    assert _value(evaluation) is None
