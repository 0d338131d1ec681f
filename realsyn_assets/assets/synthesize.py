"""synthesize: one synthetic text per image, fused from its top realistic text, a caption and
open-set tags (paper §3.2, "image semantic augmented generation")."""

import math

import dagster as dg
import numpy as np
from pydantic import Field

from realsyn_assets.assets._checks import Result, check_result, shard_check, zero_rows_result
from realsyn_assets.assets._common import stage_metadata
from realsyn_assets.core.generation import synthesis
from realsyn_assets.core.generation.tags import cached_tag_vocabulary
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.core.retrieval.clustering import MEMBERS
from realsyn_assets.names import Asset, Group, RetrievedTextsMetrics, SyntheticTextsMetrics
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    EncoderResource,
    GeneratorResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)


class SynthesisConfig(dg.Config):
    tag_vocabulary_size: int = Field(
        8000,
        description="Tags mined from the clustered sentences (paper: RAM++'s 4k tags plus 4k "
        "mined from real sentences).",
    )
    tags_per_image: int = Field(5, description="Open-set tags given to the generator per image.")
    tag_prompt: str = Field(
        "a photo of {}", description="Text prompt each tag is embedded in ({} = the tag)."
    )


@dg.asset(
    group_name=Group.SYNTHESIZE,
    partitions_def=shard_partitions,
    deps=[Asset.RETRIEVED_TEXTS, Asset.IMAGE_EMBEDDINGS, Asset.SENTENCE_CLUSTERS],
    description="Per image: open-set tags (image-text similarity over a tag vocabulary mined "
    "from the corpus, standing in for RAM++), the fused synthetic text from the generator "
    "resource, and its image-text cosine (used by semantic balance sampling).",
)
def synthetic_texts(
    context: dg.AssetExecutionContext,
    config: SynthesisConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
    generator: GeneratorResource,
) -> dg.MaterializeResult:
    M = SyntheticTextsMetrics
    home, key = storage.layout, context.partition_key
    retrieved = read_table(
        home.partition_file(Asset.RETRIEVED_TEXTS, key), columns=["image_id", "shard", "text1"]
    )
    ids = retrieved.column("image_id").to_pylist()
    rows, all_vecs = vectors.shard_matrix("images", [key])
    img_vecs = synthesis.rows_for(ids, rows.column("image_id").to_pylist(), all_vecs)
    enc = encoder.get()
    vocab, tag_vecs = cached_tag_vocabulary(
        home.asset_dir(Asset.SENTENCE_CLUSTERS) / MEMBERS,
        home.asset_dir(Asset.SYNTHETIC_TEXTS),
        enc,
        prompt=config.tag_prompt,
        size=config.tag_vocabulary_size,
    )
    tags = synthesis.image_tags(img_vecs, tag_vecs, vocab, k=config.tags_per_image)
    texts1 = retrieved.column("text1").to_pylist()
    gen = generator.get()
    context.log.info(f"{key}: generating {len(ids)} synthetic texts with {gen.name}")
    syn = synthesis.fuse(gen, texts1, tags)
    scores = synthesis.synthetic_scores(enc, img_vecs, syn)
    out = synthesis.synthetic_table(ids, key, tags, syn, scores, gen.name)
    path = write_table(out, home.partition_file(Asset.SYNTHETIC_TEXTS, key))
    counts = {
        M.IMAGES: out.num_rows,
        M.EMPTY_SYN_TEXT: sum(1 for s in syn if not s.strip()),
        M.TAG_VOCABULARY: len(vocab),
        M.MEAN_SYN_SCORE: float(np.mean(scores)) if len(scores) else 0.0,
    }
    meta = stage_metadata(metrics, Asset.SYNTHETIC_TEXTS, key, counts, None, out, path)
    meta["generator"] = gen.name
    if out.num_rows:
        meta["examples"] = dg.MetadataValue.json(synthesis.examples(texts1, tags, syn))
    return dg.MaterializeResult(metadata=meta)


@shard_check(
    Asset.SYNTHETIC_TEXTS,
    "synthetic_text_present",
    "Every image has a non-empty synthetic text.",
)
def synthetic_text_present(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    return _synthetic_ok(metrics, context.partition_key)


def _synthetic_ok(metrics: MetricsResource, key: str) -> Result:
    M = SyntheticTextsMetrics
    counts = metrics.counts(Asset.SYNTHETIC_TEXTS, key)
    retrieved = metrics.counts(Asset.RETRIEVED_TEXTS, key)
    images = retrieved.get(RetrievedTextsMetrics.IMAGES, -1)
    ok = counts.get(M.EMPTY_SYN_TEXT, 1) == 0 and counts.get(M.IMAGES) == images
    if ok and images == 0:
        return zero_rows_result(f"{key} has no image to write a synthetic text for", images=0)
    scores_ok = math.isfinite(counts.get(M.MEAN_SYN_SCORE, float("nan")))
    return check_result(
        ok and scores_ok,
        f"{int(counts.get(M.EMPTY_SYN_TEXT, -1))} empty of {int(counts.get(M.IMAGES, 0))}",
        images=int(counts.get(M.IMAGES, 0)),
    )
