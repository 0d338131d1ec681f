"""Every asset check can fail, and a test shows it failing; the checks that guard what downstream
assets consume are blocking.

The convention: for check `X` some test function under realsyn_assets_tests is named
`test_X_fails...` and makes it fail on purpose. This test finds those functions by name, so a new
check without a failing test breaks the build here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from realsyn_assets.assets import ALL_CHECKS

TESTS = Path(__file__).resolve().parent

# Data that downstream assets read: a failure here must stop them (issue 17's list, by check).
MUST_BLOCK = {
    "download_statuses_complete",
    "image_funnel",
    "sentence_funnel",
    "bootstrap_beats_random",
    "image_vectors_valid",
    "sentence_vectors_valid",
    "semantic_filter_funnel",
    "word_counts_consistent",
    "image_dedup_funnel",
    "sentence_dedup_funnel",
    "unique_image_survivors",
    "unique_sentence_survivors",
    "clusters_cover_sentences",
    "three_texts_per_image",
    "captions_depend_on_pixels",
    "synthetic_rows_complete",
    "cosine_window_sane",
    "subset_size_within_target",
    "subsets_nested",
    "subset_matches_clusters",
    "export_samples_complete",
    "export_splits_disjoint",
    "export_tars_match_parquet",
}


def _check_specs():
    return [spec for checks in ALL_CHECKS for spec in checks.check_specs]


def _test_function_names() -> set[str]:
    names = set()
    for path in TESTS.rglob("test_*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        names.update(
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        )
    return names


def test_check_names_are_unique():
    names = [spec.name for spec in _check_specs()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("check", sorted(spec.name for spec in _check_specs()))
def test_every_check_has_a_test_that_makes_it_fail(check):
    functions = _test_function_names()
    assert any(name.startswith(f"test_{check}_fails") for name in functions), (
        f"no test named test_{check}_fails... makes the check {check!r} fail"
    )


def test_checks_guarding_downstream_data_are_blocking():
    specs = {spec.name: spec for spec in _check_specs()}
    missing = MUST_BLOCK - set(specs)
    assert not missing, f"listed but not defined: {sorted(missing)}"
    not_blocking = sorted(name for name in MUST_BLOCK if not specs[name].blocking)
    assert not not_blocking, f"guard downstream data but are not blocking: {not_blocking}"
