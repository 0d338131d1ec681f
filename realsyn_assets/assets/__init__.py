"""Thin Dagster wrappers around core/, one module per asset group."""

from realsyn_assets.assets.balance import balanced_subset, image_clusters
from realsyn_assets.assets.bootstrap import bootstrap_encoder
from realsyn_assets.assets.dedup import image_dedup, sentence_dedup
from realsyn_assets.assets.embed import image_embeddings, sentence_embeddings
from realsyn_assets.assets.extract import extracted_images, extracted_sentences, word_statistics
from realsyn_assets.assets.ingest import raw_documents
from realsyn_assets.assets.quality import quality_report
from realsyn_assets.assets.retrieve import retrieved_texts, sentence_clusters
from realsyn_assets.assets.synthesize import synthetic_texts
from realsyn_assets.assets.train import clip_checkpoint, clip_evaluation

ALL_ASSETS = [
    raw_documents,
    extracted_images,
    extracted_sentences,
    word_statistics,
    bootstrap_encoder,
    image_embeddings,
    sentence_embeddings,
    image_dedup,
    sentence_dedup,
    sentence_clusters,
    retrieved_texts,
    synthetic_texts,
    image_clusters,
    balanced_subset,
    clip_checkpoint,
    clip_evaluation,
    quality_report,
]
