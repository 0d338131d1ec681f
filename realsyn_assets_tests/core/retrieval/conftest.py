"""Shared fixtures of the retrieval tests."""

from __future__ import annotations

import pytest

from realsyn_assets.core.retrieval import clustering


@pytest.fixture
def cluster_and_save():
    """The core of the `sentence_clusters` step (cluster, then store in cluster order) with small
    test settings; returns `(run, (members, vectors, labels))`."""

    def run(members, matrix, out_dir, **overrides):
        params = dict(
            recluster=False,
            n_clusters=4,
            sentences_per_cluster=420,
            seed=0,
            niter=10,
            drift_threshold=0.05,
        )
        params.update(overrides)
        keys = clustering.sentence_keys(members)
        result = clustering.cluster_sentences(keys, matrix, out_dir, **params)
        return result, clustering.save_clustering(out_dir, result, members, keys, matrix)

    return run
