"""The image captioner as a resource: offline (trained from the corpus), an OpenAI-compatible
vision server, in-process vLLM, or a local transformers image-to-text model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from realsyn_assets.core.generation.captioners import Captioner, make_captioner


class CaptionerResource(dg.ConfigurableResource):
    """Which model writes the one-sentence caption of each image, and how to reach it."""

    backend: Literal["offline", "openai", "vllm", "transformers"] = Field(
        "offline",
        description='"offline" (small captioner trained from the corpus, CPU), "openai" (any '
        'OpenAI-compatible server with vision chat, e.g. `vllm serve` of a VLM), "vllm" '
        '(a vision-language model in-process; needs the `gpu` extra), or "transformers" (a '
        "local image-to-text model directory such as BLIP or GIT).",
    )
    model: str = Field(
        "",
        description="Model for the openai / vllm backends (served name, hub id or local dir); "
        "for transformers, the local model directory.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="OpenAI-compatible server, including the API prefix (openai backend).",
    )
    api_key: str = Field("", description="API key of that server; empty = none (openai backend).")
    concurrency: int = Field(8, description="Requests in flight at once (openai backend).")
    timeout_s: float = Field(
        60.0, description="Timeout of one request in seconds (openai backend)."
    )
    max_retries: int = Field(
        3,
        description="Retries of a failed request (5xx, 429, timeout), with backoff and jitter; "
        "Retry-After is honoured (openai backend).",
    )
    max_tokens: int = Field(48, description="Longest generated caption, in tokens.")
    on_error: Literal["raise", "none"] = Field(
        "none",
        description='"none" (default): an image that cannot be captioned gets no caption, which '
        "synthetic_texts counts as an invalid caption (kind `empty`) and fuses without; "
        '"raise": it fails the shard with the image path and cause.',
    )
    batch_size: int = Field(16, description="Images per forward pass (transformers backend).")
    device: str = Field(
        "auto",
        description='Torch device for the transformers backend: "auto" (CUDA if present), '
        '"cpu", "cuda", "cuda:1", ...',
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weight dtype (vllm and transformers backends)."
    )
    tensor_parallel_size: int = Field(1, description="GPUs one vLLM engine spans (vllm backend).")
    max_model_len: int = Field(
        4096, description="Context length of the vLLM engine, tokens (vllm backend)."
    )
    gpu_memory_utilization: float = Field(
        0.4,
        description="Share of GPU memory the vLLM engine may take (vllm backend). The default "
        "leaves room for a vLLM fusion engine in the same process (keep the two under 1 in "
        "total); raise it when the captioner has the GPU to itself.",
    )
    max_num_seqs: int = Field(
        0,
        description="Sequences the vLLM engine decodes at once, its batch (vllm backend); "
        "0 = vLLM's default.",
    )
    max_image_side: int = Field(
        768,
        description="Images are re-encoded as JPEG with their longer side at most this many "
        "pixels before they are sent (openai and vllm backends).",
    )

    def get(self, offline_path: Path | None = None) -> Captioner:
        """The configured captioner; `offline_path` is the trained offline captioner's folder."""
        if self.backend == "offline":
            if offline_path is None:
                raise ValueError(
                    "the offline captioner needs its trained model folder (offline_path)"
                )
            return make_captioner("offline", path=Path(offline_path))
        if not self.model:
            raise ValueError(f"captioner backend {self.backend!r} needs `model` to be set")
        common = {"model": self.model, "max_tokens": self.max_tokens}
        if self.backend == "openai":
            return make_captioner(
                "openai",
                **common,
                base_url=self.base_url,
                api_key=self.api_key or None,
                concurrency=self.concurrency,
                timeout_s=self.timeout_s,
                max_retries=self.max_retries,
                max_image_side=self.max_image_side,
                on_error=self.on_error,
            )
        if self.backend == "vllm":
            return make_captioner(
                "vllm",
                **common,
                dtype=self.dtype,
                tensor_parallel_size=self.tensor_parallel_size,
                max_model_len=self.max_model_len,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_image_side=self.max_image_side,
                **({"max_num_seqs": self.max_num_seqs} if self.max_num_seqs else {}),
            )
        if self.backend == "transformers":
            return make_captioner(
                "transformers",
                **common,
                device=self.device,
                dtype=self.dtype,
                batch_size=self.batch_size,
            )
        raise ValueError(
            f"unknown captioner backend {self.backend!r} (offline | openai | vllm | transformers)"
        )
