"""image_captioner through Dagster on a small home: the offline backend trains and saves a
captioner whose captions depend on the image vectors; another backend trains nothing; both
checks fail when their condition is broken."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.assets import caption
from realsyn_assets.core.generation.offline_captioner import (
    OFFLINE_CAPTIONER_FILE,
    load_offline_captioner,
    train_offline_captioner,
)
from realsyn_assets.core.io import write_table
from realsyn_assets.names import CORPUS, Asset
from realsyn_assets.names import ImageCaptionerMetadata as MD
from realsyn_assets.names import ImageCaptionerMetrics as M
from realsyn_assets.resources import (
    CaptionerResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.home import Home
from realsyn_assets.resources.vectors import vectors_column

COLOURS = ["red", "blue", "green", "yellow"]
SHAPES = ["circle", "square", "star"]
SMALL = {"min_steps": 0, "epochs": 120, "hidden_dim": 48, "text_pairs": 100, "sample_images": 64}


def _small_home(root) -> Home:
    """One shard of 36 one-image documents: text block, image, unrelated text block. Vectors
    are a fixed projection of (colour, shape) one-hots plus noise, as a CLIP-like encoder would
    place images and the sentences that describe them."""
    home = Home(root)
    shard_file = root / "corpus.jsonl"
    shard_file.write_text("{}\n")
    (key,) = [e.key for e in home.register_shards([shard_file])]
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((len(COLOURS) + len(SHAPES), 24))
    items, images, sentences, image_vecs, sentence_vecs = [], [], [], [], []

    def vec(ci, si):
        onehot = np.zeros(len(COLOURS) + len(SHAPES))
        onehot[ci] = onehot[len(COLOURS) + si] = 1
        v = onehot @ projection + 0.2 * rng.standard_normal(24)
        return v / np.linalg.norm(v)

    for n in range(36):
        ci, si, doc = n % len(COLOURS), (n // len(COLOURS)) % len(SHAPES), f"doc_{n:02d}"
        items += [(doc, 0, "text"), (doc, 1, "image"), (doc, 2, "text")]
        images.append((f"img_{n:02d}", key, doc, 1, f"images/{n:02d}.jpg"))
        image_vecs.append(vec(ci, si))
        for pos, text, v in (
            (0, f"Here you can see a {COLOURS[ci]} {SHAPES[si]}.", vec(ci, si)),
            (2, f"Our visit number {n} was in the spring.", rng.standard_normal(24)),
        ):
            sentences.append((f"snt_{n:02d}_{pos}", key, doc, pos, 0, text))
            sentence_vecs.append(v / np.linalg.norm(v))
    cols = ["doc_id", "position", "kind"]
    raw = pa.table({c: [row[i] for row in items] for i, c in enumerate(cols)})
    write_table(raw, home.partition_file(Asset.RAW_DOCUMENTS, key))
    store = VectorStoreResource(home=HomeResource(path=str(root)))
    cols = ["image_id", "shard", "doc_id", "position", "path"]
    table = pa.table({c: [row[i] for row in images] for i, c in enumerate(cols)})
    store.replace_shard("images", key, table.append_column("vector", vectors_column(image_vecs)))
    cols = ["sentence_id", "shard", "doc_id", "position", "sent_index", "text"]
    table = pa.table({c: [row[i] for row in sentences] for i, c in enumerate(cols)})
    store.replace_shard(
        "sentences", key, table.append_column("vector", vectors_column(sentence_vecs))
    )
    return home


def _resources(root, captioner: CaptionerResource | None = None) -> dict:
    home = HomeResource(path=str(root))
    return {
        "storage": StorageResource(home=home),
        "metrics": MetricsResource(home=home),
        "vectors": VectorStoreResource(home=home),
        "captioner": captioner or CaptionerResource(),
    }


def _materialize(root, captioner=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [caption.image_captioner, caption.captions_depend_on_pixels],
        resources=_resources(root, captioner),
        run_config={"ops": {Asset.IMAGE_CAPTIONER: {"config": SMALL}}},
    )


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption_home")
    _small_home(root)
    result = _materialize(root)
    assert result.success
    return root, result


def test_offline_backend_trains_saves_and_passes_its_check(trained_home):
    root, result = trained_home
    path = Home(root).asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE
    model = load_offline_captioner(path)
    (materialization,) = result.asset_materializations_for_node(Asset.IMAGE_CAPTIONER)
    meta = materialization.metadata
    assert meta[MD.BACKEND].value == "offline" and meta[MD.MODEL].value == model.model
    assert (
        meta[M.IMAGE_PAIRS].value == 36 and meta[M.TEXT_PAIRS].value == 48
    )  # 12 distinct describing + 36 others
    assert meta[M.LOSS_LAST].value < meta[M.LOSS_FIRST].value
    examples = meta[MD.EXAMPLES].value
    assert len(examples) == 8 and all(e["caption"] for e in examples)
    # in-document re-selection chose the describing sentence, so captions name the concept
    assert "here you can see a red circle" in json.dumps(examples).lower()
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.description
    assert check.metadata["distinct_share"].value >= caption.MIN_DISTINCT_SHARE
    counts = MetricsResource(home=HomeResource(path=str(root))).counts(
        Asset.IMAGE_CAPTIONER, CORPUS
    )
    assert counts[M.IMAGE_PAIRS] == 36


def test_pixel_check_fails_for_a_captioner_that_ignores_the_image(trained_home):
    root, _ = trained_home
    resources = _resources(root)
    path = Home(root).asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE
    original = path.read_bytes()
    try:
        # trained on one constant vector: every image gets the same caption
        blind = train_offline_captioner(
            np.ones((36, 24), np.float32),
            [f"A {c} thing." for c in COLOURS] * 9,
            seed=0,
            epochs=5,
            hidden_dim=32,
        )
        blind.save(path)
        result = caption.pixel_dependence_result(
            resources["captioner"], resources["storage"], resources["vectors"]
        )
        assert not result.passed
        meta = {k: v.value for k, v in result.metadata.items()}
        assert meta["distinct_share"] < caption.MIN_DISTINCT_SHARE
        assert meta["min_distinct_share"] == caption.MIN_DISTINCT_SHARE
    finally:
        path.write_bytes(original)


def test_concept_rate_check_warns_below_the_bar(tmp_path):
    metrics = MetricsResource(home=HomeResource(path=str(tmp_path)))
    assert caption.concept_rate_result(metrics).passed  # nothing recorded: not the demo
    metrics.record(
        Asset.IMAGE_CAPTIONER,
        CORPUS,
        {M.GT_NAMES_CONCEPT: 0.4, M.GT_RANDOM_NAMES_CONCEPT: 0.0, M.IMAGE_PAIRS: 100},
        {},
    )
    small = caption.concept_rate_result(metrics)  # too few pairs for the bar
    assert small.passed and "bar not applied" in small.description
    metrics.record(
        Asset.IMAGE_CAPTIONER,
        CORPUS,
        {M.GT_NAMES_CONCEPT: 0.4, M.GT_RANDOM_NAMES_CONCEPT: 0.0, M.IMAGE_PAIRS: 600},
        {},
    )
    result = caption.concept_rate_result(metrics)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in result.metadata.items()}
    assert meta["threshold"] == caption.MIN_GT_NAMES_CONCEPT and meta["names_concept"] == 0.4


def test_a_configured_backend_trains_nothing(tmp_path):
    _small_home(tmp_path)
    server = CaptionerResource(backend="vllm", model="some-vlm")  # in-process: not probed
    result = _materialize(tmp_path, server)
    assert result.success
    (materialization,) = result.asset_materializations_for_node(Asset.IMAGE_CAPTIONER)
    assert materialization.metadata[MD.USED].value is False
    assert materialization.metadata[MD.MODEL].value == "some-vlm"
    assert not (Home(tmp_path).asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE).exists()
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and "configured backend" in check.description


def test_a_corpus_without_embeddings_is_an_empty_state_not_an_error(tmp_path):
    home = Home(tmp_path)
    shard_file = tmp_path / "corpus.jsonl"
    shard_file.write_text("{}\n")
    (key,) = [e.key for e in home.register_shards([shard_file])]
    empty = pa.table({"doc_id": pa.array([], pa.string()), "position": pa.array([], pa.int32())})
    write_table(
        empty.append_column("kind", pa.array([], pa.string())),
        home.partition_file(Asset.RAW_DOCUMENTS, key),
    )
    result = _materialize(tmp_path)
    assert result.success
    (materialization,) = result.asset_materializations_for_node(Asset.IMAGE_CAPTIONER)
    assert materialization.metadata[MD.USED].value is False
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "0 rows" in check.description
