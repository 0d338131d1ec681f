"""image_captioner: the captioner of image semantic augmented generation (paper §3.2).

With the captioner resource's `offline` backend (the default: no captioning model configured)
this trains the project's own small captioner from the corpus, as `bootstrap_encoder` trains the
encoder: a GRU decoder conditioned on each image's embedding, taught to write the sentence next
to that image that the encoder finds most similar (`core/generation/offline_captioner.py`). With
any other backend nothing is trained; the configured backend and model are recorded.
`synthetic_texts` captions its images with whatever this leaves configured.
"""

import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
from PIL import Image
from pydantic import Field

from realsyn_assets.assets._checks import Result, check_result, zero_rows_result
from realsyn_assets.assets._common import code_version, stage_metadata
from realsyn_assets.core.generation.captioners import (
    CAPTION_PROMPT_VERSION,
    CaptionInput,
    model_identity,
)
from realsyn_assets.core.generation.offline_captioner import (
    BACKEND,
    OFFLINE_CAPTIONER_FILE,
    TrainLog,
    caption_pairs,
    caption_sample,
    distinct_share,
    load_offline_captioner,
    noise_vectors,
    text_pairs,
    train_offline_captioner,
)
from realsyn_assets.demo.hook import demo_scorer
from realsyn_assets.names import CORPUS, Asset, Group, Kind
from realsyn_assets.names import ImageCaptionerMetadata as MD
from realsyn_assets.names import ImageCaptionerMetrics as M
from realsyn_assets.partitions import ALL_SHARDS
from realsyn_assets.resources import (
    CaptionerResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.vectors import table_vectors

IMAGES, SENTENCES = "images", "sentences"

# Resource and config fields that change how fast or how reliably a model answers, not what it
# writes: left out of the code versions of the assets that use them.
SPEED_FIELDS = (
    "base_url",
    "api_key",
    "concurrency",
    "timeout_s",
    "max_retries",
    "batch_size",
    "device",
    "tensor_parallel_size",
    "max_model_len",
    "gpu_memory_utilization",
    "enforce_eager",
    "max_num_seqs",
    "sample_images",
)


class CaptionerTrainingConfig(dg.Config):
    """How the offline captioner is trained (ignored when another backend is configured)."""

    window: int = Field(
        1, description="Nearest text blocks before and after each image that give its candidates."
    )
    keep: int = Field(
        1, description="Candidates per image kept as captions: the most similar under the encoder."
    )
    text_pairs: int = Field(
        4000,
        description="Also train on up to this many (sentence embedding, sentence) pairs, a random "
        "subset of the corpus's sentences: the encoder's shared space lets the decoder learn "
        "words from text alone, which makes captions of unseen images name more of what they "
        "show. 0 = image pairs only.",
    )
    max_image_pairs: int = Field(
        20_000, description="Train on a random subset of at most this many image pairs; 0 = all."
    )
    epochs: int = Field(16, description="Passes over the training pairs.")
    min_steps: int = Field(
        600,
        description="Small corpora train for more epochs, up to this many optimiser steps "
        "(batches of 64 pairs) in all; 0 = exactly `epochs`.",
    )
    hidden_dim: int = Field(256, description="Width of the GRU decoder.")
    seed: int = Field(0, description="Seed of the initial weights, batch order and subsets.")
    sample_images: int = Field(
        256, description="Images captioned for the metadata, the demo score and the checks."
    )


@dg.asset(
    group_name=Group.SYNTHESIZE,
    deps=[
        Asset.BOOTSTRAP_ENCODER,
        dg.AssetDep(Asset.RAW_DOCUMENTS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.IMAGE_EMBEDDINGS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.SENTENCE_EMBEDDINGS, partition_mapping=ALL_SHARDS),
    ],
    pool="encoder",
    code_version=code_version(
        "1", CaptionerTrainingConfig, CaptionerResource, exclude=SPEED_FIELDS
    ),
    kinds={Kind.PYTORCH},
    description="The image captioner synthetic_texts uses. With the offline backend (default), "
    "a small GRU decoder trained on (image embedding, most similar nearby sentence) pairs of "
    "the corpus, saved in `data/image_captioner/`; its data version is the SHA-256 of the saved "
    "weights, so a retrained captioner marks synthetic_texts stale. With a configured model "
    "(openai, vllm, transformers) nothing is trained and the data version is that model's "
    "identity (a local directory's content hash). A rerun retrains from the current corpus "
    "with the same seed. Metadata: example captions and, on the demo corpus, the share of "
    "captions naming the image's colour and shape (trained vs random weights).",
)
def image_captioner(
    context: dg.AssetExecutionContext,
    config: CaptionerTrainingConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    captioner: CaptionerResource,
) -> dg.MaterializeResult:
    if captioner.backend != "offline":
        return _configured_captioner(context, captioner)
    home = storage.layout
    data = _training_data(storage, vectors, config)
    if data is None:
        return _nothing_to_train(context)
    images, image_vecs, (train_vecs, train_texts), n_image_pairs = data
    log, start = TrainLog(), time.perf_counter()
    model = train_offline_captioner(
        train_vecs,
        train_texts,
        seed=config.seed,
        log=context.log.info,
        train_log=log,
        epochs=config.epochs,
        min_steps=config.min_steps,
        hidden_dim=config.hidden_dim,
    )
    seconds = time.perf_counter() - start
    path = model.save(home.asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE)
    ids, sample = caption_sample(images.column("image_id").to_pylist(), config.sample_images)
    captions = model.caption_vectors(image_vecs[sample])
    counts = {
        M.IMAGE_PAIRS: n_image_pairs,
        M.TEXT_PAIRS: len(train_texts) - n_image_pairs,
        M.VOCABULARY: log.vocab_size,
        M.EPOCHS: log.epochs,
        M.LOSS_FIRST: float(log.loss_first),
        M.LOSS_LAST: float(log.loss_last),
        M.SECONDS: float(seconds),
        M.IMAGES_CAPTIONED: len(captions),
        M.DISTINCT_CAPTION_SHARE: distinct_share(captions),
        **_demo_scores(home, model, images, image_vecs, (train_vecs, train_texts), config),
    }
    meta = stage_metadata(metrics, Asset.IMAGE_CAPTIONER, CORPUS, counts, path=path)
    meta[MD.BACKEND], meta[MD.MODEL], meta[MD.USED] = model.backend, model.model, True
    examples = [{"image_id": i, "caption": c} for i, c in zip(ids[:8], captions[:8], strict=False)]
    meta[MD.EXAMPLES] = dg.MetadataValue.json(examples)
    context.log.info(f"offline captioner {model.model}: {n_image_pairs} image pairs")
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(model.model))


def _training_data(storage: StorageResource, vectors: VectorStoreResource, config):
    """(images, image vectors, (training vectors, training texts), image pairs among them), or
    None when the corpus has no image embedding or no sentence at all.

    Image pairs (each image's most similar nearby sentence) come first, then the text pairs
    (a sentence's own embedding); a corpus whose images have no nearby text trains on text
    pairs alone."""
    images = vectors.read(IMAGES, columns=["image_id", "doc_id", "position", "path", "vector"])
    sentences = vectors.read(SENTENCES, columns=["doc_id", "position", "text", "vector"])
    if not images.num_rows or not sentences.num_rows:
        return None
    items = storage.read_shards(Asset.RAW_DOCUMENTS, columns=["doc_id", "position", "kind"])
    image_vecs, sentence_vecs = table_vectors(images), table_vectors(sentences)
    pair_vecs, pair_texts, pair_ids = _subsample(
        caption_pairs(
            items,
            images,
            image_vecs,
            sentences,
            sentence_vecs,
            window=config.window,
            keep=config.keep,
        ),
        config.max_image_pairs,
        config.seed,
    )
    extra_vecs, extra_texts = text_pairs(sentences, sentence_vecs, config.text_pairs, config.seed)
    if not pair_texts and not extra_texts:
        return None
    train = (np.concatenate([pair_vecs, extra_vecs]), pair_texts + extra_texts)
    return images, image_vecs, train, len(pair_texts)


def _nothing_to_train(context) -> dg.MaterializeResult:
    """No image embedding or no sentence in the corpus: a valid (empty) state, not an error;
    nothing is saved and the check reports "0 rows"."""
    context.log.warning("offline captioner not trained: no image or sentence embeddings")
    return dg.MaterializeResult(
        metadata={MD.USED: False, MD.BACKEND: BACKEND, M.IMAGE_PAIRS: 0},
        data_version=dg.DataVersion("empty"),
    )


def _configured_captioner(context, captioner: CaptionerResource) -> dg.MaterializeResult:
    """No training: the configured captioning model is what `synthetic_texts` uses."""
    context.log.info(f"not training: captioner backend {captioner.backend} ({captioner.model})")
    model = model_identity(captioner.model) if captioner.model else ""
    identity = f"{captioner.backend}:{model}:{CAPTION_PROMPT_VERSION}"
    return dg.MaterializeResult(
        metadata={MD.USED: False, MD.BACKEND: captioner.backend, MD.MODEL: captioner.model},
        data_version=dg.DataVersion(identity),
    )


def _subsample(pairs: tuple, limit: int, seed: int) -> tuple:
    """At most `limit` of the (vectors, texts, ids) pairs, a random subset in their order."""
    vecs, texts, ids = pairs
    if not limit or len(texts) <= limit:
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), limit, replace=False))
    return vecs[keep], [texts[i] for i in keep], [ids[i] for i in keep]


def _demo_scores(home, model, images, image_vecs, pairs, config) -> dict:
    """On the demo corpus: the share of labelled images whose caption names their colour and
    shape, for the trained captioner and for the same decoder with random weights (untrained),
    over every image."""
    scorer = demo_scorer(home)
    if scorer is None:
        return {}
    ids = images.column("image_id").to_pylist()
    untrained = train_offline_captioner(
        *pairs, seed=config.seed, epochs=0, hidden_dim=config.hidden_dim
    )
    rates = []
    for captioner in (model, untrained):
        flags = scorer.names_concept(ids, captioner.caption_vectors(image_vecs))
        scored = [f for f in flags if f is not None]
        rates.append(float(np.mean(scored)) if scored else 0.0)
    return {
        M.GT_IMAGES_SCORED: len(scored),
        M.GT_NAMES_CONCEPT: rates[0],
        M.GT_RANDOM_NAMES_CONCEPT: rates[1],
    }


# ---- checks -------------------------------------------------------------------------------------

# A captioner that ignores its input writes one caption for every image (or the same caption for
# an image as for a random vector); on the demo corpus the trained one writes ~0.8 distinct
# captions per image, and a corpus of few concepts (the tests' 12) fewer: ~0.3.
MIN_DISTINCT_SHARE = 0.1
MIN_NOISE_DIFFERENT_SHARE = 0.5
# Demo corpus: share of labelled images whose caption names their colour and shape (0.83 on the
# default 240 documents). Smaller demo corpora hold too few pairs for the bar (48 documents,
# 126 image pairs: ~0.70), so it applies from GT_MIN_IMAGE_PAIRS image pairs, as the bootstrap
# encoder's ground-truth check does.
MIN_GT_NAMES_CONCEPT = 0.7
GT_MIN_IMAGE_PAIRS = 300


def pixel_dependence_result(
    captioner: CaptionerResource,
    storage: StorageResource,
    vectors: VectorStoreResource,
    sample_images: int = 256,
    seed: int = 0,
) -> Result:
    """The check's logic: captions of sampled images differ from each other and from the
    captions of random vectors of the same width."""
    if captioner.backend == "openai":
        return served_pixel_dependence_result(captioner, storage, vectors, seed)
    if captioner.backend != "offline":
        return check_result(
            True,
            f"not applicable: configured backend {captioner.backend} (an in-process model "
            "is loaded only by synthetic_texts, which validates its captions)",
            backend=captioner.backend,
        )
    images = vectors.read(IMAGES, columns=["image_id", "vector"])
    if not images.num_rows:
        return zero_rows_result("no image embeddings: no offline captioner was trained")
    path = storage.layout.asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE
    if not path.is_file():
        return check_result(False, f"no offline captioner at {path}", path=str(path))
    model = load_offline_captioner(path)
    _, sample = caption_sample(images.column("image_id").to_pylist(), sample_images)
    captions = model.caption_vectors(table_vectors(images)[sample])
    noise = model.caption_vectors(noise_vectors(len(captions), model.vector_dim, seed))
    distinct = distinct_share(captions)
    differ = float(np.mean([c != n for c, n in zip(captions, noise, strict=True)]))
    return check_result(
        distinct >= MIN_DISTINCT_SHARE and differ >= MIN_NOISE_DIFFERENT_SHARE,
        f"{distinct:.2f} distinct captions per image (>= {MIN_DISTINCT_SHARE}); {differ:.2f} "
        f"differ from a noise vector's caption (>= {MIN_NOISE_DIFFERENT_SHARE})",
        distinct_share=distinct,
        min_distinct_share=MIN_DISTINCT_SHARE,
        differs_from_noise=differ,
        min_differs_from_noise=MIN_NOISE_DIFFERENT_SHARE,
        images=len(captions),
        model=model.model,
    )


# A served captioning model is probed with a few corpus images and one noise image: a server
# that never sees the image (lost attachment, a text-only model) answers alike for all of them.
PROBE_IMAGES = 8
MIN_PROBE_DISTINCT_SHARE = 0.25  # at least 2 different captions for 8 images


def served_pixel_dependence_result(
    captioner: CaptionerResource, storage: StorageResource, vectors: VectorStoreResource, seed=0
) -> Result:
    """The check's logic for the openai backend: caption PROBE_IMAGES corpus images and a
    random-noise image through the configured server; the captions must differ from each other
    and from the noise image's."""
    images = vectors.read(IMAGES, columns=["image_id", "path"])
    if not images.num_rows:
        return zero_rows_result("no image embeddings: no image to probe the captioner with")
    _, sample = caption_sample(images.column("image_id").to_pylist(), PROBE_IMAGES)
    home = storage.layout
    paths = [home.resolve(images.column("path")[int(i)].as_py()) for i in sample]
    with tempfile.TemporaryDirectory() as tmp:
        noise = Path(tmp) / "noise.png"
        pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(noise)
        try:
            model = captioner.get()
            captions = model.caption([CaptionInput(Path(p)) for p in [*paths, noise]])
        except Exception as error:  # noqa: BLE001 - an unreachable model is this check's failure
            return check_result(False, f"{captioner.model} did not caption: {error}")
    *captions, noise_caption = [(c or "").strip().lower() for c in captions]
    distinct = len({c for c in captions if c}) / len(captions)
    differ = float(np.mean([bool(c) and c != noise_caption for c in captions]))
    return check_result(
        distinct >= MIN_PROBE_DISTINCT_SHARE and differ >= MIN_NOISE_DIFFERENT_SHARE,
        f"{captioner.model}: {distinct:.2f} distinct captions per probed image (>= "
        f"{MIN_PROBE_DISTINCT_SHARE}); {differ:.2f} differ from a noise image's caption (>= "
        f"{MIN_NOISE_DIFFERENT_SHARE})",
        distinct_share=float(distinct),
        min_distinct_share=MIN_PROBE_DISTINCT_SHARE,
        differs_from_noise=differ,
        min_differs_from_noise=MIN_NOISE_DIFFERENT_SHARE,
        images=len(captions),
        model=captioner.model,
        examples=dg.MetadataValue.json(captions[:3] + [noise_caption]),
    )


@dg.asset_check(
    asset=Asset.IMAGE_CAPTIONER,
    blocking=True,
    description="Captions depend on the pixels. Offline: the trained captioner gives sampled "
    "images different captions (>= 0.1 distinct per image), and different ones from random "
    "vectors (>= 0.5); a missing model file fails. openai backend: 8 corpus images and a noise "
    "image are captioned by the server (>= 0.25 distinct, >= 0.5 differ from the noise "
    "image's); an unreachable server fails. In-process vllm / transformers models are not "
    "loaded here (passes, says so). Blocking: synthetic_texts fuses these captions into every "
    "synthetic text.",
)
def captions_depend_on_pixels(
    captioner: CaptionerResource, storage: StorageResource, vectors: VectorStoreResource
) -> Result:
    return pixel_dependence_result(captioner, storage, vectors)


def concept_rate_result(
    metrics: MetricsResource, demo_corpus: bool = False, backend: str = "offline"
) -> Result:
    """The check's logic: the demo score recorded by the last offline training. It applies to
    an offline captioner on the demo corpus (whose ground truth it scores against); there a
    missing score fails."""
    counts = metrics.counts(Asset.IMAGE_CAPTIONER, CORPUS)
    rate = counts.get(M.GT_NAMES_CONCEPT)
    if rate is None:
        if not demo_corpus or backend != "offline":
            why = "real data" if not demo_corpus else f"a configured {backend} captioner"
            return check_result(
                True,
                f"not applicable: no ground truth ({why})",
                value=None,
                threshold=MIN_GT_NAMES_CONCEPT,
            )
        return check_result(
            False,
            "no ground-truth score recorded by the offline training on the demo corpus",
            dg.AssetCheckSeverity.WARN,
            value=None,
            threshold=MIN_GT_NAMES_CONCEPT,
        )
    random = counts.get(M.GT_RANDOM_NAMES_CONCEPT, 0.0)
    pairs = int(counts.get(M.IMAGE_PAIRS, 0))
    return Result(
        passed=rate >= MIN_GT_NAMES_CONCEPT or pairs < GT_MIN_IMAGE_PAIRS,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"captions naming colour and shape: {rate:.3f} (>= {MIN_GT_NAMES_CONCEPT}); "
        f"random weights {random:.3f}"
        + (f" (bar not applied: {pairs} image pairs)" if pairs < GT_MIN_IMAGE_PAIRS else ""),
        metadata={
            "image_pairs": pairs,
            "min_image_pairs": GT_MIN_IMAGE_PAIRS,
            "names_concept": float(rate),
            "value": float(rate),
            "threshold": MIN_GT_NAMES_CONCEPT,
            "random_weights": float(random),
            "images_scored": int(counts.get(M.GT_IMAGES_SCORED, 0)),
        },
    )


@dg.asset_check(
    asset=Asset.IMAGE_CAPTIONER,
    description="Demo corpus (>= 300 image pairs): offline captions name the image's colour and "
    "shape for >= 0.7 of the labelled images. WARN, not blocking: a weak captioner makes "
    "synthetic texts less informative, not wrong. Not applicable (passes, says so, value "
    "null) without ground truth (real data) or with a configured captioning model; on the "
    "demo corpus a missing score is a WARN.",
)
def captions_name_demo_concepts(
    storage: StorageResource, metrics: MetricsResource, captioner: CaptionerResource
) -> Result:
    demo = demo_scorer(storage.layout) is not None
    return concept_rate_result(metrics, demo_corpus=demo, backend=captioner.backend)
