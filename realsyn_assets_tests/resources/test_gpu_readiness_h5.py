"""GPU readiness on a CPU machine: device resolution ("auto" picks CUDA when torch sees it), a
clear error naming the config field when an explicit CUDA device is missing, and batch sizes
from config deciding how many forward passes run."""

from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.embedding import encoder as encoder_module
from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec
from realsyn_assets.core.embedding.runtime import (
    ENCODER_DEVICE_FIELD,
    DeviceUnavailableError,
    resolve_device,
)
from realsyn_assets.core.training.clip import TrainConfig, TrainSample, train_clip
from realsyn_assets.core.training.distributed import resolve_nproc
from realsyn_assets.resources.captioner import CaptionerResource
from realsyn_assets.resources.encoder import EncoderResource
from realsyn_assets.resources.home_resource import HomeResource

torch = pytest.importorskip("torch")


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, even where a GPU is present."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    """Torch reporting two GPUs (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_resolves_to_cpu_without_cuda(no_cuda):
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    assert resolve_nproc(0, "auto") == 1  # one training process per GPU, or one on the CPU


def test_auto_picks_cuda_when_torch_sees_a_gpu(two_gpus):
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"  # an explicit cpu stays on the CPU
    assert resolve_nproc(0, "auto") == 2  # torchrun: nproc_per_node 0 = one per GPU


def test_missing_gpu_index_names_the_field(two_gpus):
    with pytest.raises(DeviceUnavailableError, match=r"encoder\.device='cuda:2'.* 2 CUDA"):
        resolve_device("cuda:2", ENCODER_DEVICE_FIELD)


def test_a_device_that_is_no_torch_device_names_the_field():
    with pytest.raises(DeviceUnavailableError, match=r"captioner\.device='gpu0' is not a torch"):
        resolve_device("gpu0", "captioner.device")


def test_explicit_cuda_on_the_encoder_resource_fails_naming_the_field(no_cuda, tmp_path):
    resource = EncoderResource(home=HomeResource(path=str(tmp_path)), device="cuda")
    encoder = resource.get()  # cheap: nothing is loaded before the first use
    with pytest.raises(DeviceUnavailableError) as caught:
        encoder.encode_texts(["a red square"])
    message = str(caught.value)
    assert "encoder.device='cuda'" in message and "CUDA is not available" in message
    assert '"auto" or "cpu"' in message


def test_explicit_cuda_for_the_transformers_captioner_fails_naming_the_field(no_cuda, tmp_path):
    resource = CaptionerResource(backend="transformers", model=str(tmp_path), device="cuda:0")
    with pytest.raises(DeviceUnavailableError, match=r"captioner\.device='cuda:0'"):
        resource.get()  # before any model file is read


def test_explicit_cuda_for_training_fails_before_a_model_is_built(no_cuda, tmp_path):
    samples = [TrainSample(str(tmp_path / f"{i}.png"), [f"text {i}"]) for i in range(4)]
    config = TrainConfig(batch_size=2, device="cuda", precision="bf16")
    with pytest.raises(DeviceUnavailableError, match=r"encoder\.device='cuda'"):
        train_clip(samples, config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _pngs(folder, n):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (40, 30), (20 * i % 255, 90, 160)).save(path)
        paths.append(path)
    return paths


def _counting(monkeypatch, obj, name) -> list[int]:
    """Wrap obj.name so that every call appends its batch's first-dimension size."""
    sizes: list[int] = []
    inner = getattr(obj, name)

    def counted(batch, *args, **kwargs):
        sizes.append(int(batch.shape[0]))
        return inner(batch, *args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return sizes


@pytest.mark.parametrize(("batch_size", "expected"), [(4, [4, 4, 2]), (10, [10])])
def test_encoder_batch_size_sets_the_forward_passes(monkeypatch, tmp_path, batch_size, expected):
    paths = _pngs(tmp_path / "images", 10)
    spec = EncoderSpec(device="cpu", batch_size=batch_size, num_threads=1)
    encoder = Encoder(spec, tmp_path / "models")
    model, _, _ = encoder.model_and_transforms()
    image_calls = _counting(monkeypatch, model, "encode_image")
    vecs = encoder.encode_images(paths)
    assert image_calls == expected and vecs.shape[0] == 10

    text_calls: list[int] = []
    trimmed = encoder_module.encode_text_trimmed

    def counted_texts(model, tokens):
        text_calls.append(int(tokens.shape[0]))
        return trimmed(model, tokens)

    monkeypatch.setattr(encoder_module, "encode_text_trimmed", counted_texts)
    texts = encoder.encode_texts([f"sentence {i}" for i in range(10)])
    assert text_calls == expected
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)


def test_encoder_resource_passes_device_and_batch_settings(tmp_path):
    resource = EncoderResource(
        home=HomeResource(path=str(tmp_path)),
        device="cpu",
        precision="bf16",
        batch_size=7,
        num_workers=2,
    )
    spec = resource.spec()
    assert (spec.device, spec.precision, spec.batch_size, spec.num_workers) == (
        "cpu",
        "bf16",
        7,
        2,
    )


@pytest.mark.parametrize(("batch_size", "steps"), [(4, 4), (8, 2)])
def test_training_batch_size_sets_the_steps(tmp_path, batch_size, steps):
    paths = _pngs(tmp_path / "images", 16)
    samples = [TrainSample(str(p), [f"image number {i}"]) for i, p in enumerate(paths)]
    config = TrainConfig(batch_size=batch_size, epochs=1, num_threads=1, device="cpu")
    result = train_clip(samples, config, tmp_path / f"out{batch_size}")
    assert result.steps == steps and result.batch_sizes == [batch_size] * steps


def _recording_vllm(created: list[dict]):
    """A stand-in `vllm` module whose LLM records the engine keywords it was built with."""
    import types

    class LLM:
        def __init__(self, **kwargs):
            created.append(kwargs)

        def get_tokenizer(self):
            return types.SimpleNamespace(chat_template=None)

    return types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw)


@pytest.mark.parametrize("max_num_seqs", [0, 48])
def test_vllm_batch_setting_reaches_both_engines(monkeypatch, max_num_seqs):
    import sys

    from realsyn_assets.core.generation import vllm_engine
    from realsyn_assets.resources.generator import GeneratorResource

    created: list[dict] = []
    monkeypatch.setitem(sys.modules, "vllm", _recording_vllm(created))
    vllm_engine.drop_engines()
    try:
        options = {"model": "org/model", "max_num_seqs": max_num_seqs}
        GeneratorResource(backend="vllm", gpu_memory_utilization=0.3, **options).get()
        cap = CaptionerResource(backend="vllm", gpu_memory_utilization=0.6, **options).get()
        vllm_engine.vllm_engine(cap.model_path, **cap.engine_options)  # as caption() builds it
    finally:
        vllm_engine.drop_engines()
    assert [c["gpu_memory_utilization"] for c in created] == [0.3, 0.6]
    expected = [max_num_seqs] * 2 if max_num_seqs else [None, None]  # 0: vLLM's own default
    assert [c.get("max_num_seqs") for c in created] == expected
