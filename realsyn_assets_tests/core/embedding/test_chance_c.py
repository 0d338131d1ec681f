"""The chance level of same-document retrieval (core/embedding/bootstrap/chance.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from realsyn_assets.core.embedding.bootstrap.chance import same_document_chance


def test_chance_is_the_mean_share_of_each_images_own_document():
    sentences = pa.table({"doc_id": ["a", "a", "a", "b", "c"]})
    rows = [{"doc_id": "a"}, {"doc_id": "b"}, {"doc_id": "z"}]
    assert same_document_chance(rows, sentences) == pytest.approx((3 / 5 + 1 / 5 + 0) / 3)


def test_chance_of_nothing_is_zero():
    assert same_document_chance([], pa.table({"doc_id": ["a"]})) == 0.0
    assert (
        same_document_chance([{"doc_id": "a"}], pa.table({"doc_id": pa.array([], pa.string())}))
        == 0.0
    )
