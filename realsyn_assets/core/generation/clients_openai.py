"""Fusion through any OpenAI-compatible server (`vllm serve`, TGI, llama.cpp, hosted APIs).

One chat (or completion) request per item on a pool of `concurrency` threads sharing one
`openai.OpenAI` client. The client retries connection errors, timeouts, 408/409/429 and 5xx
`max_retries` times with exponential backoff and jitter, and waits as long as a `Retry-After`
header asks (up to its cap); an item that still fails goes to the `on_error` policy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from realsyn_assets.core.generation.clients import FusionBackend, OnError
from realsyn_assets.core.generation.prompts import (
    FUSION_INSTRUCTION,
    FUSION_PROMPT_VERSION,
    FusionInput,
    build_chat_messages,
    build_fusion_prompt,
)


class EmptyResponseError(RuntimeError):
    """The server answered without any choice to read a text from."""


class OpenAIFusionGenerator(FusionBackend):
    """Fuses each item with one request to an OpenAI-compatible server; order preserved.

    `base_url` includes the API prefix ("http://gpu-node:8000/v1"). Chat completions by default
    (the instruction in the system turn); `use_chat=False` sends the plain prompt to
    /completions for base models. A server started without an API key accepts any token.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        *,
        max_tokens: int = 96,
        temperature: float = 0.2,
        seed: int | None = 0,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 8,
        use_chat: bool = True,
        on_error: OnError = "fail",
        encoder: Any = None,
        max_words: int = 77,
        instruction: str = FUSION_INSTRUCTION,
        prompt_version: str = FUSION_PROMPT_VERSION,
    ):
        import openai  # noqa: PLC0415 - only this backend needs the client

        if not model:
            raise ValueError("the openai fusion backend needs a model name (the server's)")
        self._init_policy(on_error, encoder, max_words, instruction, prompt_version)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.seed = seed
        self.concurrency = max(1, int(concurrency))
        self.use_chat = use_chat
        self.requests_sent = 0  # successful answers, over the object's life
        self._count_lock = threading.Lock()
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or "EMPTY",
            timeout=float(timeout_s),
            max_retries=max(0, int(max_retries)),
        )
        # without a key, send no Authorization header at all (not a made-up token)
        self._headers = None if api_key else {"Authorization": openai.Omit()}

    def _request(self, item: FusionInput) -> str:
        common: dict[str, Any] = {
            "extra_headers": self._headers,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "n": 1,
        }
        if self.seed is not None:
            common["seed"] = int(self.seed)
        if self.use_chat:
            messages = build_chat_messages(item, instruction=self.instruction)
            answer = self._client.chat.completions.create(messages=messages, **common)
            if not answer.choices:
                raise EmptyResponseError("the server returned no choices")
            raw = answer.choices[0].message.content
        else:
            prompt = build_fusion_prompt(item, instruction=self.instruction)
            answer = self._client.completions.create(prompt=prompt, stop=["\n\n"], **common)
            if not answer.choices:
                raise EmptyResponseError("the server returned no choices")
            raw = answer.choices[0].text
        with self._count_lock:
            self.requests_sent += 1
        return self._clean(raw)

    def generate(
        self, items: Sequence[FusionInput], image_vecs: np.ndarray | None = None
    ) -> list[str | None]:
        """One text per item, in input order (None for a dropped item)."""
        items = list(items)
        if not items:
            return []
        done: dict[int, str] = {}
        errors: dict[int, BaseException] = {}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures: dict[Future, int] = {
                pool.submit(self._request, item): i for i, item in enumerate(items)
            }
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    exc = future.exception()
                    if exc is None:
                        done[futures[future]] = future.result()
                    else:
                        errors[futures[future]] = exc
                if errors and self.on_error == "fail":
                    for future in pending:  # no point finishing a batch that will raise
                        future.cancel()
                    break
        return self._settle(items, done, errors, image_vecs)
