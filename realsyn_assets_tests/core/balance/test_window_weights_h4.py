"""The paper's cosine window (0.51-0.61) follows the configured model and its weights: it applies
to EVA02-E-14-plus with real weights, whether from the hub (pretrained tag) or a local checkpoint
file of them, and nowhere else (other models, or EVA02 with random or bootstrap weights, get a
calibrated window). Nothing is instantiated: the rule reads only names."""

from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.balance.sampling import COSINE_WINDOW, calibrate_window, choose_window
from realsyn_assets.resources import EncoderResource, HomeResource

SIMS = np.linspace(-0.2, 0.9, 301)
UNSET = (-1.0, -1.0)


def _encoder(tmp_path, **config) -> EncoderResource:
    return EncoderResource(home=HomeResource(path=str(tmp_path)), **config)


@pytest.mark.parametrize(
    "config",
    [
        {"checkpoint": "/models/eva02_e14_plus.pt"},
        {"pretrained": "laion2b_s9b_b144k"},
        {"pretrained": "laion2b_s9b_b144k", "checkpoint": "/models/eva02_e14_plus.pt"},
    ],
)
def test_paper_window_for_eva02_with_a_checkpoint_or_a_pretrained_tag(tmp_path, config):
    encoder = _encoder(tmp_path, model_name="EVA02-E-14-plus", **config)
    assert encoder.kind() in ("checkpoint", "pretrained")
    low, high, source = choose_window(SIMS, UNSET, encoder.model_name, encoder.configured_weights())
    assert (low, high, source) == (*COSINE_WINDOW, "paper")
    assert (low, high) == (0.51, 0.61)


@pytest.mark.parametrize(
    "config",
    [
        {"model_name": "EVA02-E-14-plus"},  # random (or bootstrap) weights: not EVA02's scale
        {"model_name": "ViT-B-32", "checkpoint": "/models/vit_b_32.pt"},
        {"model_name": "ViT-S-32-alt", "checkpoint": "/models/vit_s_32.pt"},
        {"model_name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
    ],
)
def test_calibrated_window_for_other_models_or_without_real_weights(tmp_path, config):
    encoder = _encoder(tmp_path, **config)
    low, high, source = choose_window(SIMS, UNSET, encoder.model_name, encoder.configured_weights())
    assert source == "calibrated"
    assert (low, high) == calibrate_window(SIMS)


def test_configured_bounds_win_over_the_paper_window(tmp_path):
    encoder = _encoder(tmp_path, model_name="EVA02-E-14-plus", checkpoint="/m/eva.pt")
    assert choose_window(SIMS, (0.3, 0.4), encoder.model_name, encoder.configured_weights()) == (
        0.3,
        0.4,
        "configured",
    )
