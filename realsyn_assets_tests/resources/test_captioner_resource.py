"""CaptionerResource.get(): each backend gets the right class with the resource's config."""

from __future__ import annotations

import sys

import pytest

from realsyn_assets.core.generation import offline_captioner, vllm_engine
from realsyn_assets.core.generation.captioning_backends import (
    OpenAICaptioner,
    TransformersCaptioner,
    VLLMCaptioner,
)
from realsyn_assets.definitions import defs
from realsyn_assets.resources import CaptionerResource
from realsyn_assets_tests.core.generation.test_captioners_transformers import _build_blip
from realsyn_assets_tests.core.generation.test_captioners_vllm import _fake_vllm


def test_registered_with_offline_default():
    assert isinstance(defs.resources["captioner"], CaptionerResource)
    assert CaptionerResource().backend == "offline"


def test_offline_loads_the_trained_captioner(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(offline_captioner, "load_offline_captioner", seen.append)
    CaptionerResource().get(offline_path=tmp_path / "captioner")
    assert seen == [tmp_path / "captioner"]
    with pytest.raises(ValueError, match="offline_path"):
        CaptionerResource().get()


def test_openai_config_passes_through():
    res = CaptionerResource(
        backend="openai",
        model="served-vlm",
        base_url="http://10.0.0.5:9000/v1",
        api_key="secret",
        concurrency=5,
        timeout_s=12.5,
        max_retries=7,
        max_tokens=33,
        max_image_side=512,
        on_error="none",
    )
    cap = res.get()
    assert isinstance(cap, OpenAICaptioner) and cap.backend == "openai"
    assert (cap.model, cap.concurrency, cap.max_tokens, cap.max_image_side, cap.on_error) == (
        "served-vlm",
        5,
        33,
        512,
        "none",
    )
    client = cap._client
    assert str(client.base_url).rstrip("/") == "http://10.0.0.5:9000/v1"
    assert (client.api_key, client.timeout, client.max_retries) == ("secret", 12.5, 7)


def test_vllm_config_passes_through(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm())
    vllm_engine.drop_engines()
    res = CaptionerResource(
        backend="vllm",
        model="llava-hf/llava-1.5-7b-hf",
        dtype="float16",
        tensor_parallel_size=4,
        max_model_len=1024,
        gpu_memory_utilization=0.6,
        max_image_side=336,
    )
    cap = res.get()
    assert isinstance(cap, VLLMCaptioner) and cap.max_image_side == 336
    assert cap.engine_options == {
        "dtype": "float16",
        "tensor_parallel_size": 4,
        "max_model_len": 1024,
        "gpu_memory_utilization": 0.6,
        "limit_mm_per_prompt": {"image": 1},
    }


def test_transformers_config_passes_through(tmp_path):
    model_dir = _build_blip(tmp_path / "blip")
    res = CaptionerResource(
        backend="transformers", model=str(model_dir), device="cpu", batch_size=3, max_tokens=9
    )
    cap = res.get()
    assert isinstance(cap, TransformersCaptioner)
    assert (cap.device, cap.batch_size, cap.max_tokens) == ("cpu", 3, 9)


def test_backend_without_model_is_a_clear_error():
    with pytest.raises(ValueError, match="needs `model`"):
        CaptionerResource(backend="openai").get()


def test_unknown_backend_is_rejected():
    with pytest.raises(Exception, match="backend"):
        CaptionerResource(backend="ofa")
