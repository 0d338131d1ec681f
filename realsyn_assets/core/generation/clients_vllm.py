"""Fusion with an in-process `vllm.LLM` (the paper's setup: an instruction-tuned LLM on vLLM).

The engine comes from `vllm_engine`, which keeps one per process and set of engine options:
every shard and materialization in a process reuses it instead of loading the weights again.
A batch is one `LLM.chat` call over all its conversations (or one `LLM.generate` over plain
prompts for a model without a chat template), so vLLM schedules the whole shard at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from realsyn_assets.core.generation.captioners import model_identity
from realsyn_assets.core.generation.clients import FusionBackend, OnError
from realsyn_assets.core.generation.prompts import (
    FUSION_INSTRUCTION,
    FUSION_PROMPT_VERSION,
    FusionInput,
    build_chat_messages,
    build_fusion_prompt,
)
from realsyn_assets.core.generation.vllm_engine import import_vllm, vllm_engine


class VLLMFusionGenerator(FusionBackend):
    """Fuses a batch in one call to a process-wide `vllm.LLM`; order preserved.

    Engine options: `dtype` ("auto", "bfloat16", ...), `tensor_parallel_size`,
    `max_model_len`, `gpu_memory_utilization`, plus any other `vllm.LLM` keyword in
    `engine_options` (e.g. `enforce_eager`). None leaves an option to vLLM's default.
    `use_chat=None` uses the chat template when the tokenizer has one.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str | None = None,
        tensor_parallel_size: int | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        engine_options: dict[str, Any] | None = None,
        max_tokens: int = 96,
        temperature: float = 0.2,
        seed: int | None = 0,
        use_chat: bool | None = None,
        on_error: OnError = "fail",
        encoder: Any = None,
        max_words: int = 77,
        instruction: str = FUSION_INSTRUCTION,
        prompt_version: str = FUSION_PROMPT_VERSION,
    ):
        if not model:
            raise ValueError("the vllm fusion backend needs a model (hub name or local directory)")
        self._init_policy(on_error, encoder, max_words, instruction, prompt_version)
        vllm = import_vllm()
        self.model = model_identity(model)
        self.engine_options = {
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            **(engine_options or {}),
        }
        self._llm = vllm_engine(model, **self.engine_options)
        self._params = vllm.SamplingParams(
            max_tokens=int(max_tokens), temperature=float(temperature), seed=seed
        )
        self.use_chat = self._has_chat_template() if use_chat is None else use_chat
        self.batches = 0  # engine calls, over the object's life

    @property
    def engine(self) -> Any:
        """The shared `vllm.LLM` this generator runs on."""
        return self._llm

    def _has_chat_template(self) -> bool:
        try:
            tokenizer = self._llm.get_tokenizer()
        except Exception:  # noqa: BLE001 - any failure means "no template to rely on"
            return False
        return bool(getattr(tokenizer, "chat_template", None))

    def _run(self, items: list[FusionInput]) -> list[Any]:
        self.batches += 1
        if self.use_chat:
            convs = [build_chat_messages(it, instruction=self.instruction) for it in items]
            return self._llm.chat(convs, sampling_params=self._params, use_tqdm=False)
        prompts = [build_fusion_prompt(it, instruction=self.instruction) for it in items]
        return self._llm.generate(prompts, sampling_params=self._params, use_tqdm=False)

    def generate(
        self, items: Sequence[FusionInput], image_vecs: np.ndarray | None = None
    ) -> list[str | None]:
        """One text per item, in input order (None for a dropped item)."""
        items = list(items)
        if not items:
            return []
        done: dict[int, str] = {}
        errors: dict[int, BaseException] = {}
        try:
            outputs = list(self._run(items))
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every item did
            errors = dict.fromkeys(range(len(items)), exc)
            return self._settle(items, done, errors, image_vecs)
        if len(outputs) != len(items):
            cause = RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(items)} prompts")
            return self._settle(items, done, dict.fromkeys(range(len(items)), cause), image_vecs)
        for i, out in enumerate(outputs):
            if getattr(out, "outputs", None):
                done[i] = self._clean(out.outputs[0].text)
            else:
                errors[i] = RuntimeError("vLLM returned no completion for this prompt")
        return self._settle(items, done, errors, image_vecs)
