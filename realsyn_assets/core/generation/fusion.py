"""Synthetic text generation (paper §4, "image semantic augmented generation").

Per image the paper fuses three signals with an instruction-tuned LLM: the top retrieved realistic
sentence (real-world detail, rough grammar), a short machine caption (fluent but shallow, may be
wrong) and open-set tags (extra semantics, some noisy). This module holds the prompt, output
cleaning, and one `TextGenerator` interface with three backends:

- `OfflineFusionGenerator`: deterministic rule-based fusion on CPU (tests, demo, air-gapped runs);
- `OpenAICompatibleGenerator`: any OpenAI-compatible HTTP server (e.g. `vllm serve`), stdlib only;
- `VLLMGenerator`: offline batch inference with `vllm.LLM` on a GPU (optional extra `gpu`).

It also has the tagging stand-ins for RAM++: a corpus-mined tag vocabulary and similarity-ranked
tag selection from image/text embeddings.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_STOPWORDS",
    "FUSION_INSTRUCTION",
    "FusionInput",
    "GenerationError",
    "OfflineFusionGenerator",
    "OpenAICompatibleGenerator",
    "TextGenerator",
    "VLLMGenerator",
    "build_chat_messages",
    "build_fusion_prompt",
    "clean_generation",
    "make_generator",
    "select_tags",
    "tag_vocabulary",
]


@dataclass(frozen=True)
class FusionInput:
    """What the fusion step sees for one image."""

    realistic_text: str
    caption: str | None
    tags: list[str]


# ---------------------------------------------------------------------------------------------
# Prompt
# ---------------------------------------------------------------------------------------------

# Written for this project (paraphrasing the *requirements* of the paper's App. A.2, not its text).
FUSION_INSTRUCTION = (
    "You write one training caption for an image, using three clues about it.\n"
    "1. Web text: a sentence taken from the web page the image appeared on. It usually holds "
    "the concrete specifics (names, places, dates, objects) but its grammar can be rough.\n"
    "2. Machine caption: a short description from an automatic captioner. It reads well but "
    "is generic and may be mistaken.\n"
    "3. Tags: labels detected in the image. They can add useful detail, but some are wrong.\n"
    "Write a single well-formed English sentence about the image. Keep the real-world "
    "specifics of the web text, use the caption to ground what is visible, and weave in only "
    "the tags that fit. Do not just join the clues one after another, do not add facts that "
    "none of the clues support, fix grammar and keep it short and simple. "
    "Answer with the sentence alone."
)

_NONE = "(none)"


def _inputs_block(item: FusionInput) -> str:
    caption = (item.caption or "").strip() or _NONE
    tags = ", ".join(t.strip() for t in item.tags if t and t.strip()) or _NONE
    return (
        f"Web text: {item.realistic_text.strip() or _NONE}\n"
        f"Machine caption: {caption}\n"
        f"Tags: {tags}"
    )


def build_fusion_prompt(item: FusionInput, *, instruction: str = FUSION_INSTRUCTION) -> str:
    """Plain-text prompt (instruction + the three inputs) for completion-style models."""
    return f"{instruction}\n\n{_inputs_block(item)}\n\nSentence:"


def build_chat_messages(
    item: FusionInput, *, instruction: str = FUSION_INSTRUCTION
) -> list[dict[str, str]]:
    """System/user messages for chat servers; the instruction lives in the system turn."""
    return [
        {"role": "system", "content": instruction},
        {"role": "user", "content": _inputs_block(item)},
    ]


# ---------------------------------------------------------------------------------------------
# Output cleaning
# ---------------------------------------------------------------------------------------------

_PREFIX = re.compile(
    r"^\s*(?:"
    r"(?:sure|certainly|okay|ok)\b[^:\n]*:"  # "Sure, here is the caption:"
    r"|here(?:'s| is| are)\b[^:\n]*:"  # "Here is the fused sentence:"
    r"|(?:the\s+)?(?:fused|merged|final|combined|new|rewritten|synthetic|image)?\s*"
    r"(?:caption|sentence|description|output|answer|text|response)\s*:"
    r")\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»*_"
_MARKUP = "*_#>-•· \t"
_SPACE = re.compile(r"\s+")
_SENT_END = re.compile(r"[.!?](?=\s+[\"'“‘(]?[A-Z0-9])")
# Tokens that end with a period without ending a sentence.
_ABBREV = frozenset(
    "mr mrs ms dr st jr sr prof mt ft no vs etc inc ltd co corp dept fig approx ca est gen col "
    "lt sgt capt rev ave blvd rd jan feb mar apr aug sept sep oct nov dec e.g i.e u.s u.k".split()
)


def _first_sentence(text: str) -> str:
    for match in _SENT_END.finditer(text):
        head = text[: match.start()]
        last = head.rsplit(" ", 1)[-1].lower().strip(_QUOTES + "(")
        if last in _ABBREV or len(last) == 1:
            continue  # "St. Louis", "J. Smith"
        if len(head.split()) < 2:
            continue  # a lone word is not a sentence; keep reading
        return text[: match.start() + 1]
    return text


def clean_generation(text: str, max_words: int = 77) -> str:
    """Turn raw LLM output into one caption: drop preambles/labels/quotes, one sentence, truncate.

    Chat models like to answer "Sure! Here is the caption:\\n\\n\\"A dog ...\\"" — only the
    sentence itself is a training text. Returns "" when nothing usable is left.
    """
    if not text:
        return ""
    lines = [ln.strip() for ln in str(text).replace("\r", "\n").split("\n")]
    body = ""
    for line in lines:
        if not line:
            continue
        stripped = line
        while True:  # labels can stack and hide in markdown: "**Sure! Caption:** ..."
            new = _PREFIX.sub("", stripped.lstrip(_MARKUP), count=1)
            if new == stripped:
                break
            stripped = new
        stripped = stripped.lstrip(_MARKUP).strip()
        if not stripped.strip(_QUOTES + " "):
            continue  # the line was only a preamble ("Here is the sentence:")
        if stripped.endswith(":") and len(stripped.split()) <= 8:
            continue  # an unrecognised preamble line
        body = stripped
        break
    body = _SPACE.sub(" ", body).strip().strip(_QUOTES).strip()
    body = _first_sentence(body).strip().strip(_QUOTES).strip()
    words = body.split()
    if max_words > 0 and len(words) > max_words:
        body = " ".join(words[:max_words]).rstrip(",;:-– ")
    return body


# ---------------------------------------------------------------------------------------------
# Generator interface
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class TextGenerator(Protocol):
    """Anything that turns fusion inputs into one synthetic text each, order preserved."""

    name: str

    def generate(self, items: Sequence[FusionInput]) -> list[str]: ...


class GenerationError(RuntimeError):
    """A generation backend failed for an item (after retries)."""

    def __init__(self, index: int, message: str):
        super().__init__(f"generation failed for item {index}: {message}")
        self.index = index


# ---------------------------------------------------------------------------------------------
# Offline rule-based fusion
# ---------------------------------------------------------------------------------------------

_CAPTION_LEADS = re.compile(
    r"^\s*(?:(?:a|an|the)\s+)?(?:close[- ]up\s+)?(?:picture|photo(?:graph)?|image|view|shot|"
    r"illustration|drawing|painting)\s+of\s+|^\s*there\s+(?:is|are)\s+",
    re.IGNORECASE,
)
_CLITIC = re.compile(r"\s+('(?:s|re|ve|ll|d|m|t)\b|n't\b)", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?%)\]}])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{])\s+")
_SPLIT_DIGITS = re.compile(r"\b\d(?: \d\b)+")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _detokenise(text: str) -> str:
    """Undo the CLIP-BPE look of released realistic texts ("it 's", "( x )", "2 0 1 9")."""
    text = _SPACE.sub(" ", text).strip()
    text = _SPLIT_DIGITS.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _CLITIC.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    return text


def _stem(word: str) -> str:
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _content_stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in DEFAULT_STOPWORDS}


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _strip_end(text: str) -> str:
    return text.strip().rstrip(".!?;:, ").strip()


class OfflineFusionGenerator:
    """Deterministic rule-based fusion: caption subject first, realistic details, two new tags.

    Not a language model: it exists so the pipeline, tests and demo run on CPU without weights.
    Output shape: "<Caption>: <realistic details>, with <tag> and <tag>." — every content word
    of the realistic text survives, only tags that add something new are appended, and the same
    input always yields the same sentence.
    """

    name = "offline"

    def __init__(self, max_words: int = 77, max_tags: int = 2):
        self.max_words = max_words
        self.max_tags = max_tags

    def fuse(self, item: FusionInput) -> str:
        caption = _strip_end(_CAPTION_LEADS.sub("", _SPACE.sub(" ", item.caption or "")))
        details = _strip_end(_detokenise(item.realistic_text or ""))
        cap_stems = _content_stems(caption)
        det_stems = _content_stems(details)
        if details and det_stems and det_stems <= cap_stems:
            details = ""  # the realistic text adds nothing the caption lacks
        mentioned = cap_stems | det_stems

        tags: list[str] = []
        for tag in item.tags:
            tag = _SPACE.sub(" ", (tag or "").strip().lower())
            stems = _content_stems(tag)
            if not tag or not stems or stems <= mentioned:
                continue
            tags.append(tag)
            mentioned |= stems
            if len(tags) >= self.max_tags:
                break

        tag_words = sum(len(t.split()) for t in tags) + (2 if tags else 0)
        budget = max(self.max_words - len(caption.split()) - tag_words, 8)
        if details:
            words = details.split()
            if len(words) > budget:
                details = _strip_end(" ".join(words[:budget]))

        if caption and details:
            head = f"{_capitalise(caption)}: {details}"
        else:
            head = _capitalise(caption or details)
        if tags:
            tag_text = " and ".join(tags)
            head = f"{head}, with {tag_text}" if head else f"An image of {tag_text}"
        if not head:
            return "An image."
        words = head.split()
        if len(words) > self.max_words:
            head = _strip_end(" ".join(words[: self.max_words]))
        return head + "."

    def generate(self, items: Sequence[FusionInput]) -> list[str]:
        return [self.fuse(item) for item in items]


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# vLLM offline batch backend
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Tags (RAM++ stand-in)
# ---------------------------------------------------------------------------------------------

# Function words plus very common words that make poor visual tags.
DEFAULT_STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all almost along also although always am among an and
    another any anyone anything are around as at away back be because been before being below
    between both but by can cannot could did didn do does doesn doing don done down during each
    either else enough even ever every few for from further get gets getting got had hadn has
    hasn have haven having he her here hers herself him himself his how however i if in into is
    isn it its itself just least less let like made make makes many may me might mine more most
    much must my myself near need never new next no nor not now of off often on once one only
    onto or other others our ours ourselves out over own per perhaps please quite rather really
    said same say says see seen shall she should shouldn since so some something sometimes still
    such than that the their theirs them themselves then there these they thing things this
    those though through thus to too toward towards under until up upon us use used using very
    via was wasn way we well were weren what whatever when where whether which while who whom
    whose why will with within without won would wouldn yet you your yours yourself yourselves
    ll ve re aren couldn mustn needn shan
    also amp nbsp http https www com html click read today yesterday tomorrow year years day days
    time times week weeks month months lot lots part first last good great best better
    """.split()
)


def tag_vocabulary(
    sentences: Iterable[str],
    size: int = 8000,
    min_count: int = 2,
    stopwords: frozenset[str] = DEFAULT_STOPWORDS,
) -> list[str]:
    """Most frequent content words of a corpus, as an open-set tag vocabulary.

    The paper widens RAM++'s 4,000 tags with 4,000 more "derived from real-world sentences"
    (method unstated). Here the whole vocabulary is mined from the sentence corpus: lowercase
    alphabetic words of length >= 3, not stopwords, counted once per sentence (so one rambling
    sentence cannot promote a word), seen in >= `min_count` sentences, ties broken alphabetically
    so the result is deterministic.
    """
    counts: Counter[str] = Counter()
    for sentence in sentences:
        if not sentence:
            continue
        words = set()
        for word in _WORD.findall(str(sentence).lower()):
            if "'" in word:
                if not word.endswith("'s"):
                    continue  # contraction fragment
                word = word[:-2]
            if len(word) >= 3 and word not in stopwords:
                words.add(word)
        counts.update(words)
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked[: max(0, size)]


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def select_tags(
    image_vecs: np.ndarray,
    tag_vecs: np.ndarray,
    tag_words: Sequence[str],
    k: int = 5,
    min_score: float | None = None,
    *,
    batch_size: int = 4096,
) -> list[list[str]]:
    """Top-k tags per image by cosine similarity between image and tag-text embeddings.

    An open-set tagger stand-in for RAM++: embed each vocabulary word with the text tower once,
    then rank per image. Vectors are (re-)normalised so cosine == dot; ties break by vocabulary
    order; `min_score` drops weak tags (an image may get fewer than k, or none).
    """
    img = np.asarray(image_vecs, dtype=np.float32)
    if img.ndim == 1:
        img = img[None, :]
    tv = np.asarray(tag_vecs, dtype=np.float32)
    if tv.ndim != 2 or tv.shape[0] != len(tag_words):
        raise ValueError(f"tag_vecs has shape {tv.shape} but there are {len(tag_words)} tag words")
    if img.shape[0] == 0:
        return []
    if tv.shape[0] == 0 or k <= 0:
        return [[] for _ in range(img.shape[0])]
    if img.shape[1] != tv.shape[1]:
        raise ValueError(f"dimension mismatch: images {img.shape[1]} vs tags {tv.shape[1]}")
    tv = _l2(tv)
    k_eff = min(k, tv.shape[0])
    out: list[list[str]] = []
    for start in range(0, img.shape[0], batch_size):
        sims = _l2(img[start : start + batch_size]) @ tv.T
        # k-th best score per row; every tag scoring at least that is a candidate, so ties at
        # the cut are resolved by vocabulary order rather than by argpartition's whim.
        kth = -np.partition(-sims, k_eff - 1, axis=1)[:, k_eff - 1]
        for row, cut in zip(sims, kth, strict=True):
            cand = np.flatnonzero(row >= cut)
            order = cand[np.lexsort((cand, -row[cand]))][:k_eff]
            if min_score is not None:
                order = order[row[order] >= min_score]
            out.append([tag_words[j] for j in order])
    return out
