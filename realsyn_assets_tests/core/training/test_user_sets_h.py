"""User evaluation sets: a captions.jsonl folder (Flickr protocol recall) and a folder-per-class
set (prompt-ensemble zero-shot), their validation errors, and the shipped Flickr8k sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realsyn_assets.core.training import user_sets as us
from realsyn_assets.core.training.evaluate import (
    HeldOut,
    UserSets,
    evaluate_models,
    model_encoders,
)
from realsyn_assets.names import ClipEvaluationMetrics as EM

FLICKR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "flickr8k_thumbs_dev"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _image(path: Path, colour, shape: str = "square") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (48, 48), (255, 255, 255))
    pixels = image.load()
    for x in range(48):
        for y in range(48):
            inside = (x - 24) ** 2 + (y - 24) ** 2 < 300 if shape == "circle" else 8 < x < 40
            if inside and 8 < y < 40:
                pixels[x, y] = colour
    image.save(path)
    return path


def _shapes_set(root: Path) -> Path:
    """A folder-per-class set of coloured shapes: 3 classes, 2 images each."""
    for name, colour in COLOURS.items():
        for shape in ("square", "circle"):
            _image(root / f"{name}_shape" / f"{shape}.png", colour, shape)
    return root


def _captions_set(root: Path, lines: list[str] | None = None) -> Path:
    if lines is None:
        lines = []
        for name, colour in COLOURS.items():
            _image(root / "images" / f"{name}.jpg", colour)
            record = {"image": f"images/{name}.jpg", "captions": [f"a {name} square", name]}
            lines.append(json.dumps(record))
    root.mkdir(parents=True, exist_ok=True)
    (root / us.CAPTIONS_FILE).write_text("\n".join(lines) + "\n")
    return root


class _ColourEncoder:
    """Embeds an image by its mean colour and a text by the colour names it mentions."""

    def encode_images(self, paths):
        rows = [np.asarray(Image.open(p).convert("RGB"), np.float32).mean((0, 1)) for p in paths]
        emb = np.stack([[r[0] - r[2], r[1] - r[2], r[2] - r[0]] for r in rows])
        return self._norm(np.maximum(emb, 0) + 1e-3)

    def encode_texts(self, texts):
        emb = np.array([[n in t for n in COLOURS] for t in texts], np.float32) + 1e-3
        return self._norm(emb)

    @staticmethod
    def _norm(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_captions_set_loads_and_scores_with_the_flickr_protocol(tmp_path):
    captions = us.load_captions_set(_captions_set(tmp_path / "caps"))
    assert captions.name == "caps" and len(captions.image_paths) == 3
    assert captions.caption_image.tolist() == [0, 0, 1, 1, 2, 2]
    scores = us.captions_recall(_ColourEncoder(), captions)
    assert scores["i2t_R@1"] == 1.0 and scores["t2i_R@1"] == 1.0


def test_classification_set_loads_classes_from_folder_names(tmp_path):
    classes = us.load_classification_set(_shapes_set(tmp_path / "shapes"))
    assert classes.class_names == ["blue shape", "green shape", "red shape"]
    assert classes.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert us.ensemble_zero_shot(_ColourEncoder(), classes) == 1.0


def test_prompt_ensemble_averages_normalised_prompt_embeddings():
    emb = us.class_embeddings(_ColourEncoder(), ["red", "blue"], ("a {}.", "the {} one"))
    assert emb.shape == (2, 3)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"captions": ["x"]}', "'image' must be"),
        ('{"image": "images/red.jpg", "captions": []}', "'captions' must be"),
        ('{"image": "images/red.jpg", "captions": ["ok", ""]}', "every caption"),
        ('{"image": "images/missing.jpg", "captions": ["x"]}', "not found"),
        ('{"image": "../outside.jpg", "captions": ["x"]}', "outside"),
        ('{"image": "images/blue.jpg", "captions": ["x"]}', "already listed on line 2"),
    ],
)
def test_bad_captions_line_names_file_and_line(tmp_path, line, message):
    folder = tmp_path / "caps"
    _image(folder / "images" / "red.jpg", COLOURS["red"])
    _image(folder / "images" / "blue.jpg", COLOURS["blue"])
    _image(tmp_path / "outside.jpg", COLOURS["red"])
    good = json.dumps({"image": "images/blue.jpg", "captions": ["blue"]})
    _captions_set(folder, [json.dumps({"image": "images/red.jpg", "captions": ["r"]}), good, line])
    with pytest.raises(us.UserSetError, match=message) as info:
        us.load_captions_set(folder)
    assert f"{folder / us.CAPTIONS_FILE}:3" in str(info.value)


def test_missing_or_tiny_sets_fail_clearly(tmp_path):
    with pytest.raises(us.UserSetError, match="captions file not found"):
        us.load_captions_set(tmp_path)
    _image(tmp_path / "one" / "a.jpg", COLOURS["red"])
    _captions_set(tmp_path / "one", [json.dumps({"image": "a.jpg", "captions": ["a"]})])
    with pytest.raises(us.UserSetError, match="at least 2 images"):
        us.load_captions_set(tmp_path / "one")
    with pytest.raises(us.UserSetError, match="at least 2 class folders"):
        us.load_classification_set(tmp_path / "one")
    shapes = _shapes_set(tmp_path / "shapes")
    (shapes / "red_shape" / "notes.txt").write_text("x")
    with pytest.raises(us.UserSetError, match="notes.txt: not an image"):
        us.load_classification_set(shapes)


def test_user_sets_with_the_same_folder_name_are_refused(tmp_path):
    a = us.load_classification_set(_shapes_set(tmp_path / "a" / "set"))
    b = us.load_classification_set(_shapes_set(tmp_path / "b" / "set"))
    with pytest.raises(us.UserSetError, match="share a folder name"):
        UserSets(classification=[a, b])


def test_every_model_is_scored_on_the_same_sets(tmp_path):
    sets = UserSets(
        captions=[us.load_captions_set(_captions_set(tmp_path / "caps"))],
        classification=[us.load_classification_set(_shapes_set(tmp_path / "shapes"))],
    )
    caps = sets.captions[0]
    held = HeldOut(caps.image_paths, ["red", "green", "blue"])
    results = evaluate_models({"a": _ColourEncoder(), "b": _ColourEncoder()}, held, sets)
    assert results["a"] == results["b"]
    assert results["a"][f"{EM.CAPTIONS_SET_PREFIX}caps/i2t_R@5"] == 1.0
    assert results["a"][f"{EM.CLASSIFICATION_SET_PREFIX}shapes/{EM.ZERO_SHOT_ACCURACY}"] == 1.0
    assert results["a"][EM.I2T_R_AT_1] == 1.0


@pytest.mark.skipif(not FLICKR.is_dir(), reason="../shared/data/flickr8k_thumbs_dev is absent")
def test_flickr8k_sample_loads_and_scores_with_a_real_encoder(tmp_path):
    full = us.load_captions_set(FLICKR)
    assert len(full.image_paths) == 866 and len(full.captions) == 4330
    lines = (FLICKR / us.CAPTIONS_FILE).read_text().splitlines()[:24]
    folder = tmp_path / "flickr_small"
    for line in lines:
        image = json.loads(line)["image"]
        (folder / image).parent.mkdir(parents=True, exist_ok=True)
        (folder / image).write_bytes((FLICKR / image).read_bytes())
    _captions_set(folder, lines)
    small = UserSets(captions=[us.load_captions_set(folder)])
    encoders = model_encoders({"untrained": None}, "realsyn-tiny", tmp_path / "models", "cpu")
    held = HeldOut(small.captions[0].image_paths[:4], small.captions[0].captions[:20:5])
    scores = evaluate_models(encoders, held, small)["untrained"]
    keys = [
        f"{EM.CAPTIONS_SET_PREFIX}flickr_small/{d}_R@{k}"
        for d in ("i2t", "t2i")
        for k in us.RECALL_KS
    ]
    assert all(0.0 <= scores[k] <= 1.0 for k in keys)
