"""GPT-2 sentence perplexity (paper Eq. 2, ``gpt2-large``) through ``transformers``, batched.

The model is imported lazily (optional extra ``lm``) and loads a local path or hub name on any
torch device. ``batched_perplexity`` holds the model-independent part (tokenise, batch by
length, Eq. 2), so other causal LMs, and tests, can plug in their own token log-probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

LM_EXTRA_HINT = "pip install realsyn_assets[lm]"

TokenLogProbs = Callable[[list[list[int]]], list[np.ndarray]]


def perplexities_from_logprobs(token_logprobs: Sequence[np.ndarray]) -> np.ndarray:
    """Eq. 2 per sentence: ``exp(-mean(log p))``; NaN for a sentence with no tokens."""
    out = np.full(len(token_logprobs), np.nan, dtype=np.float64)
    for i, lp in enumerate(token_logprobs):
        lp = np.asarray(lp, dtype=np.float64)
        if lp.size:
            out[i] = math.exp(-float(lp.mean()))
    return out


def batched_perplexity(
    sentences: Sequence[str],
    tokenize: Callable[[str], list[int]],
    token_logprobs: TokenLogProbs,
    batch_size: int = 16,
    bos_id: int | None = None,
    max_tokens: int = 1024,
) -> np.ndarray:
    """Tokenise, batch by similar length, score, and compute Eq. 2 per sentence.

    ``token_logprobs(batch)`` receives id lists that start with the context token ``bos_id``
    (when given, so the first real token is predicted too) and returns, per sequence, the log
    probability of every token after the first. Order of the output = order of ``sentences``."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ids: list[list[int]] = []
    for s in sentences:
        toks = list(tokenize(s)) if isinstance(s, str) and s.strip() else []
        limit = max_tokens - (1 if bos_id is not None else 0)
        toks = toks[:limit]
        ids.append(([bos_id] if bos_id is not None and toks else []) + toks)
    logprobs: list[np.ndarray] = [np.zeros(0)] * len(ids)
    scorable = [i for i, seq in enumerate(ids) if len(seq) >= 2]
    scorable.sort(key=lambda i: -len(ids[i]))  # long first: padding stays small, OOM shows early
    for b in range(0, len(scorable), batch_size):
        chunk = scorable[b : b + batch_size]
        results = token_logprobs([ids[i] for i in chunk])
        if len(results) != len(chunk):
            raise ValueError("token_logprobs returned a wrong number of sequences")
        for i, lp in zip(chunk, results, strict=True):
            lp = np.asarray(lp, dtype=np.float64)
            if lp.shape != (len(ids[i]) - 1,):
                raise ValueError(f"expected {len(ids[i]) - 1} log-probs, got {lp.shape}")
            logprobs[i] = lp
    return perplexities_from_logprobs(logprobs)


def torch_token_logprobs(model, batch: list[list[int]], pad_id: int, device) -> list[np.ndarray]:
    """Log p of tokens 1..n-1 of each sequence under a causal LM (``model(input_ids=...,
    attention_mask=...).logits``), right-padded into one tensor. Padding sits after every real
    token, so a causal model's predictions for real tokens do not depend on it."""
    import torch

    lengths = [len(seq) for seq in batch]
    width = max(lengths)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, seq in enumerate(batch):
        input_ids[r, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[r, : len(seq)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    picked = picked.cpu().numpy().astype(np.float64)
    return [picked[r, : n - 1] for r, n in enumerate(lengths)]


class GPT2Scorer:
    """GPT-2 perplexity (paper: ``gpt2-large``) through ``transformers``, batched.

    ``model`` is a hub name or a local directory; ``local_files_only=True`` (default) never
    touches the network. ``device="auto"`` picks CUDA, then Apple MPS, then CPU. Each sentence is
    scored after GPT-2's ``<|endoftext|>`` token, so all of its t tokens enter Eq. 2.

    ``tokenize`` + ``token_logprobs`` (both or neither) replace the transformers model — for
    tests and for other causal LMs served elsewhere; then nothing is imported.
    """

    def __init__(
        self,
        model: str = "gpt2-large",
        device: str = "auto",
        batch_size: int = 16,
        local_files_only: bool = True,
        *,
        max_tokens: int = 1024,
        tokenize: Callable[[str], list[int]] | None = None,
        token_logprobs: TokenLogProbs | None = None,
        bos_id: int | None = None,
    ) -> None:
        self.model_name = model
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens)
        self.name = f"gpt2:{Path(model).name}" if model else "gpt2"
        if (tokenize is None) != (token_logprobs is None):
            raise ValueError("pass both tokenize and token_logprobs, or neither")
        if tokenize is not None:
            self._tokenize = tokenize
            self._token_logprobs = token_logprobs
            self._bos_id = bos_id
            self.device = device
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "GPT2Scorer needs torch and transformers; install them with "
                f"`{LM_EXTRA_HINT}` (or use NGramScorer offline)"
            ) from exc
        if device == "auto":
            if torch.cuda.is_available():
                device = "cuda"
            elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
                device = "mps"
            else:
                device = "cpu"
        self.device = device
        tok = AutoTokenizer.from_pretrained(model, local_files_only=local_files_only)
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        lm = AutoModelForCausalLM.from_pretrained(
            model, local_files_only=local_files_only, torch_dtype=dtype
        )
        lm.eval().to(device)
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._bos_id = bos
        self.max_tokens = min(self.max_tokens, int(getattr(lm.config, "n_positions", 1024)))

        def tokenize_fn(text: str) -> list[int]:
            return tok(text, add_special_tokens=False)["input_ids"]

        def logprobs_fn(batch: list[list[int]]) -> list[np.ndarray]:
            return torch_token_logprobs(lm, batch, pad, device)

        self._tokenize = tokenize_fn
        self._token_logprobs = logprobs_fn

    def perplexity(self, sentences: Sequence[str]) -> np.ndarray:
        return batched_perplexity(
            sentences,
            self._tokenize,
            self._token_logprobs,
            batch_size=self.batch_size,
            bos_id=self._bos_id,
            max_tokens=self.max_tokens,
        )


__all__ = [
    "GPT2Scorer",
    "LM_EXTRA_HINT",
    "TokenLogProbs",
    "batched_perplexity",
    "perplexities_from_logprobs",
    "torch_token_logprobs",
]
