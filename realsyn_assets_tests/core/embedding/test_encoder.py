from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec, ensure_local_weights
from realsyn_assets.core.embedding.images import UnreadableImageError
from realsyn_assets.core.embedding.runtime import torch_threads
from realsyn_assets.core.training.clip import TrainConfig, TrainSample, train_clip

COLOURS = [(220, 30, 30), (30, 180, 40), (30, 60, 220), (240, 220, 30), (10, 10, 10)]
NAMES = ["red", "green", "blue", "yellow", "black"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("enc_images")
    paths = []
    for i in range(10):
        size = (64 + 16 * (i % 3), 64 + 8 * (i % 2))  # mixed sizes go through preprocess
        im = Image.new("RGB", size, (128, 128, 128))
        ImageDraw.Draw(im).ellipse([8, 8, 48, 48], fill=COLOURS[i % len(COLOURS)])
        path = folder / f"{i}.{'png' if i % 2 else 'jpg'}"
        im.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def trained_checkpoint(images, tmp_path_factory) -> Path:
    samples = [
        TrainSample(str(p), [f"a {NAMES[i % len(NAMES)]} circle"]) for i, p in enumerate(images)
    ]
    out = tmp_path_factory.mktemp("trained")
    return train_clip(
        samples, TrainConfig(batch_size=10, epochs=3, num_threads=1), out
    ).checkpoint_path


def test_local_weights_created_once_and_deterministic(tmp_path):
    path = tmp_path / "w" / "realsyn-tiny-seed0.pt"
    assert ensure_local_weights("realsyn-tiny", path) == path
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert ensure_local_weights("realsyn-tiny", path) == path
    assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data
    assert not list(path.parent.glob("*.tmp"))

    import torch

    def tensors(p: Path) -> dict:
        return torch.load(p, weights_only=True)["state_dict"]

    first = tensors(path)
    again = tensors(ensure_local_weights("realsyn-tiny", tmp_path / "other.pt"))  # same seed
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = tensors(ensure_local_weights("realsyn-tiny", tmp_path / "seed1.pt", seed=1))
    assert not torch.equal(first["visual.conv1.weight"], other["visual.conv1.weight"])


def test_encoder_is_lazy_and_describes_itself_without_loading(weights_dir):
    enc = Encoder(EncoderSpec(), weights_dir / "lazy")
    assert enc.dim == 128
    assert enc.source == f"local-random:{weights_dir / 'lazy' / 'realsyn-tiny-seed0.pt'}"
    ident = enc.identity
    assert ident.startswith("realsyn-tiny|local-random|seed0|cfg:")
    assert not (weights_dir / "lazy").exists()  # nothing created yet
    assert Encoder(EncoderSpec(), weights_dir / "elsewhere").identity == ident  # path-free
    enc.encode_texts(["x"])
    assert (weights_dir / "lazy" / "realsyn-tiny-seed0.pt").is_file()
    assert enc.identity == ident  # stable across creating the file


def test_embeddings_shapes_norms_and_determinism(images, weights_dir):
    a = Encoder(EncoderSpec(batch_size=4), weights_dir)
    b = Encoder(EncoderSpec(batch_size=7), weights_dir)
    ia, ib = a.encode_images(images), b.encode_images([str(p) for p in images])
    assert ia.shape == (len(images), 128) and ia.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ia, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ia, ib, atol=1e-5)  # batch size does not matter
    assert not np.allclose(ia[0], ia[1])

    texts = ["a red circle", "a blue circle", "word " * 300]  # last one exceeds 77 tokens
    ta, tb = a.encode_texts(texts), b.encode_texts(texts)
    assert ta.shape == (3, 128) and ta.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ta, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ta, tb, atol=1e-5)
    assert a.encode_images([]).shape == (0, 128) and a.encode_texts([]).shape == (0, 128)

    model, preprocess, tokenizer = a.model_and_transforms()
    assert tokenizer(["a red circle"]).shape == (1, 77)
    assert not model.training


def test_num_workers_gives_the_same_result(images, weights_dir):
    serial = Encoder(EncoderSpec(batch_size=3), weights_dir).encode_images(images)
    parallel = Encoder(EncoderSpec(batch_size=3, num_workers=2), weights_dir).encode_images(images)
    np.testing.assert_allclose(serial, parallel, atol=1e-6)


def test_unreadable_image_raises_naming_the_file(images, weights_dir, tmp_path):
    bad = tmp_path / "corrupt_file.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    missing = tmp_path / "missing.png"
    for workers in (0, 2):
        enc = Encoder(EncoderSpec(batch_size=4, num_workers=workers), weights_dir)
        with pytest.raises(UnreadableImageError, match="corrupt_file.jpg") as info:
            enc.encode_images([*images[:5], bad, *images[5:]])
        assert info.value.path == str(bad)
        with pytest.raises(UnreadableImageError, match="missing.png"):
            enc.encode_images([missing])


def test_trained_checkpoint_is_loaded_and_changes_identity(
    images, weights_dir, trained_checkpoint, tmp_path
):
    random_enc = Encoder(EncoderSpec(), weights_dir)
    trained = Encoder(EncoderSpec(checkpoint=str(trained_checkpoint)), weights_dir)
    assert trained.source == f"checkpoint:{trained_checkpoint}"
    assert trained.identity.startswith("realsyn-tiny|checkpoint|sha1:")
    assert trained.identity != random_enc.identity

    e_random, e_trained = random_enc.encode_images(images), trained.encode_images(images)
    assert e_trained.shape == e_random.shape
    assert np.abs(e_trained - e_random).max() > 1e-2
    np.testing.assert_allclose(np.linalg.norm(e_trained, axis=1), 1.0, atol=1e-5)

    # identity is content-addressed: a copy elsewhere is the same weights
    copy = tmp_path / "copy.pt"
    shutil.copy(trained_checkpoint, copy)
    assert Encoder(EncoderSpec(checkpoint=str(copy)), weights_dir).identity == trained.identity

    # a plain state dict (no {"state_dict": ...} wrapper) loads to the same model
    import torch

    plain = tmp_path / "plain.pt"
    torch.save(torch.load(trained_checkpoint, weights_only=True)["state_dict"], plain)
    plain_enc = Encoder(EncoderSpec(checkpoint=str(plain)), weights_dir)
    np.testing.assert_allclose(plain_enc.encode_images(images), e_trained, atol=1e-6)
    assert plain_enc.identity != trained.identity  # different file bytes

    # and the local random weights file is itself a valid checkpoint
    local = ensure_local_weights("realsyn-tiny", weights_dir / "realsyn-tiny-seed0.pt")
    as_ckpt = Encoder(EncoderSpec(checkpoint=str(local)), weights_dir)
    np.testing.assert_allclose(as_ckpt.encode_images(images), e_random, atol=1e-6)


def test_missing_checkpoint_and_bad_settings_are_clear(weights_dir, tmp_path):
    enc = Encoder(EncoderSpec(checkpoint=str(tmp_path / "nope.pt")), weights_dir)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        enc.encode_texts(["x"])
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        _ = enc.identity
    import torch

    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"visual.proj": torch.zeros(3, 3)}}, wrong)
    with pytest.raises(RuntimeError, match="wrong.pt.*different model"):
        Encoder(EncoderSpec(checkpoint=str(wrong)), weights_dir).encode_texts(["x"])
    with pytest.raises(ValueError, match="precision"):
        Encoder(replace(EncoderSpec(), precision="int8"), weights_dir)
    assert os.path.isdir(weights_dir)


def test_torch_threads_is_temporary():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
