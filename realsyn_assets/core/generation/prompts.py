"""What a synthetic-text generator sees for one image, the fusion prompt, and the generator
interface (paper §3.2, "image semantic augmented generation").

Per image the paper fuses three signals with an instruction-tuned LLM: the top retrieved realistic
sentence (real-world detail, rough grammar), a short machine caption (fluent but shallow, may be
wrong) and open-set tags (extra semantics, some noisy). Backends: `offline` (rule-based, CPU),
`clients_openai` (OpenAI-compatible server) and `clients_vllm` (in-process vLLM); the models'
raw output goes through `cleaning`, and every result through `validation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class FusionInput:
    """What the fusion step sees for one image."""

    realistic_text: str
    caption: str | None
    tags: list[str]


# Written for this project (it states the requirements of the paper's App. A.2 in its own words).
FUSION_INSTRUCTION = (
    "You write one training caption for an image from three clues about it.\n"
    "1. Web text: a sentence from the web page the image appeared on. It usually holds the "
    "real-world specifics (names, places, dates, objects, numbers) but its grammar can be rough.\n"
    "2. Machine caption: a short description from an automatic captioner that looked at the "
    "image. It reads well but is generic and may be mistaken.\n"
    "3. Tags: labels detected in the image. Some add useful detail, some are wrong.\n"
    "Write a single well-formed English sentence about the image. Keep the real-world "
    "specifics of the web text; use the caption to ground and correct what is visible; weave in "
    "only the tags that fit the image and the other clues. Do not just join the clues one after "
    "another, and do not add anything that none of the clues states. Fix the grammar, keep it "
    "short and simple, and answer with the sentence alone."
)

# Bump whenever FUSION_INSTRUCTION or the layout of the inputs changes: it is part of the
# synthetic-text cache key and of each shard's metadata, so old generations are not reused.
FUSION_PROMPT_VERSION = "fusion-2"

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


@runtime_checkable
class TextGenerator(Protocol):
    """Anything that turns fusion inputs into one synthetic text each, order preserved.

    `name` is the backend ("offline", "openai", "vllm") and `model` the identity of what
    generates (model name or weights hash, rule version) - both go into the cache key. A backend
    whose `on_error` policy is "drop" returns None for an item it could not generate.
    """

    name: str
    model: str

    def generate(self, items: Sequence[FusionInput]) -> list[str | None]: ...
