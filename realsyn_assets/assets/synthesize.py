"""synthesize: one synthetic text per image, fused from its top realistic text, a caption and
open-set tags (paper §3.2, "image semantic augmented generation")."""

import math

import dagster as dg
import numpy as np
import pyarrow as pa

from realsyn_assets.assets._checks import Result, check_result, shard_check
from realsyn_assets.assets._common import stage_metadata
from realsyn_assets.core.balance.sampling import pair_cosine
from realsyn_assets.core.generation import fusion as gen_core
from realsyn_assets.core.io import read_table, save_npy, write_table
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    EncoderResource,
    GeneratorResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)


class SynthesisConfig(dg.Config):
    tag_vocabulary_size: int = 8000  # paper: RAM++ 4k tags + 4k mined from real sentences
    tags_per_image: int = 5
    tag_prompt: str = "a photo of {}"


def tag_vocabulary(home, enc, config: SynthesisConfig) -> tuple[list[str], np.ndarray]:
    """The tag vocabulary mined from the clustered sentences and its prompt embeddings.

    Identical for every shard of one clustering and encoder, and encoding up to 8,000 prompts
    costs more than tagging a shard: computed once, cached next to the outputs under a key of
    (sentences file hash, encoder identity, prompt, size).
    """
    import hashlib
    import json

    from realsyn_assets.core.embedding.encoder import file_sha1
    from realsyn_assets.core.io import atomic_write_bytes

    members_path = home.asset_dir("sentence_clusters") / "members.parquet"
    ident = (
        f"{file_sha1(members_path)}|{enc.identity}|{config.tag_prompt}|{config.tag_vocabulary_size}"
    )
    key = hashlib.sha1(ident.encode()).hexdigest()[:16]
    cache = home.asset_dir("synthetic_texts") / f"tags-{key}"
    words_file, vecs_file = cache.with_suffix(".json"), cache.with_suffix(".npy")
    if words_file.is_file() and vecs_file.is_file():
        return json.loads(words_file.read_text()), np.load(vecs_file)
    members = read_table(members_path, columns=["text"])
    vocab = gen_core.tag_vocabulary(
        members.column("text").to_pylist(), size=config.tag_vocabulary_size
    )
    vecs = (
        enc.encode_texts([config.tag_prompt.format(w) for w in vocab])
        if vocab
        else np.zeros((0, enc.dim), np.float32)
    )
    save_npy(np.asarray(vecs, np.float32), vecs_file)
    atomic_write_bytes(words_file, json.dumps(vocab).encode())
    for stale in cache.parent.glob("tags-*"):  # earlier clusterings / encoders
        if stale.stem != cache.name:
            stale.unlink(missing_ok=True)
    return vocab, vecs


@dg.asset(
    group_name="synthesize",
    partitions_def=shard_partitions,
    deps=["retrieved_texts", "image_embeddings", "sentence_clusters"],
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
    home = storage.layout
    key = context.partition_key
    retrieved = read_table(
        home.partition_file("retrieved_texts", key), columns=["image_id", "shard", "text1"]
    )
    rows, all_vecs = vectors.shard_matrix("images", [key])
    row_of = {iid: r for r, iid in enumerate(rows.column("image_id").to_pylist())}
    ids = retrieved.column("image_id").to_pylist()
    img_vecs = all_vecs[np.array([row_of[i] for i in ids], dtype=np.int64)] if ids else all_vecs[:0]

    enc = encoder.get()
    vocab, tag_vecs = tag_vocabulary(home, enc, config)
    tags: list[list[str]] = [[] for _ in ids]
    if vocab and ids:
        tags = gen_core.select_tags(img_vecs, tag_vecs, vocab, k=config.tags_per_image)
    texts1 = retrieved.column("text1").to_pylist()
    items = [
        gen_core.FusionInput(realistic_text=t or "", caption=None, tags=tg)
        for t, tg in zip(texts1, tags, strict=True)
    ]
    gen = generator.get()
    context.log.info(f"{key}: generating {len(items)} synthetic texts with {gen.name}")
    syn = gen.generate(items) if items else []
    syn_vecs = enc.encode_texts(syn) if syn else np.zeros((0, enc.dim), np.float32)
    scores = pair_cosine(img_vecs, syn_vecs) if syn else np.zeros(0, np.float32)
    out = pa.table(
        {
            "image_id": ids,
            "shard": [key] * len(ids),
            "caption": pa.array([None] * len(ids), pa.string()),
            "tags": pa.array(tags, pa.list_(pa.string())),
            "syn_text": pa.array(syn, pa.string()),
            "syn_score": pa.array(np.asarray(scores, dtype=np.float32)),
            "generator": [gen.name] * len(ids),
        }
    )
    path = write_table(out, home.partition_file("synthetic_texts", key))
    counts = {
        "images": out.num_rows,
        "empty_syn_text": sum(1 for s in syn if not s.strip()),
        "tag_vocabulary": len(vocab),
        "mean_syn_score": float(np.mean(scores)) if len(scores) else 0.0,
    }
    meta = stage_metadata(metrics, "synthetic_texts", key, counts, None, out, path)
    meta["generator"] = gen.name
    if out.num_rows:
        meta["examples"] = dg.MetadataValue.json(
            [
                {"text1": t, "tags": tg, "syn_text": s}
                for t, tg, s in list(zip(texts1, tags, syn, strict=True))[:3]
            ]
        )
    return dg.MaterializeResult(metadata=meta)


@shard_check(
    "synthetic_texts", "synthetic_text_present", "Every image has a non-empty synthetic text."
)
def synthetic_text_present(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    counts = metrics.counts("synthetic_texts", context.partition_key)
    images = metrics.counts("retrieved_texts", context.partition_key).get("images", -1)
    ok = counts.get("empty_syn_text", 1) == 0 and counts.get("images") == images
    scores_ok = math.isfinite(counts.get("mean_syn_score", float("nan")))
    return check_result(
        ok and scores_ok,
        f"{int(counts.get('empty_syn_text', -1))} empty of {int(counts.get('images', 0))}",
        images=int(counts.get("images", 0)),
    )
