"""The synthetic-text generator as a resource: offline (default), OpenAI-compatible server, vLLM."""

from typing import Literal

import dagster as dg
from pydantic import Field


class GeneratorResource(dg.ConfigurableResource):
    """The LLM that fuses an image's retrieved texts and tags into one synthetic caption."""

    backend: Literal["offline", "openai", "vllm"] = Field(
        "offline",
        description='"offline" (deterministic, CPU), "openai" (any OpenAI-compatible server such '
        'as `vllm serve`), or "vllm" (offline batch on GPU; needs the `gpu` extra).',
    )
    model: str = Field("", description="Model name for the openai and vllm backends.")
    base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="OpenAI-compatible server (openai backend)."
    )
    api_key: str = Field("", description="API key of that server; empty = none.")
    max_tokens: int = Field(96, description="Longest generated caption, in tokens.")
    temperature: float = Field(0.2, description="Sampling temperature.")
    concurrency: int = Field(8, description="Requests in flight at once (openai backend).")
    timeout_s: float = Field(60.0, description="Timeout of one request, seconds (openai backend).")

    def get(self):
        from realsyn_assets.core.generation.clients import make_generator

        if self.backend == "offline":
            return make_generator("offline")
        if self.backend == "openai":
            return make_generator(
                "openai",
                base_url=self.base_url,
                model=self.model,
                api_key=self.api_key or None,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                timeout_s=self.timeout_s,
                concurrency=self.concurrency,
            )
        if self.backend == "vllm":
            return make_generator(
                "vllm", model=self.model, max_tokens=self.max_tokens, temperature=self.temperature
            )
        raise ValueError(f"unknown generator backend {self.backend!r} (offline | openai | vllm)")
