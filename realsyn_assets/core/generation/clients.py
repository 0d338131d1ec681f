"""Language-model backends of the fusion step: what they share, and `make_generator`.

- `clients_openai.OpenAIFusionGenerator`: any OpenAI-compatible server (`vllm serve`, TGI,
  llama.cpp, hosted APIs) through the `openai` client, requests on a bounded thread pool;
- `clients_vllm.VLLMFusionGenerator`: in-process `vllm.LLM`, one engine per process, the whole
  batch in one `chat` call (optional extra `gpu`);
- `offline.GroundedRewriteFusion`: the deterministic rule-based fusion on CPU.

A model backend can fail for single items (a request that still fails after the client's
retries, an output the engine did not produce). `on_error` says what happens to such an item:
"fail" raises `GenerationError` naming it, "fallback" fuses it offline (counted in
`fallback_count`), "drop" returns None in its place (the caller removes and counts the row).
What the model *said* is not judged here: `validation.validate_text` does that.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from realsyn_assets.core.generation.cleaning import clean_generation
from realsyn_assets.core.generation.prompts import (
    FUSION_INSTRUCTION,
    FUSION_PROMPT_VERSION,
    FusionInput,
    TextGenerator,
)

log = logging.getLogger(__name__)

OnError = Literal["fail", "fallback", "drop"]
ON_ERROR: tuple[str, ...] = ("fail", "fallback", "drop")
BACKENDS: tuple[str, ...] = ("offline", "openai", "vllm")


class GenerationError(RuntimeError):
    """A model backend could not generate the text of an item (after its retries)."""

    def __init__(self, index: int, item: FusionInput | None, cause: BaseException | str):
        what = f"item {index}"
        if item is not None:
            what += f" (web text {item.realistic_text[:60]!r})"
        super().__init__(f"generation failed for {what}: {cause}")
        self.index = index


def offline_fusion(encoder: Any = None, **options: Any) -> TextGenerator:
    """The offline fusion, given the encoder when there is one. Imported on use, so that the
    model backends also run where only vLLM is installed (no pyarrow)."""
    from realsyn_assets.core.generation.offline import (  # noqa: PLC0415 - pulls in pyarrow
        GroundedRewriteFusion,
    )

    if encoder is not None:
        options["encoder"] = encoder
    return GroundedRewriteFusion(**options)


def prompt_version_of(instruction: str, version: str = FUSION_PROMPT_VERSION) -> str:
    """`version` for the project's instruction; a content hash for any other wording."""
    if instruction == FUSION_INSTRUCTION:
        return version
    return "custom-" + hashlib.sha256(instruction.encode("utf-8")).hexdigest()[:12]


class FusionBackend:
    """The per-item failure policy and the bookkeeping shared by the model backends.

    After each `generate` call `last_errors` maps item index -> the failure, and
    `last_fallback_indices` / `last_dropped_indices` say which policy was applied to whom;
    `fallback_count` and `dropped_count` add up over the object's life.
    """

    name = "model"
    model = ""

    def _init_policy(
        self,
        on_error: str,
        encoder: Any,
        max_words: int,
        instruction: str,
        prompt_version: str,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error: OnError = on_error  # type: ignore[assignment]
        self.encoder = encoder
        self.max_words = max_words
        self.instruction = instruction
        self.prompt_version = prompt_version_of(instruction, prompt_version)
        self.fallback_count = 0
        self.dropped_count = 0
        self.last_errors: dict[int, BaseException] = {}
        self.last_fallback_indices: list[int] = []
        self.last_dropped_indices: list[int] = []
        self._fallback: TextGenerator | None = None

    def _clean(self, raw: str | None) -> str:
        return clean_generation(raw or "", self.max_words)

    def _settle(
        self,
        items: Sequence[FusionInput],
        done: dict[int, str],
        errors: dict[int, BaseException],
        image_vecs: np.ndarray | None = None,
    ) -> list[str | None]:
        """The results in input order, with the `on_error` policy applied to failed items."""
        self.last_errors = dict(sorted(errors.items()))
        self.last_fallback_indices, self.last_dropped_indices = [], []
        if errors and self.on_error == "fail":
            first = min(errors)
            raise GenerationError(first, items[first], errors[first]) from errors[first]
        out: list[str | None] = [done.get(i) for i in range(len(items))]
        failed = sorted(errors)
        for i in failed:
            log.warning("%s fusion, item %d: %s (%s)", self.name, i, errors[i], self.on_error)
        if failed and self.on_error == "fallback":
            if self._fallback is None:
                self._fallback = offline_fusion(self.encoder, max_words=self.max_words)
            vecs = None if image_vecs is None else np.asarray(image_vecs)[failed]
            fused = self._fallback.generate([items[i] for i in failed], vecs)  # type: ignore[call-arg]
            for i, text in zip(failed, fused, strict=True):
                out[i] = text
            self.last_fallback_indices = failed
            self.fallback_count += len(failed)
        elif failed:
            self.last_dropped_indices = failed
            self.dropped_count += len(failed)
        return out


def make_generator(backend: str, *, encoder: Any = None, **options: Any) -> TextGenerator:
    """A fusion generator by backend name ("offline" | "openai" | "vllm"); `options` go to its
    class. `encoder` is the offline fusion's text tower (also the model backends' fallback)."""
    key = backend.strip().lower()
    if key == "offline":
        return offline_fusion(encoder, **options)
    if key == "openai":
        from realsyn_assets.core.generation.clients_openai import (  # noqa: PLC0415
            OpenAIFusionGenerator,
        )

        return OpenAIFusionGenerator(encoder=encoder, **options)
    if key == "vllm":
        from realsyn_assets.core.generation.clients_vllm import (  # noqa: PLC0415
            VLLMFusionGenerator,
        )

        return VLLMFusionGenerator(encoder=encoder, **options)
    raise ValueError(f"unknown generator backend {backend!r}; use one of {BACKENDS}")


__all__ = [
    "BACKENDS",
    "FUSION_PROMPT_VERSION",
    "ON_ERROR",
    "FusionBackend",
    "GenerationError",
    "OnError",
    "make_generator",
    "offline_fusion",
    "prompt_version_of",
]
