"""`realsyn bench embed`: the image-embedding asset's whole path vs the model alone.

The `image_embeddings` asset reads the kept image paths of a shard (parquet), encodes them with
`Encoder.encode_images` (read + decode + preprocess in a torch DataLoader, then the model) and
writes the vectors to LanceDB (`VectorStoreResource.replace_shard`). This benchmark runs exactly
that on real JPEG files written to a temp dir, and in the same process the same model on
tensors that were decoded and preprocessed beforehand. `ratio = images_per_s /
model_only_images_per_s` says how much of the model's speed the pipeline keeps: 1.0 means
reading, decoding and writing cost nothing on top (fully overlapped or negligible).

`--device` (default auto: CUDA when present) and `--precision` (autocast on CUDA) are the
encoder resource's settings; the JSON names the device, torch and CUDA versions and the GPU.
Weights are random (local, created once in the weights dir) unless the model's config is
ours and trained weights are given: speed does not depend on weight values. Each measurement
is repeated `--repeats` times as back-to-back pairs (whole path and model only, order alternating), after one
warm-up of each. On a shared machine the load drifts by 2x within minutes, so `ratio` is the median over
pairs of model-only time / whole-path time (each pair ran back to back, so drift cancels);
throughputs are medians; `best_of_ratio` compares the best run of each.
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

from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec
from realsyn_assets.core.embedding.images import load_rgb
from realsyn_assets.core.embedding.runtime import (
    autocast_context,
    device_report,
    resolve_device,
    torch_threads,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench embed", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name (random weights)")
    p.add_argument("--images", type=int, default=256, help="JPEG files (one whole-path call)")
    p.add_argument("--size", default="320x240", help="image size WxH")
    p.add_argument(
        "--device",
        default="auto",
        help='torch device: "auto" (cuda when present), "cpu", "cuda", "cuda:N"',
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="autocast precision on CUDA (the CPU always runs fp32)",
    )
    p.add_argument("--batch-size", type=int, default=EncoderSpec.batch_size)
    p.add_argument(
        "--num-workers",
        type=int,
        default=EncoderSpec.num_workers,
        help="DataLoader decode workers (default: the encoder resource's default)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--weights-dir", default=None, help="reuse local random weights (temp dir)")
    p.add_argument("--workdir", default=None, help="where images and LanceDB go (temp dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-store",
        action="store_true",
        help="leave out the LanceDB write (machines without lancedb/dagster): read + encode",
    )
    return p


def make_jpegs(folder: Path, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """`n` photo-like JPEGs (smooth colour fields + texture + noise), quality 90 like extract.

    Pure noise would make decoding unrealistically slow and flat colour unrealistically fast;
    this lands at typical photo sizes for the resolution (~20-40 KB at 320x240).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(n):
        coarse = rng.uniform(0, 255, (4, 5, 3)).astype(np.uint8)
        base = np.asarray(
            Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC),
            dtype=np.float32,
        )
        fx, fy, ph = rng.uniform(0.02, 0.2), rng.uniform(0.02, 0.2), rng.uniform(0, 6.3)
        texture = 25 * np.sin(fx * xx + fy * yy + ph)[..., None]
        noise = rng.normal(0, 8, (height, width, 3))
        img = np.clip(base + texture + noise, 0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(img).save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


def _write_paths_table(paths: list[Path], path: Path) -> None:
    """The columns `image_embeddings` reads from `extracted_images`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from realsyn_assets.core.ids import image_id

    table = pa.table(
        {
            "image_id": [image_id(p.read_bytes()) for p in paths],
            "shard": ["bench"] * len(paths),
            "doc_id": [f"doc{i // 4}" for i in range(len(paths))],
            "position": pa.array([i % 4 for i in range(len(paths))], pa.int32()),
            "path": [str(p) for p in paths],
        }
    )
    pq.write_table(table, path)


def whole_path(encoder: Encoder, table_path: Path, lancedb_uri: str | None) -> dict:
    """What `image_embeddings` does for one shard: read paths, encode, write to LanceDB
    (`lancedb_uri` None: no write)."""
    from realsyn_assets.core.io import read_table

    t0 = time.perf_counter()
    images = read_table(table_path, columns=["image_id", "shard", "doc_id", "position", "path"])
    t1 = time.perf_counter()
    vecs = encoder.encode_images(images.column("path").to_pylist())
    t2 = time.perf_counter()
    if lancedb_uri is not None:
        from realsyn_assets.resources.vectors import VectorStoreResource, vectors_column

        table = images.append_column("vector", vectors_column(vecs))
        VectorStoreResource(uri=lancedb_uri).replace_shard("images", "bench", table)
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "encode_s": t2 - t1, "write_s": t3 - t2, "total_s": t3 - t0}


def model_only(encoder: Encoder, batches: list, threads: int | None) -> float:
    """Seconds for the model alone on ready tensors (same threads, no-grad mode, device and
    precision as the encoder; the copy of each batch to the device is included)."""
    import torch

    model, _, _ = encoder.model_and_transforms()
    device = encoder.device
    t0 = time.perf_counter()
    with (
        torch_threads(threads),
        torch.inference_mode(),
        autocast_context(device, encoder.spec.precision),
    ):
        for batch in batches:
            feats = model.encode_image(batch.to(device, non_blocking=True))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1).cpu()
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict:
    import torch

    width, height = (int(v) for v in args.size.lower().split("x"))
    threads = args.threads or None
    device = resolve_device(args.device, "--device")
    root = Path(tempfile.mkdtemp(prefix="realsyn-bench-embed-", dir=args.workdir))
    try:
        paths = make_jpegs(root / "images", args.images, width, height, args.seed)
        table_path = root / "extracted_images.parquet"
        _write_paths_table(paths, table_path)
        weights_dir = Path(args.weights_dir) if args.weights_dir else root / "models"
        spec = EncoderSpec(
            model_name=args.model,
            device=device,
            precision=args.precision,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            num_threads=threads,
        )
        encoder = Encoder(spec, weights_dir)
        t0 = time.perf_counter()
        model, preprocess, _ = encoder.model_and_transforms()
        load_s = time.perf_counter() - t0

        # Pre-decode + preprocess once (the model-only input), timing it as a reference.
        t0 = time.perf_counter()
        tensors = [preprocess(load_rgb(p)) for p in paths]
        decode_s = time.perf_counter() - t0
        bs = args.batch_size
        batches = [torch.stack(tensors[i : i + bs]) for i in range(0, len(tensors), bs)]
        if device.startswith("cuda"):  # page-locked, as the encoder's DataLoader delivers them
            batches = [b.pin_memory() for b in batches]
        del tensors

        # Warm-up both paths (imports, first-call allocations, oneDNN primitive creation).
        warm = root / "warmup.parquet"
        _write_paths_table(paths[: min(len(paths), bs)], warm)
        store = not args.no_store
        whole_path(encoder, warm, str(root / "lancedb-warmup") if store else None)
        model_only(encoder, batches[:1], threads)

        runs = []
        for r in range(max(1, args.repeats)):
            lance = str(root / f"lancedb{r}") if store else None
            if r % 2 == 0:  # alternate the order within pairs so a load trend cancels too
                whole = whole_path(encoder, table_path, lance)
                alone = model_only(encoder, batches, threads)
            else:
                alone = model_only(encoder, batches, threads)
                whole = whole_path(encoder, table_path, lance)
            runs.append({**{k: round(v, 3) for k, v in whole.items()}, "model_only_s": alone})
        whole_s = [r["total_s"] for r in runs]
        alone_s = [r["model_only_s"] for r in runs]
        pair_ratios = [a / w for a, w in zip(alone_s, whole_s, strict=True)]
        n = len(paths)
        return {
            "model": args.model,
            "images": n,
            "image_size": f"{width}x{height}",
            "batch_size": bs,
            "precision": args.precision if device.startswith("cuda") else "fp32",
            **device_report(device),
            "num_workers": args.num_workers,
            "lancedb_write": not args.no_store,
            "torch_threads": torch.get_num_threads() if threads is None else threads,
            "images_per_s": round(n / float(np.median(whole_s)), 2),
            "model_only_images_per_s": round(n / float(np.median(alone_s)), 2),
            "ratio": round(float(np.median(pair_ratios)), 3),
            "best_of_ratio": round(min(alone_s) / min(whole_s), 3),
            "decode_preprocess_images_per_s": round(n / decode_s, 1),
            "model_load_s": round(load_s, 2),
            "runs": [{**r, "model_only_s": round(r["model_only_s"], 3)} for r in runs],
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
