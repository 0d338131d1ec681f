"""Runs the in-process vLLM fusion backend on a local model and prints a JSON report:
`python inprocess.py MODEL_DIR`. Meant for the vLLM virtualenv, with this repository on
PYTHONPATH: it exercises `clients_vllm` exactly as the pipeline would, on CPU."""

from __future__ import annotations

import json
import sys
import time


def main(model: str) -> dict:
    from realsyn_assets.core.generation.clients import make_generator
    from realsyn_assets.core.generation.prompts import FusionInput

    options = {
        "model": model,
        "dtype": "float32",
        "max_model_len": 2048,
        "max_tokens": 24,
        "on_error": "fail",
        "engine_options": {"enforce_eager": True},
    }
    items = [
        FusionInput(f"my dog {i} runs on the beach at carmel", "a dog on a beach", ["dog", "sand"])
        for i in range(6)
    ]
    start = time.perf_counter()
    first = make_generator("vllm", **options)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    texts = first.generate(items)
    batch_s = time.perf_counter() - start
    second = make_generator("vllm", **options)  # a later shard / materialization
    again = second.generate(items[:2])
    return {
        "texts": texts,
        "again": again,
        "engine_reused": second.engine is first.engine,
        "use_chat": first.use_chat,
        "batches": first.batches + second.batches,
        "model": first.model,
        "load_s": load_s,
        "batch_s": batch_s,
        "items": len(items),
    }


if __name__ == "__main__":
    report = main(sys.argv[1])
    print("REPORT " + json.dumps(report), flush=True)
