"""`realsyn bench gpu`: one prepared command that measures the GPU paths and writes one JSON.

On a CUDA machine (a few minutes, model creation included):

- `embed`: `realsyn bench embed --model ViT-B-32 --device cuda --images 2048` with local random
  weights, fp16 autocast, batches of 256 and DataLoader decode workers: images/s of the
  `image_embeddings` path (read, decode, encode, write LanceDB) and of the model alone; the
  goal is >= 2,500 images/s (clip-retrieval's A100 figure for ViT-B/32);
- `train`: the `clip_checkpoint` trainer (`train_clip`) on synthetic JPEGs, ViT-B-32, bf16
  autocast, batch 256: samples/s over the steps after the first (model creation, the first
  step's warm-up and checkpoint writing excluded);
- `generate`: when vllm imports, `realsyn bench generate --backend vllm` on a small locally
  created Llama (random weights, no download): texts/s and tokens/s.

Without CUDA, or with `--smoke`, the same three run at tiny sizes (realsyn-tiny, a few dozen
images) so a test can run the whole command on a CPU. A part that fails is recorded with its
error and the others still run; the exit status is 1 when any part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

EMBED_GOAL_IMAGES_PER_S = 2500.0  # clip-retrieval's ViT-B/32 inference figure on one A100

# Sizes on a GPU, and the tiny ones of a CPU / --smoke run.
FULL = {
    "model": "ViT-B-32",
    "images": 2048,
    "embed_batch": 256,
    "embed_repeats": 3,
    "size": "320x240",
    "train_images": 1024,
    "train_batch": 256,
    "train_epochs": 3,
    "prompts": 512,
    "max_tokens": 64,
    "llama_hidden": 512,
    "llama_layers": 8,
}
SMOKE = {
    "model": "realsyn-tiny",
    "images": 32,
    "embed_batch": 16,
    "embed_repeats": 1,
    "size": "96x72",
    "train_images": 16,
    "train_batch": 8,
    "train_epochs": 2,
    "prompts": 8,
    "max_tokens": 8,
    "llama_hidden": 64,
    "llama_layers": 2,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench gpu", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help='"auto" (cuda when present), "cpu", "cuda:N"')
    p.add_argument("--smoke", action="store_true", help="tiny sizes even on a GPU (tests)")
    p.add_argument(
        "--parts",
        default="embed,train,generate",
        help="comma-separated subset of embed,train,generate",
    )
    p.add_argument("--workers", type=int, default=-1, help="decode workers; -1 = cores - 2")
    p.add_argument("--out", default="", help="also write the JSON to this file")
    p.add_argument("--workdir", default=None, help="temp files go here")
    return p


def _decode_workers(requested: int, smoke: bool) -> int:
    if requested >= 0:
        return requested
    return 0 if smoke else max(0, min(12, (os.cpu_count() or 2) - 2))


def _importable(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def embed_part(device: str, sizes: dict, workers: int, workdir: str | None) -> dict:
    """`realsyn bench embed` at these sizes; fp16 on CUDA."""
    from realsyn_assets.bench import embed

    argv = [
        "--model", sizes["model"],
        "--device", device,
        "--precision", "fp16",
        "--images", str(sizes["images"]),
        "--size", sizes["size"],
        "--batch-size", str(sizes["embed_batch"]),
        "--num-workers", str(workers),
        "--repeats", str(sizes["embed_repeats"]),
    ]  # fmt: skip
    if workdir:
        argv += ["--workdir", workdir]
    if not _importable("lancedb", "dagster"):  # a bare GPU image: time read + encode only
        argv.append("--no-store")
    out = embed.run(embed.build_parser().parse_args(argv))
    out.pop("runs", None)
    if device.startswith("cuda") and sizes["model"] == FULL["model"]:
        out["goal_images_per_s"] = EMBED_GOAL_IMAGES_PER_S
        out["goal_met"] = out["images_per_s"] >= EMBED_GOAL_IMAGES_PER_S
    return out


def train_part(device: str, sizes: dict, workers: int, root: Path) -> dict:
    """`train_clip` (the clip_checkpoint trainer) on synthetic JPEGs; samples/s after step 1."""
    from realsyn_assets.bench.embed import make_jpegs
    from realsyn_assets.core.training.clip import TrainConfig, TrainSample, train_clip

    width, height = (int(v) for v in sizes["size"].split("x"))
    paths = make_jpegs(root / "train-images", sizes["train_images"], width, height, seed=1)
    samples = [
        TrainSample(str(p), [f"photo number {i}", f"image {i % 7}"]) for i, p in enumerate(paths)
    ]
    config = TrainConfig(
        model_name=sizes["model"],
        epochs=sizes["train_epochs"],
        batch_size=sizes["train_batch"],
        num_workers=workers,
        device=device,
        precision="bf16",
        log_every=1,
    )
    stamps: dict[int, float] = {}

    def log(message: str) -> None:  # "step N/total ..." after each optimiser step
        if message.startswith("step "):
            stamps[int(message.split()[1].split("/")[0])] = time.perf_counter()

    t0 = time.perf_counter()
    result = train_clip(samples, config, root / "train-out", log=log)
    total_s = time.perf_counter() - t0
    first, last = min(stamps), max(stamps)
    timed = sum(result.batch_sizes[first:last])  # the steps after the first
    span = stamps[last] - stamps[first]
    return {
        "model": sizes["model"],
        "device": device,
        "precision": "bf16" if device.startswith("cuda") else "fp32",
        "batch_size": sizes["train_batch"],
        "steps": result.steps,
        "samples_per_s": round(timed / span, 1) if span > 0 and timed else None,
        "final_loss": round(result.losses[-1], 4),
        "total_s": round(total_s, 1),
        "num_workers": workers,
    }


def generate_part(device: str, sizes: dict, workdir: str | None) -> dict:
    """`realsyn bench generate --backend vllm` on a local random Llama, when vllm imports."""
    if not _importable("vllm"):
        return {"skipped": "vllm is not importable here (pip install -e '.[gpu]')"}
    from realsyn_assets.bench import generate

    argv = [
        "--backend", "vllm",
        "--model", generate.LOCAL_LLAMA,
        "--device", device,
        "--prompts", str(sizes["prompts"]),
        "--max-tokens", str(sizes["max_tokens"]),
        "--llama-hidden", str(sizes["llama_hidden"]),
        "--llama-layers", str(sizes["llama_layers"]),
        "--repeats", "2",
    ]  # fmt: skip
    if not device.startswith("cuda"):
        argv += ["--enforce-eager", "--dtype", "float32"]
    if workdir:
        argv += ["--workdir", workdir]
    return generate.run(generate.build_parser().parse_args(argv))


def _release_gpu_memory() -> None:
    """Hand the memory torch's allocator cached for one part back to the GPU, so the next part
    (vLLM sizes its cache from the free memory) starts from an empty card."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _timed(name: str, part: Callable[[], dict], say: Callable[[str], None]) -> dict:
    """Run one part; its figures with `seconds`, or its error (the other parts still run)."""
    say(f"gpu check: {name} ...")
    t0 = time.perf_counter()
    try:
        out = part()
    except Exception as exc:  # noqa: BLE001 - recorded; the next part still runs
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    _release_gpu_memory()
    say(f"gpu check: {name} done in {out['seconds']} s")
    return out


def run(args: argparse.Namespace, say: Callable[[str], None] = lambda _m: None) -> dict:
    from realsyn_assets.core.embedding.runtime import device_report, resolve_device

    device = resolve_device(args.device, "--device")
    smoke = args.smoke or not device.startswith("cuda")
    sizes = SMOKE if smoke else FULL
    workers = _decode_workers(args.workers, smoke)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"embed", "train", "generate"}
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}: use embed, train, generate")
    root = Path(tempfile.mkdtemp(prefix="realsyn-gpu-check-", dir=args.workdir))
    t0 = time.perf_counter()
    report: dict = {"smoke": smoke, **device_report(device), "cpus": os.cpu_count()}
    try:
        jobs = {
            "embed": lambda: embed_part(device, sizes, workers, str(root)),
            "train": lambda: train_part(device, sizes, workers, root),
            "generate": lambda: generate_part(device, sizes, str(root)),
        }
        for name in parts:
            report[name] = _timed(name, jobs[name], say)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["failed"] = [name for name in parts if "error" in report[name]]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    report = run(args, say=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(report)
    if args.out:
        from realsyn_assets.core.io import atomic_write_bytes

        atomic_write_bytes(Path(args.out), (text + "\n").encode())
    print(text, flush=True)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
