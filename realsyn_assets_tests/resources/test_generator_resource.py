"""GeneratorResource: each backend built with its options, the policy and prompt version
exposed, a model required for the model backends."""

from __future__ import annotations

import sys
import types

import pytest

from realsyn_assets.core.generation import vllm_engine
from realsyn_assets.core.generation.clients_openai import OpenAIFusionGenerator
from realsyn_assets.core.generation.clients_vllm import VLLMFusionGenerator
from realsyn_assets.core.generation.prompts import FUSION_PROMPT_VERSION
from realsyn_assets.resources import GeneratorResource


def test_offline_by_default_with_the_encoder():
    resource = GeneratorResource()
    encoder = object()
    gen = resource.get(encoder=encoder)
    assert gen.name == "offline" and gen.model.startswith("grounded-rewrite@")
    assert gen.encoder is encoder
    assert resource.prompt_version == FUSION_PROMPT_VERSION


def test_openai_options_reach_the_client():
    gen = GeneratorResource(
        backend="openai",
        model="llama-3-8b",
        base_url="http://gpu:8000/v1",
        api_key="sk-x",
        concurrency=5,
        timeout_s=7.5,
        max_retries=2,
        on_error="drop",
        use_chat=False,
        seed=3,
    ).get()
    assert isinstance(gen, OpenAIFusionGenerator)
    assert (gen.name, gen.model, gen.base_url) == ("openai", "llama-3-8b", "http://gpu:8000/v1")
    assert gen.concurrency == 5 and gen.on_error == "drop" and not gen.use_chat and gen.seed == 3
    assert gen._client.max_retries == 2 and gen._client.timeout == 7.5
    assert gen.prompt_version == FUSION_PROMPT_VERSION


def test_vllm_engine_options(monkeypatch):
    created = []
    fake = types.ModuleType("vllm")
    fake.SamplingParams = lambda **kw: kw
    fake.LLM = type(
        "LLM",
        (),
        {
            "__init__": lambda self, **kw: created.append(kw),
            "get_tokenizer": lambda self: types.SimpleNamespace(chat_template="t"),
        },
    )
    monkeypatch.setitem(sys.modules, "vllm", fake)
    vllm_engine.drop_engines()
    try:
        resource = GeneratorResource(
            backend="vllm", model="org/llm", dtype="bfloat16", tensor_parallel_size=2,
            max_model_len=8192, gpu_memory_utilization=0.4, on_error="fallback",
        )  # fmt: skip
        gen = resource.get()
        assert isinstance(gen, VLLMFusionGenerator) and gen.on_error == "fallback"
        assert created == [
            {
                "model": "org/llm",
                "dtype": "bfloat16",
                "tensor_parallel_size": 2,
                "max_model_len": 8192,
                "gpu_memory_utilization": 0.4,
                "enforce_eager": False,
            }
        ]
        assert resource.get().engine is gen.engine and len(created) == 1  # one engine
    finally:
        vllm_engine.drop_engines()


@pytest.mark.parametrize("backend", ["openai", "vllm"])
def test_model_backends_need_a_model(backend):
    with pytest.raises(ValueError, match="needs `model`"):
        GeneratorResource(backend=backend).get()
