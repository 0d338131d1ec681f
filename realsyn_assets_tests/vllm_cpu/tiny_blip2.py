"""Builds a tiny BLIP-2 vision-language model (ViT + Q-Former + OPT) with random weights, a
word-level tokenizer made here and a chat template, with no download:
`python -m realsyn_assets_tests.vllm_cpu.tiny_blip2 OUT_DIR`. Runs in the vLLM virtualenv
(its transformers), so the files match what that vLLM loads. BLIP-2 is a VLM that vllm-cpu
serves without torchvision, which `.ci/run` removes."""

from __future__ import annotations

import sys
from pathlib import Path

WORDS = (
    "a an the red green blue yellow white black square circle triangle shape on in of with "
    "plain background image photo small large bright dark picture there is"
).split()
SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", "<image>"]
QUERY_TOKENS = 4
# vLLM renders a user turn whose content is an image plus text as text only (BLIP-2 needs no
# placeholder: the image's query tokens are put at the start of the prompt).
TINY_VIT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
"""A one-layer ViT on 32x32 images in 8x8 patches: the vision tower of the tiny test models."""
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build(out: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        OPTConfig,
        PreTrainedTokenizerFast,
    )

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS + [":", ".", ",", "user", "assistant"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fast.chat_template = CHAT_TEMPLATE
    images = BlipImageProcessor(size={"height": 32, "width": 32})
    Blip2Processor(
        image_processor=images,
        tokenizer=fast,
        num_query_tokens=QUERY_TOKENS,
        chat_template=CHAT_TEMPLATE,
    ).save_pretrained(out)
    fast.save_pretrained(out)
    text = OPTConfig(
        vocab_size=len(fast),
        hidden_size=64,
        ffn_dim=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        word_embed_proj_dim=64,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    config = Blip2Config(
        vision_config=dict(TINY_VIT),
        qformer_config={
            "vocab_size": 64,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "encoder_hidden_size": 32,
        },
        text_config=text.to_dict(),
        num_query_tokens=QUERY_TOKENS,
        image_token_index=fast.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    Blip2ForConditionalGeneration(config).save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1]))
