"""The synthetic-text generator as a resource: offline (default), OpenAI-compatible server, vLLM."""

import dagster as dg


class GeneratorResource(dg.ConfigurableResource):
    """backend: "offline" (deterministic, CPU), "openai" (any OpenAI-compatible server such as
    `vllm serve`), or "vllm" (offline batch on GPU; needs the `gpu` extra)."""

    backend: str = "offline"
    model: str = ""
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str = ""
    max_tokens: int = 96
    temperature: float = 0.2
    concurrency: int = 8
    timeout_s: float = 60.0

    def get(self):
        from realsyn_assets.core.generation.fusion import make_generator

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
