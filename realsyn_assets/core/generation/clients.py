"""Language-model backends of the fusion step, apart from the prompt logic they share.

- `OpenAICompatibleGenerator`: any OpenAI-compatible HTTP server (e.g. `vllm serve`), stdlib only;
- `VLLMGenerator`: offline batch inference with `vllm.LLM` on a GPU (optional extra `gpu`);
- `make_generator`: one of these or the `offline` rule-based fusion, by name.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from realsyn_assets.core.generation.cleaning import clean_generation
from realsyn_assets.core.generation.offline import OfflineFusionGenerator
from realsyn_assets.core.generation.prompts import (
    FUSION_INSTRUCTION,
    FusionInput,
    TextGenerator,
    build_chat_messages,
    build_fusion_prompt,
)

log = logging.getLogger(__name__)


class GenerationError(RuntimeError):
    """A generation backend failed for an item (after retries)."""

    def __init__(self, index: int, message: str):
        super().__init__(f"generation failed for item {index}: {message}")
        self.index = index


class _RetryableError(Exception):
    pass


class OpenAICompatibleGenerator:
    """Calls any OpenAI-compatible server (`vllm serve`, TGI, llama.cpp, hosted APIs).

    Stdlib only (urllib + threads) so it adds no dependency. `base_url` includes the API prefix,
    e.g. "http://gpu-node:8000/v1". Order is preserved; 5xx / 429 / timeouts / malformed or
    empty answers are retried with exponential backoff; other 4xx fail at once.
    `on_error="raise"` raises `GenerationError` naming the first failed item index;
    `on_error="fallback"` uses `OfflineFusionGenerator` for that item and counts it in
    `fallback_count` (cumulative over this object's life; `last_fallback_indices` holds the
    indices of the latest `generate` call).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_tokens: int = 96,
        temperature: float = 0.2,
        timeout_s: float = 60,
        concurrency: int = 8,
        retries: int = 3,
        use_chat: bool = True,
        *,
        on_error: str = "raise",
        backoff_s: float = 0.5,
        max_words: int = 77,
        instruction: str = FUSION_INSTRUCTION,
    ):
        if on_error not in ("raise", "fallback"):
            raise ValueError(f"on_error must be 'raise' or 'fallback', got {on_error!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.concurrency = max(1, int(concurrency))
        self.retries = max(0, int(retries))
        self.use_chat = use_chat
        self.on_error = on_error
        self.backoff_s = backoff_s
        self.max_words = max_words
        self.instruction = instruction
        self.name = f"openai:{model}"
        self.fallback_count = 0
        self.last_fallback_indices: list[int] = []
        self._fallback = OfflineFusionGenerator(max_words=max_words)
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener()

    # -- one request -------------------------------------------------------------------------
    def _payload(self, item: FusionInput) -> tuple[str, dict[str, Any]]:
        common = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "n": 1,
        }
        if self.use_chat:
            return "/chat/completions", {
                **common,
                "messages": build_chat_messages(item, instruction=self.instruction),
            }
        return "/completions", {
            **common,
            "prompt": build_fusion_prompt(item, instruction=self.instruction),
            "stop": ["\n\n"],
        }

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(payload).encode("utf-8"),
            headers=headers,
            method="POST",
        )
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace") if exc.fp else ""
            msg = f"HTTP {exc.code} from {self.base_url + path}: {detail}".strip()
            if exc.code >= 500 or exc.code in (408, 409, 429):
                raise _RetryableError(msg) from exc
            raise RuntimeError(msg) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise _RetryableError(f"response is not JSON: {body[:120]!r}") from exc

    def _extract(self, data: dict[str, Any]) -> str:
        try:
            choice = data["choices"][0]
            raw = choice["message"]["content"] if self.use_chat else choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise _RetryableError(f"unexpected response shape: {str(data)[:160]}") from exc
        text = clean_generation(raw or "", self.max_words)
        if not text:
            raise _RetryableError(f"empty generation (raw: {str(raw)[:80]!r})")
        return text

    def _one(self, item: FusionInput) -> str:
        path, payload = self._payload(item)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * (2 ** (attempt - 1)))
            try:
                return self._extract(self._post(path, payload))
            except _RetryableError as exc:
                last = exc
        raise RuntimeError(f"{last} (after {self.retries + 1} attempts)")

    # -- batch -------------------------------------------------------------------------------
    def generate(self, items: Sequence[FusionInput]) -> list[str]:
        items = list(items)
        results: list[str | None] = [None] * len(items)
        failures: dict[int, Exception] = {}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(items)))) as pool:
            futures = {pool.submit(self._one, item): i for i, item in enumerate(items)}
            for future, i in futures.items():
                try:
                    results[i] = future.result()
                except Exception as exc:  # noqa: BLE001 - reported per item below
                    failures[i] = exc
                    if self.on_error == "raise":
                        for other in futures:
                            other.cancel()
                        break
        if failures and self.on_error == "raise":
            first = min(failures)
            raise GenerationError(first, str(failures[first])) from failures[first]
        fallback_idx = sorted(failures)
        for i in fallback_idx:
            log.warning("item %d: falling back to offline fusion (%s)", i, failures[i])
            results[i] = self._fallback.fuse(items[i])
        with self._lock:
            self.fallback_count += len(fallback_idx)
            self.last_fallback_indices = fallback_idx
        return [r if r is not None else "" for r in results]


_VLLM_HINT = (
    "VLLMGenerator needs the optional 'vllm' package (GPU). Install it with "
    "`pip install realsyn_assets[gpu]`, or use the 'openai' backend against a running "
    "`vllm serve`, or the 'offline' backend on CPU."
)


class VLLMGenerator:
    """Batch inference with `vllm.LLM` on the local GPU(s) (the paper's LLaMA3-8B + vLLM setup).

    The model's chat template is used when it has one (instruction-tuned checkpoints),
    otherwise the plain prompt goes through `LLM.generate`. Pass engine options
    (tensor_parallel_size, gpu_memory_utilization, dtype, ...) as keyword arguments.
    Empty answers fall back to the offline fusion and are counted in `fallback_count`.
    """

    def __init__(
        self,
        model: str,
        max_tokens: int = 96,
        temperature: float = 0.2,
        *,
        use_chat: bool | None = None,
        max_words: int = 77,
        instruction: str = FUSION_INSTRUCTION,
        **llm_kwargs: Any,
    ):
        try:
            import vllm  # noqa: PLC0415 - optional heavy dependency, imported on use
        except ImportError as exc:
            raise ImportError(_VLLM_HINT) from exc
        self.model = model
        self.name = f"vllm:{model}"
        self.max_words = max_words
        self.instruction = instruction
        self.fallback_count = 0
        self._fallback = OfflineFusionGenerator(max_words=max_words)
        self._llm = vllm.LLM(model=model, **llm_kwargs)
        self._params = vllm.SamplingParams(max_tokens=max_tokens, temperature=temperature)
        self.use_chat = self._has_chat_template() if use_chat is None else use_chat

    def _has_chat_template(self) -> bool:
        try:
            tokenizer = self._llm.get_tokenizer()
        except Exception:  # noqa: BLE001 - any failure means "no template we can rely on"
            return False
        return bool(getattr(tokenizer, "chat_template", None))

    def generate(self, items: Sequence[FusionInput]) -> list[str]:
        items = list(items)
        if not items:
            return []
        if self.use_chat:
            convs = [build_chat_messages(it, instruction=self.instruction) for it in items]
            outputs = self._llm.chat(convs, sampling_params=self._params, use_tqdm=False)
        else:
            prompts = [build_fusion_prompt(it, instruction=self.instruction) for it in items]
            outputs = self._llm.generate(prompts, self._params, use_tqdm=False)
        texts: list[str] = []
        for item, out in zip(items, outputs, strict=True):
            raw = out.outputs[0].text if out.outputs else ""
            text = clean_generation(raw, self.max_words)
            if not text:
                self.fallback_count += 1
                text = self._fallback.fuse(item)
            texts.append(text)
        return texts


def make_generator(backend: str, **kwargs: Any) -> TextGenerator:
    """Build a generator by name: "offline" | "openai" | "vllm" (kwargs go to the class)."""
    key = backend.strip().lower().replace("_", "-")
    if key in ("offline", "rule", "rules"):
        return OfflineFusionGenerator(**kwargs)
    if key in ("openai", "openai-compatible", "http", "vllm-server"):
        return OpenAICompatibleGenerator(**kwargs)
    if key in ("vllm", "vllm-offline"):
        return VLLMGenerator(**kwargs)
    raise ValueError(f"unknown generator backend {backend!r}; use 'offline', 'openai' or 'vllm'")
