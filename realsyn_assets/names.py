"""Names as code: asset keys, asset groups and metric names, defined once.

Assets, checks, the quality report, the pipeline runner and the benchmarks import these instead of
spelling strings, so a renamed asset or metric breaks at import or in a test, not silently in a
report. Every member is a `str` (StrEnum), so it can be passed wherever Dagster or DuckDB expects a
plain name. `realsyn_assets_tests/test_names.py` checks that the graph defines exactly these asset
keys and that every metric a stage records is declared here.
"""

from __future__ import annotations

from enum import StrEnum


class Asset(StrEnum):
    """Every asset key of the graph, in pipeline order."""

    RAW_DOCUMENTS = "raw_documents"
    EXTRACTED_IMAGES = "extracted_images"
    EXTRACTED_SENTENCES = "extracted_sentences"
    BOOTSTRAP_ENCODER = "bootstrap_encoder"
    IMAGE_EMBEDDINGS = "image_embeddings"
    SENTENCE_EMBEDDINGS = "sentence_embeddings"
    IMAGE_DEDUP = "image_dedup"
    WORD_STATISTICS = "word_statistics"
    SEMANTIC_FILTER = "semantic_filter"
    SENTENCE_DEDUP = "sentence_dedup"
    SENTENCE_CLUSTERS = "sentence_clusters"
    RETRIEVED_TEXTS = "retrieved_texts"
    SYNTHETIC_TEXTS = "synthetic_texts"
    IMAGE_CLUSTERS = "image_clusters"
    BALANCED_SUBSET = "balanced_subset"
    CLIP_CHECKPOINT = "clip_checkpoint"
    CLIP_EVALUATION = "clip_evaluation"
    QUALITY_REPORT = "quality_report"


class Group(StrEnum):
    """Asset groups: one per paper stage, one module each under `assets/`."""

    INGEST = "ingest"
    EXTRACT = "extract"
    EMBED = "embed"
    FILTER = "filter"
    DEDUP = "dedup"
    RETRIEVE = "retrieve"
    SYNTHESIZE = "synthesize"
    BALANCE = "balance"
    TRAIN = "train"
    QUALITY = "quality"


# The partition key under which corpus-wide (unpartitioned) assets record their metrics.
CORPUS = "__all__"


# ---- metric names, one class per asset (the keys each asset records in DuckDB and metadata) ----
# Each asset's owner keeps its class complete: every key its asset records, nothing else.
# Keys made at run time from a prefix (e.g. per-round scores) are declared as `*_PREFIX` members.
