"""Builds a tiny Llama-architecture chat model with random weights and a locally trained BPE
tokenizer, with no download: `python tiny_llama.py OUT_DIR`. Runs in the vLLM virtualenv (its
transformers and tokenizers), so the files match what that vLLM loads."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def sentences() -> list[str]:
    """A few hundred plain English sentences to train the tokenizer on."""
    subjects = ["a red bus", "two dogs", "the old lighthouse", "a girl", "three blue boxes"]
    verbs = ["stands near", "runs along", "waits beside", "shines over", "rests on"]
    places = ["the beach", "a quiet street", "the harbour", "green hills", "the city library"]
    times = ["at dusk", "in spring", "after the rain", "on a foggy morning"]
    return [f"{s} {v} {p} {t}." for s, v, p, t in itertools.product(subjects, verbs, places, times)]


def build(out: Path, vocab_size: int = 400, seed: int = 0) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(sentences(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
