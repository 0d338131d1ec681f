"""The captioning and synthesis checks fail on bad data (a captioner blind to its input, a demo
captioner that names no concept or recorded no score, synthetic rows missing, repeated, empty or
without a finite cosine, too many invalid generations), and the data versions of image_captioner
and synthetic_texts change with the model, the prompt and the content."""

from __future__ import annotations

import base64
import io
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from realsyn_assets.assets import caption, synthesize
from realsyn_assets.core.generation.offline_captioner import (
    OFFLINE_CAPTIONER_FILE,
    train_offline_captioner,
)
from realsyn_assets.core.io import write_table
from realsyn_assets.names import (
    CORPUS,
    Asset,
    ImageCaptionerMetrics,
    Kind,
    RetrievedTextsMetrics,
    SyntheticTextsMetrics,
)
from realsyn_assets.resources import (
    CaptionerResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.vectors import vectors_column
from realsyn_assets_tests.local_http import serving

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
SHARD = "shard-000"
M = SyntheticTextsMetrics


@pytest.fixture
def home(tmp_path):
    resource = HomeResource(path=str(tmp_path))
    return (
        StorageResource(home=resource),
        MetricsResource(home=resource),
        VectorStoreResource(home=resource),
    )


def _meta(result) -> dict:
    return {k: v.value for k, v in result.metadata.items()}


# ---- image_captioner ----------------------------------------------------------------------------


def test_captions_depend_on_pixels_fails_for_a_blind_or_missing_captioner(home):
    storage, _, vectors = home
    rng = np.random.default_rng(0)
    n, dim = 40, 24
    images = pa.table(
        {
            "image_id": [f"img_{i}" for i in range(n)],
            "shard": [SHARD] * n,
            "vector": vectors_column(rng.normal(size=(n, dim)).astype(np.float32)),
        }
    )
    vectors.replace_shard("images", SHARD, images)
    offline = CaptionerResource()
    missing = caption.pixel_dependence_result(offline, storage, vectors)
    assert not missing.passed and missing.severity == ERROR

    # trained on one constant vector: every image gets the same caption
    blind = train_offline_captioner(
        np.ones((36, dim), np.float32),
        [f"A {c} thing." for c in ("red", "green", "blue")] * 12,
        seed=0,
        epochs=5,
        hidden_dim=32,
    )
    blind.save(storage.layout.asset_dir(Asset.IMAGE_CAPTIONER) / OFFLINE_CAPTIONER_FILE)
    result = caption.pixel_dependence_result(offline, storage, vectors)
    assert not result.passed and result.severity == ERROR
    meta = _meta(result)
    assert meta["distinct_share"] < meta["min_distinct_share"] == caption.MIN_DISTINCT_SHARE
    (spec,) = caption.captions_depend_on_pixels.check_specs
    assert spec.blocking


class _VisionServer(ThreadingHTTPServer):
    """An OpenAI-compatible vision chat server on 127.0.0.1 that names the dominant colour of
    the image it receives, or (blind) answers the same for every image."""

    daemon_threads = True

    def __init__(self, blind: bool):
        super().__init__(("127.0.0.1", 0), _VisionHandler)
        self.blind = blind


class _VisionHandler(BaseHTTPRequestHandler):
    server: _VisionServer

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - http.server API
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        (message,) = payload["messages"]
        url = next(p for p in message["content"] if p["type"] == "image_url")["image_url"]["url"]
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        mean = np.asarray(img, np.float64).reshape(-1, 3).mean(axis=0)
        colour = "grey" if mean.std() < 20 else ("red", "green", "blue")[int(mean.argmax())]
        text = "A photo." if self.server.blind else f"A {colour} square."
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        body = json.dumps({"id": "c", "object": "chat.completion", "choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _corpus_images(storage, vectors) -> None:
    """Eight images of three colours in the home and the LanceDB images table."""
    colours = [(220, 20, 20), (20, 200, 30), (25, 30, 210)] * 3
    ids, paths = [], []
    for i, colour in enumerate(colours[:8]):
        path = storage.layout.root / "images" / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), colour).save(path)
        ids.append(f"img_{i}")
        paths.append(f"images/img_{i}.png")
    table = pa.table(
        {
            "image_id": ids,
            "shard": [SHARD] * len(ids),
            "path": paths,
            "vector": vectors_column(np.eye(len(ids), 8, dtype=np.float32)),
        }
    )
    vectors.replace_shard("images", SHARD, table)


def test_captions_depend_on_pixels_fails_for_a_served_model_that_ignores_the_image(home):
    storage, _, vectors = home
    _corpus_images(storage, vectors)
    results = {}
    for blind in (False, True):
        with serving(_VisionServer(blind)) as base:
            served = CaptionerResource(backend="openai", model="vlm", base_url=f"{base}/v1")
            results[blind] = caption.pixel_dependence_result(served, storage, vectors)
    assert results[False].passed, results[False].description
    assert _meta(results[False])["distinct_share"] == 3 / 8
    blind = results[True]
    assert not blind.passed and blind.severity == ERROR
    assert _meta(blind)["differs_from_noise"] == 0.0
    assert _meta(blind)["min_distinct_share"] == caption.MIN_PROBE_DISTINCT_SHARE
    unreachable = CaptionerResource(
        backend="openai", model="vlm", base_url="http://127.0.0.1:9/v1", max_retries=0
    )
    down = caption.pixel_dependence_result(unreachable, storage, vectors)
    assert not down.passed and down.severity == ERROR


def test_captions_name_demo_concepts_fails_below_the_bar_or_without_a_score(home):
    _, metrics, _ = home
    C = ImageCaptionerMetrics
    off_demo = caption.concept_rate_result(metrics, demo_corpus=False)
    assert off_demo.passed and "not applicable" in off_demo.description
    served = caption.concept_rate_result(metrics, demo_corpus=True, backend="openai")
    assert served.passed and "not applicable" in served.description
    no_score = caption.concept_rate_result(metrics, demo_corpus=True)  # old check passed here
    assert not no_score.passed and no_score.severity == WARN
    scores = {C.GT_NAMES_CONCEPT: 0.4, C.GT_RANDOM_NAMES_CONCEPT: 0.05, C.IMAGE_PAIRS: 600}
    metrics.record(Asset.IMAGE_CAPTIONER, CORPUS, scores)
    low = caption.concept_rate_result(metrics, demo_corpus=True)
    assert not low.passed and low.severity == WARN
    assert _meta(low)["names_concept"] == 0.4
    assert _meta(low)["threshold"] == caption.MIN_GT_NAMES_CONCEPT
    metrics.record(Asset.IMAGE_CAPTIONER, CORPUS, {**scores, C.GT_NAMES_CONCEPT: 0.8})
    assert caption.concept_rate_result(metrics, demo_corpus=True).passed


def test_image_captioner_data_version_follows_a_configured_models_weights(tmp_path):
    model_dir = tmp_path / "blip"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"a" * 64)
    context = SimpleNamespace(log=logging.getLogger("test"))
    configured = CaptionerResource(backend="transformers", model=str(model_dir))
    first = caption._configured_captioner(context, configured).data_version
    assert first.value.startswith("transformers:")
    (model_dir / "weights.bin").write_bytes(b"b" * 64)  # same name, new weights
    assert caption._configured_captioner(context, configured).data_version != first


# ---- synthetic_texts ----------------------------------------------------------------------------


def _write_shard(storage, metrics, retrieved: list[str], rows: list[tuple], dropped=0) -> None:
    """retrieved: the image ids retrieved_texts wrote; rows: (image_id, syn_text, syn_score)."""
    layout = storage.layout
    write_table(
        pa.table({"image_id": retrieved}), layout.partition_file(Asset.RETRIEVED_TEXTS, SHARD)
    )
    table = pa.table(
        {
            "image_id": pa.array([r[0] for r in rows], pa.string()),
            "syn_text": pa.array([r[1] for r in rows], pa.string()),
            "syn_score": pa.array([r[2] for r in rows], pa.float32()),
        }
    )
    write_table(table, layout.partition_file(Asset.SYNTHETIC_TEXTS, SHARD))
    metrics.record(Asset.RETRIEVED_TEXTS, SHARD, {RetrievedTextsMetrics.IMAGES: len(retrieved)})
    counts = {M.IMAGES: len(retrieved), M.ROWS_WRITTEN: len(rows), M.DROPPED: dropped}
    metrics.record(Asset.SYNTHETIC_TEXTS, SHARD, counts)


IDS = ["img_a", "img_b", "img_c"]
ROWS = [("img_a", "A red circle.", 0.3), ("img_b", "A blue square.", 0.2)]


def test_synthetic_rows_complete_fails_on_missing_repeated_empty_or_non_finite_rows(home):
    storage, metrics, _ = home
    _write_shard(storage, metrics, IDS, ROWS, dropped=1)  # the drop policy removed img_c
    assert synthesize._synthetic_ok(metrics, SHARD, storage).passed
    bad = {
        "rows_unaccounted": (ROWS, 0),  # img_c lost without being counted as dropped
        "unexpected_rows": ([*ROWS, ("img_b", "Again.", 0.2)], 1),
        "empty_syn_text": ([ROWS[0], ("img_b", "", 0.2)], 1),
        "non_finite_score": ([ROWS[0], ("img_b", "A blue square.", float("nan"))], 1),
    }
    for key, (rows, dropped) in bad.items():
        _write_shard(storage, metrics, IDS, rows, dropped=dropped)
        result = synthesize._synthetic_ok(metrics, SHARD, storage)
        assert not result.passed and result.severity == ERROR, key
        assert _meta(result)[key] >= 1 and _meta(result)["threshold"] == 0, key
    storage.layout.partition_file(Asset.SYNTHETIC_TEXTS, SHARD).unlink()
    gone = synthesize._synthetic_ok(metrics, SHARD, storage)
    assert not gone.passed and gone.severity == ERROR
    (spec,) = synthesize.synthetic_rows_complete.check_specs
    assert spec.blocking


def test_synthetic_invalid_share_fails_above_the_configured_share(home):
    _, metrics, _ = home
    metrics.record(Asset.SYNTHETIC_TEXTS, SHARD, {M.IMAGES: 10, M.SYN_INVALID_SHARE: 0.2})
    result = synthesize._invalid_share_ok(metrics, SHARD)
    assert not result.passed and result.severity == WARN
    assert _meta(result)["invalid_share"] == 0.2 and _meta(result)["threshold"] == 0.05
    recorded = {M.IMAGES: 10, M.SYN_INVALID_SHARE: 0.2, M.MAX_INVALID_SHARE: 0.25}
    metrics.record(Asset.SYNTHETIC_TEXTS, SHARD, recorded)
    assert synthesize._invalid_share_ok(metrics, SHARD).passed  # the configured threshold


def test_synthetic_texts_data_version_names_models_prompts_and_content(tmp_path):
    path = tmp_path / "shard.parquet"
    path.write_bytes(b"rows")
    identity = ("openai", "qwen", "fusion-v1", "offline", "realsyn-offline-captioner@ab", "c1")
    version = synthesize._data_version(identity, path).value
    assert version.startswith("openai:qwen@fusion-v1+offline:realsyn-offline-captioner@ab@c1#")
    other_model = synthesize._data_version(("openai", "llama", *identity[2:]), path).value
    other_prompt = synthesize._data_version((*identity[:2], "fusion-v2", *identity[3:]), path)
    other_caption = synthesize._data_version((*identity[:5], "c2"), path).value
    assert len({version, other_model, other_prompt.value, other_caption}) == 4
    path.write_bytes(b"other rows")
    assert synthesize._data_version(identity, path).value != version


def test_generation_assets_declare_code_versions_and_kinds():
    for asset in (caption.image_captioner, synthesize.synthetic_texts):
        (key,) = asset.keys
        assert asset.code_versions_by_key[key].startswith("1.")
    (spec,) = synthesize.synthetic_texts.specs
    assert Kind.VLLM in spec.kinds and Kind.PARQUET in spec.kinds
