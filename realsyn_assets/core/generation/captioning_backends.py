"""Captioner backends that call a model outside this project: an OpenAI-compatible vision-chat
server, an in-process vLLM vision-language model, or a local transformers image-to-text model.

All three return one cleaned caption per input, in input order. An image that cannot be
captioned (unreadable file, request failed after retries) raises `CaptionError` naming the image
and cause with `on_error="raise"`; with `on_error="none"` its caption is None and the exception
is kept in `last_errors` (index -> CaptionError) for the caller's policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from realsyn_assets.core.generation.captioners import (
    CAPTION_INSTRUCTION,
    CAPTION_MAX_WORDS,
    CaptionError,
    CaptionInput,
    caption_messages,
    clean_caption,
    jpeg_data_uri,
    load_rgb,
    model_identity,
)
from realsyn_assets.core.generation.vllm_engine import engine_options, import_vllm, vllm_engine

# The config setting a device error names (the `captioner` resource, transformers backend).
CAPTIONER_DEVICE_FIELD = "captioner.device"

log = logging.getLogger(__name__)

OnError = Literal["raise", "none"]


class _PerItem:
    """Per-item failure bookkeeping shared by the backends."""

    on_error: OnError
    last_errors: dict[int, CaptionError]

    def _init_errors(self, on_error: str) -> None:
        if on_error not in ("raise", "none"):
            raise ValueError(f"on_error must be 'raise' or 'none', got {on_error!r}")
        self.on_error = on_error  # type: ignore[assignment]
        self.last_errors = {}

    def _prepare(self, items: Sequence[CaptionInput], load: Callable[[Any], Any]) -> dict[int, Any]:
        """`load(item.image_path)` for each item; failures go to `last_errors` (or raise)."""
        self.last_errors = {}
        ready: dict[int, Any] = {}
        for i, item in enumerate(items):
            try:
                ready[i] = load(item.image_path)
            except CaptionError as exc:
                self._fail(i, exc)
        return ready

    def _fail(self, index: int, error: CaptionError) -> None:
        if self.on_error == "raise":
            raise error
        log.warning("caption %d: %s", index, error)
        self.last_errors[index] = error

    def _assemble(self, n: int, done: dict[int, str]) -> list[str | None]:
        return [done.get(i) for i in range(n)]


class OpenAICaptioner(_PerItem):
    """Captions through any OpenAI-compatible server with vision chat (`vllm serve` of a VLM,
    TGI, llama.cpp, hosted APIs), one chat request per image with the image as a JPEG data URI.

    Requests run on `concurrency` threads; the `openai` client retries 5xx / 429 / timeouts
    `max_retries` times with exponential backoff and jitter and honours Retry-After.
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        *,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        max_tokens: int = 48,
        temperature: float = 0.0,
        max_image_side: int = 768,
        on_error: OnError = "raise",
        instruction: str = CAPTION_INSTRUCTION,
        max_words: int = CAPTION_MAX_WORDS,
    ):
        import openai  # noqa: PLC0415 - only this backend needs the client

        self._init_errors(on_error)
        self.model = model
        self.base_url = base_url
        self.concurrency = max(1, int(concurrency))
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_image_side = max_image_side
        self.instruction = instruction
        self.max_words = max_words
        # Servers started without --api-key accept any bearer token; the client insists on one.
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "EMPTY",
            timeout=timeout_s,
            max_retries=max(0, int(max_retries)),
        )

    def _one(self, item: CaptionInput) -> str:
        url = jpeg_data_uri(item.image_path, self.max_image_side)
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=caption_messages(url, self.instruction),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                n=1,
            )
            content = response.choices[0].message.content if response.choices else ""
        except Exception as exc:  # noqa: BLE001 - any client error is this item's failure
            raise CaptionError(item.image_path, exc) from exc
        return clean_caption(content, self.max_words)

    def caption(self, items: Sequence[CaptionInput]) -> list[str | None]:
        items = list(items)
        self.last_errors = {}
        done: dict[int, str] = {}
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures = [pool.submit(self._one, item) for item in items]
            try:
                for i, future in enumerate(futures):
                    try:
                        done[i] = future.result()
                    except CaptionError as exc:
                        self._fail(i, exc)
            except CaptionError:
                for future in futures:
                    future.cancel()
                raise
        return self._assemble(len(items), done)


class VLLMCaptioner(_PerItem):
    """A vision-language model (Qwen2-VL, LLaVA, InternVL, ...) in-process through
    `vllm.LLM.chat`: the whole batch in one call, images as JPEG data URIs in chat messages.

    The engine is built on first use and shared process-wide per engine options
    (`vllm_engine`), so shards and materializations in one process reuse it.
    """

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        max_tokens: int = 48,
        temperature: float = 0.0,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        max_model_len: int | None = 4096,
        gpu_memory_utilization: float = 0.85,
        limit_mm_per_prompt: dict[str, int] | None = None,
        max_image_side: int = 768,
        on_error: OnError = "raise",
        instruction: str = CAPTION_INSTRUCTION,
        max_words: int = CAPTION_MAX_WORDS,
        **extra_engine_options: Any,
    ):
        self._vllm = import_vllm()
        self._init_errors(on_error)
        self.model_path = model
        self.model = model_identity(model)
        self.engine_options = engine_options(
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            limit_mm_per_prompt=limit_mm_per_prompt or {"image": 1},
            **extra_engine_options,
        )
        self.sampling = self._vllm.SamplingParams(max_tokens=max_tokens, temperature=temperature)
        self.max_image_side = max_image_side
        self.instruction = instruction
        self.max_words = max_words

    def messages(self, items: Sequence[CaptionInput]) -> dict[int, list[dict]]:
        """The chat conversation of each readable item, by index (unreadable ones fail)."""
        ready = self._prepare(items, lambda p: jpeg_data_uri(p, self.max_image_side))
        return {i: caption_messages(url, self.instruction) for i, url in ready.items()}

    def caption(self, items: Sequence[CaptionInput]) -> list[str | None]:
        items = list(items)
        convs = self.messages(items)
        if not convs:
            return self._assemble(len(items), {})
        llm = vllm_engine(self.model_path, **self.engine_options)
        order = sorted(convs)
        outputs = llm.chat([convs[i] for i in order], sampling_params=self.sampling, use_tqdm=False)
        done = {
            i: clean_caption(out.outputs[0].text if out.outputs else "", self.max_words)
            for i, out in zip(order, outputs, strict=True)
        }
        return self._assemble(len(items), done)


def _drop_prefix(text: str, prefix: str) -> str:
    head = text.lstrip()
    if head.lower().startswith(prefix.strip().lower()):
        return head[len(prefix.strip()) :]
    return text


class TransformersCaptioner(_PerItem):
    """A local image-to-text model directory (BLIP, GIT, VisionEncoderDecoder, Florence-2 class)
    loaded with `AutoModelForImageTextToText`, batched greedy `generate` on `device`.

    Without `prompt` the image processor and tokenizer are loaded separately (works for every
    class above, including VisionEncoderDecoder folders with no processor config); with a
    `prompt` (e.g. Florence-2's "<CAPTION>") the model's `AutoProcessor` builds the inputs.
    """

    backend = "transformers"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        max_tokens: int = 48,
        prompt: str | None = None,
        on_error: OnError = "raise",
        max_words: int = CAPTION_MAX_WORDS,
    ):
        import torch  # noqa: PLC0415 - heavy, only this backend needs it
        import transformers  # noqa: PLC0415

        self._init_errors(on_error)
        self.model_path = model
        self.model = model_identity(model)
        # imported here: the vLLM backends of this module run in a vllm venv without pyarrow
        from realsyn_assets.core.embedding.runtime import resolve_device  # noqa: PLC0415

        self.device = resolve_device(device, CAPTIONER_DEVICE_FIELD)
        self.batch_size = max(1, int(batch_size))
        self.max_tokens = max_tokens
        self.prompt = prompt
        self.max_words = max_words
        auto = getattr(transformers, "AutoModelForImageTextToText", None)
        if auto is None:  # transformers < 4.46
            auto = transformers.AutoModelForVision2Seq
        kwargs: dict[str, Any] = {}
        if dtype != "auto":
            key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
            kwargs[key] = getattr(torch, dtype)
        self._torch = torch
        self._net = auto.from_pretrained(model, **kwargs).to(self.device).eval()
        if prompt is None:
            self._images = transformers.AutoImageProcessor.from_pretrained(model)
            self._decoder = transformers.AutoTokenizer.from_pretrained(model)
        else:
            self._images = transformers.AutoProcessor.from_pretrained(model)
            self._decoder = self._images

    def _inputs(self, images: list) -> dict[str, Any]:
        if self.prompt is None:
            batch = self._images(images=images, return_tensors="pt")
            inputs = {"pixel_values": batch["pixel_values"]}
        else:
            batch = self._images(
                text=[self.prompt] * len(images), images=images, return_tensors="pt"
            )
            inputs = dict(batch)
        dtype = self._net.dtype
        return {
            k: v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items()
        }

    def _generate(self, images: list) -> list[str]:
        inputs = self._inputs(images)
        with self._torch.inference_mode():
            ids = self._net.generate(
                **inputs, max_new_tokens=self.max_tokens, do_sample=False, num_beams=1
            )
        texts = self._decoder.batch_decode(ids, skip_special_tokens=True)
        if self.prompt:  # decoder-only models (GIT, BLIP) echo a text prompt before the caption
            texts = [_drop_prefix(t, self.prompt) for t in texts]
        return [clean_caption(t, self.max_words) for t in texts]

    def caption(self, items: Sequence[CaptionInput]) -> list[str | None]:
        items = list(items)
        ready = self._prepare(items, load_rgb)
        order = sorted(ready)
        done: dict[int, str] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            texts = self._generate([ready[i] for i in chunk])
            done.update(zip(chunk, texts, strict=True))
        return self._assemble(len(items), done)
