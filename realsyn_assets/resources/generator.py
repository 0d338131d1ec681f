"""The fusion model as a resource: offline rules (default), an OpenAI-compatible server, or an
in-process vLLM engine."""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from pydantic import Field

from realsyn_assets.core.generation.clients import make_generator, prompt_version_of
from realsyn_assets.core.generation.prompts import FUSION_INSTRUCTION, TextGenerator


class GeneratorResource(dg.ConfigurableResource):
    """Which model fuses an image's realistic text, caption and tags into its synthetic text."""

    backend: Literal["offline", "openai", "vllm"] = Field(
        "offline",
        description='"offline" (deterministic rule-based fusion, CPU), "openai" (any '
        'OpenAI-compatible server such as `vllm serve`), or "vllm" (in-process vLLM engine, '
        "one per process; needs the `gpu` extra).",
    )
    model: str = Field(
        "",
        description="The LLM: the served model name (openai) or a hub id / local directory "
        "(vllm). Unused by offline.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="OpenAI-compatible server, including the API prefix (openai backend).",
    )
    api_key: str = Field("", description="API key of that server; empty = none (openai backend).")
    use_chat: bool = Field(
        True,
        description="Chat completions with the instruction as system turn; false = plain "
        "prompt to /completions for base models (openai backend).",
    )
    concurrency: int = Field(8, description="Requests in flight at once (openai backend).")
    timeout_s: float = Field(
        60.0, description="Timeout of one request in seconds (openai backend)."
    )
    max_retries: int = Field(
        3,
        description="Retries of a failed request (connection error, timeout, 408/409/429, 5xx) "
        "with exponential backoff and jitter; Retry-After is honoured (openai backend).",
    )
    on_error: Literal["fail", "fallback", "drop"] = Field(
        "fail",
        description='An item the model backend cannot generate (after retries): "fail" stops the '
        'run naming the item, "fallback" fuses it offline (counted), "drop" leaves it without '
        "text so the step removes and counts the row.",
    )
    max_tokens: int = Field(96, description="Longest generated text, in model tokens.")
    temperature: float = Field(0.2, description="Sampling temperature.")
    seed: int = Field(0, description="Sampling seed sent with every request / batch.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weight dtype of the vLLM engine (vllm backend)."
    )
    tensor_parallel_size: int = Field(1, description="GPUs one vLLM engine spans (vllm backend).")
    max_model_len: int = Field(
        4096, description="Context length of the vLLM engine, tokens (vllm backend)."
    )
    gpu_memory_utilization: float = Field(
        0.5,
        description="Share of GPU memory the vLLM engine may take (vllm backend). With the "
        "captioner's vLLM engine in the same process (default 0.4) the sum must stay under 1; "
        "raise it when fusion has the GPU to itself.",
    )
    enforce_eager: bool = Field(
        False, description="Run the vLLM engine without CUDA graphs (vllm backend)."
    )
    max_num_seqs: int = Field(
        0,
        description="Sequences the vLLM engine decodes at once, its batch (vllm backend; a "
        "shard is submitted in one call and vLLM schedules it in batches of this size); "
        "0 = vLLM's default.",
    )

    @property
    def prompt_version(self) -> str:
        """The version of the fusion instruction: part of the cache key and the metadata."""
        return prompt_version_of(FUSION_INSTRUCTION)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of the configured backend's generator class."""
        if self.backend == "offline":
            return {}
        if not self.model:
            raise ValueError(f"fusion backend {self.backend!r} needs `model` to be set")
        common = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "on_error": self.on_error,
        }
        if self.backend == "openai":
            return {
                **common,
                "base_url": self.base_url,
                "api_key": self.api_key or None,
                "use_chat": self.use_chat,
                "concurrency": self.concurrency,
                "timeout_s": self.timeout_s,
                "max_retries": self.max_retries,
            }
        return {
            **common,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "engine_options": {
                "enforce_eager": self.enforce_eager,
                "max_num_seqs": self.max_num_seqs or None,  # None: vLLM's default
            },
        }

    def get(self, encoder: Any = None) -> TextGenerator:
        """The configured generator; `encoder` is the home's text tower (offline fusion and the
        model backends' fallback use it)."""
        return make_generator(self.backend, encoder=encoder, **self.options())
