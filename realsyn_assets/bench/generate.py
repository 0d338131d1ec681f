"""`realsyn bench generate`: texts per second of the fusion generator (synthetic_texts' model).

Runs the backend `synthetic_texts` would use on N fusion inputs (realistic text, caption,
tags): from a materialized home (`--home`: retrieved_texts' text1 with synthetic_texts'
caption and tags) or synthetic ones built from a small vocabulary. Backends:

- `offline`: the rule-based fusion with the home's kind of text tower (`--encoder-model`, local
  random weights) on `--device`;
- `vllm`: the in-process engine (vllm imported only here), `--model` a hub id or a local
  directory; `--model local-llama` builds a small random-weight Llama with a word-level
  tokenizer in the work dir first (no download; its texts are noise, its speed is real);
- `openai`: an OpenAI-compatible server at `--base-url`.

After one warm-up batch, every repeat generates all N items in batches of `--batch-size` (0 =
one call, as a shard is submitted). Prints JSON: `texts_per_s`, `tokens_per_s` (vllm: the
generated token ids; other backends: null), the device and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from realsyn_assets.core.generation.prompts import FUSION_INSTRUCTION, FusionInput

LOCAL_LLAMA = "local-llama"
_SUBJECTS = ["a red bus", "two dogs", "an old lighthouse", "a girl", "three blue boxes", "a cat"]
_ACTIONS = ["stands near", "runs along", "waits beside", "shines over", "rests on", "sleeps by"]
_PLACES = ["the beach", "a quiet street", "the harbour", "green hills", "the library", "a lake"]
_TAGS = ["dog", "sand", "sky", "red", "water", "street", "tree", "light", "stone", "boat"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench generate", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("offline", "vllm", "openai"), default="offline")
    p.add_argument("--model", default="", help=f"vllm / openai model; vllm: {LOCAL_LLAMA!r} too")
    p.add_argument("--device", default="auto", help='"auto" (cuda when present), "cpu", "cuda"')
    p.add_argument("--prompts", type=int, default=256, help="fusion inputs per repeat")
    p.add_argument("--home", default="", help="a materialized home to take the inputs from")
    p.add_argument("--batch-size", type=int, default=0, help="items per call; 0 = all at once")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--encoder-model", default="realsyn-tiny", help="offline: the text tower")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai backend")
    p.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight")
    p.add_argument("--dtype", default="auto", help="vllm: weight dtype")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5, help="vllm")
    p.add_argument("--max-num-seqs", type=int, default=0, help="vllm batch; 0 = its default")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm")
    p.add_argument("--max-model-len", type=int, default=2048, help="vllm context length")
    p.add_argument("--enforce-eager", action="store_true", help="vllm: no CUDA graphs")
    p.add_argument("--llama-hidden", type=int, default=256, help=f"{LOCAL_LLAMA}: width")
    p.add_argument("--llama-layers", type=int, default=4, help=f"{LOCAL_LLAMA}: layers")
    p.add_argument("--workdir", default=None, help="temp files go here (weights, local model)")
    p.add_argument("--seed", type=int, default=0)
    return p


def synthetic_inputs(n: int, seed: int = 0) -> list[FusionInput]:
    """`n` varied fusion inputs (a web sentence, a caption that overlaps it, 3-5 tags)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        s, a, p = (str(rng.choice(words)) for words in (_SUBJECTS, _ACTIONS, _PLACES))
        tags = [str(t) for t in rng.choice(_TAGS, size=int(rng.integers(3, 6)), replace=False)]
        text = f"Photo {i}: {s} {a} {p} on a bright morning."
        items.append(FusionInput(text, f"{s} near {p}", tags))
    return items


def home_inputs(home: Path, n: int) -> list[FusionInput]:
    """Up to `n` inputs of a materialized home: retrieved text1 + synthetic caption and tags."""
    import pyarrow.parquet as pq

    texts: dict[str, str] = {}
    for path in sorted((home / "data" / "retrieved_texts").glob("*.parquet")):
        rows = pq.read_table(path, columns=["image_id", "text1"]).to_pylist()
        texts.update({r["image_id"]: r["text1"] or "" for r in rows})
    items: list[FusionInput] = []
    for path in sorted((home / "data" / "synthetic_texts").glob("*.parquet")):
        table = pq.read_table(path, columns=["image_id", "caption", "tags"])
        for r in table.to_pylist():
            if r["image_id"] in texts and len(items) < n:
                items.append(FusionInput(texts[r["image_id"]], r["caption"], list(r["tags"] or [])))
    if not items:
        raise ValueError(f"{home} holds no retrieved_texts + synthetic_texts rows to fuse")
    return [items[i % len(items)] for i in range(n)]  # repeated to n: speed, not content


def _words(items: Sequence[FusionInput]) -> list[str]:
    """Lower-case words and punctuation of the instruction and the inputs (the local
    tokenizer's vocabulary)."""
    import re

    texts = [FUSION_INSTRUCTION] + [
        f"{i.realistic_text} {i.caption} {' '.join(i.tags)}" for i in items
    ]
    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})


def make_local_llama(
    out: Path, words: Sequence[str], hidden: int, layers: int, seed: int = 0
) -> Path:
    """A Llama-architecture causal LM with random weights and a word-level tokenizer, written
    as a Hugging Face folder vLLM loads: a stand-in model whose speed is that of its size."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {w: i for i, w in enumerate([*specials, *[w for w in words if w not in specials]])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    fast.save_pretrained(out)
    heads = max(1, hidden // 64)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 64 * 64 or 64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


def _generator(args: argparse.Namespace, device: str, root: Path, items: list[FusionInput]):
    """(generator, model name) for the configured backend."""
    from realsyn_assets.core.generation.clients import make_generator

    if args.backend == "offline":
        from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec

        spec = EncoderSpec(model_name=args.encoder_model, device=device)
        return make_generator("offline", encoder=Encoder(spec, root / "models")), args.encoder_model
    if not args.model:
        raise SystemExit(f"--backend {args.backend} needs --model")
    common = {"max_tokens": args.max_tokens, "temperature": 0.2, "seed": args.seed}
    if args.backend == "openai":
        options = {"base_url": args.base_url, "concurrency": args.concurrency, "api_key": None}
        return make_generator("openai", model=args.model, **common, **options), args.model
    model = args.model
    if model == LOCAL_LLAMA:
        model = str(
            make_local_llama(
                root / LOCAL_LLAMA, _words(items), args.llama_hidden, args.llama_layers
            )
        )
    engine = {"enforce_eager": args.enforce_eager, "max_num_seqs": args.max_num_seqs or None}
    gen = make_generator(
        "vllm",
        model=model,
        **common,
        dtype=args.dtype,
        tensor_parallel_size=args.tensor_parallel_size,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        engine_options=engine,
    )
    return gen, args.model


def _token_counter(gen) -> list[int]:
    """Counts the token ids vLLM generates (wrapping the shared engine's chat and generate)."""
    counts: list[int] = []
    engine = getattr(gen, "engine", None)
    if engine is None:
        return counts
    for name in ("chat", "generate"):
        inner = getattr(engine, name)

        def counted(*args, _inner=inner, **kwargs):
            outputs = _inner(*args, **kwargs)
            counts.append(sum(len(o.outputs[0].token_ids) for o in outputs if o.outputs))
            return outputs

        setattr(engine, name, counted)
    return counts


def _device(args: argparse.Namespace) -> str:
    """The resolved `--device`; the vllm and openai backends run where their engine runs."""
    if args.backend == "openai":
        return "remote"
    from realsyn_assets.core.embedding.runtime import resolve_device

    return resolve_device(args.device, "--device")


def _report(device: str) -> dict:
    if device == "remote":
        return {"device": device}
    from realsyn_assets.core.embedding.runtime import device_report

    return device_report(device)


def run(args: argparse.Namespace) -> dict:
    device = _device(args)
    root = Path(tempfile.mkdtemp(prefix="realsyn-bench-generate-", dir=args.workdir))
    try:
        n = max(1, args.prompts)
        items = home_inputs(Path(args.home), n) if args.home else synthetic_inputs(n, args.seed)
        t0 = time.perf_counter()
        gen, model = _generator(args, device, root, items)
        tokens = _token_counter(gen) if args.backend == "vllm" else []
        bs = args.batch_size if args.batch_size > 0 else n
        gen.generate(items[: min(bs, 8)])  # warm-up: engine start, first allocations
        load_s = time.perf_counter() - t0
        del tokens[:]
        seconds, produced = [], 0
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            texts = [t for s in range(0, n, bs) for t in gen.generate(items[s : s + bs])]
            seconds.append(time.perf_counter() - t0)
            produced = sum(1 for t in texts if t)
        median = float(np.median(seconds))
        return {
            "backend": args.backend,
            "model": model,
            "generator_model": getattr(gen, "model", ""),
            "prompts": n,
            "inputs": "home" if args.home else "synthetic",
            "batch_size": bs,
            "texts": produced,
            "texts_per_s": round(n / median, 2),
            "tokens_per_s": round(sum(tokens) / len(seconds) / median, 1) if tokens else None,
            "run_s": [round(s, 3) for s in seconds],
            "load_s": round(load_s, 2),
            **_report(device),
            "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
