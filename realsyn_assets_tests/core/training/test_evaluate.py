"""Tests for the training helpers around `train_clip`: subset rows -> samples, loss summary, and
the held-out evaluation of an encoder."""

from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.training.clip import TEXT_COLUMNS, loss_first_last, samples_from_rows
from realsyn_assets.core.training.evaluate import RECALLS, HeldOut, evaluate_encoder
from realsyn_assets.names import ClipEvaluationMetrics as EM


def test_samples_from_rows_keeps_non_empty_texts():
    rows = [
        {"image_path": "a.jpg", "text1": "one", "text2": None, "text3": "", "syn_text": "syn"},
        {"image_path": "b.jpg", "text1": None, "text2": "", "text3": None, "syn_text": ""},
    ]
    assert TEXT_COLUMNS == ("text1", "text2", "text3", "syn_text")
    samples = samples_from_rows(rows)
    assert [(s.image_path, s.texts) for s in samples] == [("a.jpg", ["one", "syn"])]


def test_loss_first_last_are_tenth_means():
    losses = list(range(20, 0, -1))  # 20 steps: tenths of 2 steps
    assert loss_first_last(losses) == (19.5, 1.5)
    assert loss_first_last([3.0]) == (3.0, 3.0)


class _OneHotEncoder:
    """Image i and text i (and class c's prompt) embed on the same axis."""

    def __init__(self, classes):
        self.classes = classes

    def encode_images(self, paths):
        return np.eye(8, dtype=np.float32)[[int(p) for p in paths]]

    def encode_texts(self, texts):
        axis = [
            next(i for i, c in enumerate(self.classes) if c in t) if not t.isdigit() else int(t)
            for t in texts
        ]
        return np.eye(8, dtype=np.float32)[axis]


def test_evaluate_encoder_recall_and_zero_shot():
    classes = ["red circle", "blue square"]
    encoder = _OneHotEncoder(classes)
    paths, texts = ["0", "1", "2"], ["0", "1", "2"]
    held = HeldOut(paths, texts, ["red circle", "blue square", None], classes)
    scores = evaluate_encoder(encoder, held)
    for name in (EM.I2T_R_AT_1, EM.T2I_R_AT_1, EM.I2T_R_AT_10):
        assert scores[name] == 1.0
    assert scores[EM.ZERO_SHOT_ACCURACY] == pytest.approx(1.0)
    no_classes = evaluate_encoder(encoder, HeldOut(paths, texts))
    assert EM.ZERO_SHOT_ACCURACY not in no_classes
    assert set(no_classes) == set(RECALLS) and len(RECALLS) == 6
