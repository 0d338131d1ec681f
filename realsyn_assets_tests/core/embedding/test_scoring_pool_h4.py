"""The bounded sentence pool a configured encoder is scored on: every sentence of the scored
images' documents, plus a seeded sample of the others up to the cap."""

from __future__ import annotations

import pyarrow as pa

from realsyn_assets.core.embedding.bootstrap.chance import same_document_chance
from realsyn_assets.core.embedding.bootstrap.pool import scoring_pool


def _sentences(n_docs: int, per_doc: int) -> pa.Table:
    docs = [f"d{d:03d}" for d in range(n_docs) for _ in range(per_doc)]
    return pa.table({"sentence_id": [f"s{i}" for i in range(len(docs))], "doc_id": docs})


def test_small_corpus_is_scored_on_every_sentence():
    sentences = _sentences(5, 4)
    rows = [{"doc_id": "d001"}]
    assert scoring_pool(rows, sentences, cap=100, seed=0) is sentences
    assert scoring_pool(rows, sentences, cap=0, seed=0) is sentences


def test_pool_keeps_own_documents_and_fills_the_cap_with_a_seeded_sample():
    sentences = _sentences(500, 10)  # 5000 sentences
    rows = [{"doc_id": "d007"}, {"doc_id": "d123"}, {"doc_id": "d007"}]
    pool = scoring_pool(rows, sentences, cap=300, seed=3)
    docs = pool.column("doc_id").to_pylist()
    assert pool.num_rows == 300
    assert docs.count("d007") == 10 and docs.count("d123") == 10  # every own sentence
    ids = pool.column("sentence_id").to_pylist()
    assert ids == sorted(ids, key=lambda s: int(s[1:]))  # original order
    assert ids == scoring_pool(rows, sentences, cap=300, seed=3).column("sentence_id").to_pylist()
    assert ids != scoring_pool(rows, sentences, cap=300, seed=4).column("sentence_id").to_pylist()
    # chance measured on the pool: own sentences over pool size
    assert same_document_chance(rows, pool) == 10 / 300


def test_own_documents_are_kept_past_the_cap():
    sentences = _sentences(50, 10)
    rows = [{"doc_id": f"d{d:03d}"} for d in range(20)]  # 200 own sentences
    pool = scoring_pool(rows, sentences, cap=100, seed=0)
    assert pool.num_rows == 200
    assert set(pool.column("doc_id").to_pylist()) == {r["doc_id"] for r in rows}
