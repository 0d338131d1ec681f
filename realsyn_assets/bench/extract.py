"""`realsyn bench extract`: throughput of the extract stage (images and sentences) on CPU.

Prints one JSON object. What it measures, and why this way:

* **image stage** = ``core.images.process_images`` (header-only size checks, JPEG draft decoding,
  EXIF transpose, RGB flattening, Lanczos shrink to ``output_max_side``, pHash, atomic JPEG
  write) with ``workers=1``, i.e. per core;
* **Pillow baseline** = what a plain script does with the *same* bytes in the same run, one core:
  ``Image.open`` + ``convert("RGB")`` + ``resize`` to the same output size + ``save`` JPEG. By
  default it uses the same resampling filter (Lanczos) and JPEG quality as our stage, so the ratio
  compares work, not quality settings; the Pillow-default variant (``resize()`` without a filter
  = bicubic, ``save()`` without quality = 75) is reported alongside. Undecodable files make the
  baseline raise; it catches that and moves on (as a script with ``try/except`` would);
* **sentence stage** = ``split_sentences`` + ``sentence_rejection`` over text blocks, one core,
  and the same work split over worker processes (``core.sentences.split_and_filter_blocks``);
* **2-core speedup** = time with 1 worker / time with 2 worker processes, *including* pool
  start-up and moving inputs/results between processes, as the pipeline pays them. Pool start-up
  is reported on its own (``pool_start_s``): spawn/forkserver workers re-import the parent's
  ``__main__``, so it depends on how the benchmark is launched (``main_module``). Through
  ``realsyn bench extract`` that is the CLI module, which imports Dagster (~2 s per worker);
  ``python -m realsyn_assets.bench.extract`` measures the stage without that launcher cost.

Inputs. By default a generated demo corpus (``--docs``): its image files (small drawings, ~250 px,
plus planted tiny/odd-aspect/corrupt files) and its text blocks. The demo drawings are smaller than
web images, so ``--photos N`` (default 192) also synthesises photo-like JPEGs at web sizes
(640x480 ... 1600x1200: smooth colour field + gradient + edges + sensor-like noise, quality
75-92, ~2 bits/pixel) so that decoding and resizing are measured at realistic cost; numbers are
reported for each set and for both together. Text blocks are cycled until at least
``--min-sentences`` sentences (default 200k, about one real shard) so the measurement is not
dominated by pool start-up (a fixed cost per call, reported as ``pool_start_s``). ``--path DIR`` benchmarks a folder of image files plus the texts of
its ``*.jsonl`` files (keys ``texts`` / ``text_list`` / ``text`` / ``captions``) instead.

Timing: wall clock, best of ``--repeat`` rounds (the machine is shared and noisy); within a round
ours and the baseline run back to back on the same inputs. Single-process runs also record CPU
time (``*_cpu_time`` ratios, ``sentences_per_cpu_s``), which other jobs on the machine disturb
far less than wall time. Load average is recorded: with a load above the core count, the 2-core
speedups measure the neighbours, not the code.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from realsyn_assets.core import pools
from realsyn_assets.core.images import extract as image_core
from realsyn_assets.core.text import sentences as sentence_core

split_blocks = sentence_core.split_and_filter_blocks
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".bin"}
TEXT_KEYS = ("texts", "text_list", "text", "captions", "caption")
# Web-sized shapes for the synthetic photos (landscape and portrait, 0.3 to 1.9 Mpx).
PHOTO_SIZES = ((640, 480), (800, 600), (1024, 768), (480, 640), (1280, 960), (1600, 1200))
TARGETS = {
    "image_ratio_vs_pillow": 0.8,
    "sentences_per_s_per_core": 50_000.0,
    "two_core_speedup_images": 1.7,
    "two_core_speedup_sentences": 1.7,
}


# --------------------------------------------------------------------------- inputs


@dataclass
class ImageSet:
    """Named list of raw image bytes (bytes are preloaded: disk reads are not measured)."""

    name: str
    data: list[bytes]
    description: str
    pixels: int = 0  # total header pixels of the decodable images

    def __len__(self) -> int:
        return len(self.data)


@dataclass
class Inputs:
    image_sets: list[ImageSet]
    text_blocks: list[str]
    description: dict = field(default_factory=dict)


def synth_photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG: smooth colour field + gradient + hard edges + noise (deterministic).

    Why not plain noise: white noise is unlike photos (~8 bits/pixel, pathological for JPEG).
    Smooth regions with some edges and mild grain give the ~1.5-3 bits/pixel of web photos, so the
    entropy decoder does a realistic amount of work.
    """
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (height // 48 + 2, width // 48 + 2, 3)).astype(np.uint8)
    field_ = np.asarray(
        Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), np.float32
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)[..., None]
    tint = rng.uniform(-60, 60, 3).astype(np.float32)
    arr = 0.8 * field_ + ramp * tint
    for _ in range(int(rng.integers(3, 8))):  # a few flat rectangles: sharp edges
        x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        x1 = int(min(width, x0 + rng.integers(8, max(9, width // 3))))
        y1 = int(min(height, y0 + rng.integers(8, max(9, height // 3))))
        arr[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
    arr += rng.normal(0.0, 6.0, arr.shape).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(75, 93)))
    return buf.getvalue()


def photo_set(n: int, seed: int = 0) -> ImageSet:
    data = [synth_photo(*PHOTO_SIZES[i % len(PHOTO_SIZES)], seed * 100_003 + i) for i in range(n)]
    shapes = Counter(f"{w}x{h}" for w, h in (PHOTO_SIZES[i % len(PHOTO_SIZES)] for i in range(n)))
    desc = (
        f"{n} synthetic photo-like JPEGs (smooth colour field + gradient + edges + noise, "
        f"quality 75-92), sizes {dict(shapes)}"
    )
    return ImageSet("photos", data, desc)


def _texts_from_value(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.strip()]
    return []


def texts_from_jsonl(path: Path) -> list[str]:
    """Text blocks of a jsonl file, whatever the layout (OBELICS, MMC4, captions, plain text)."""
    out: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            for key in TEXT_KEYS:
                out.extend(_texts_from_value(record.get(key)))
    return out


def _header_pixels(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width * img.height
    except Exception:
        return 0


def _finish_set(image_set: ImageSet) -> ImageSet:
    image_set.pixels = sum(_header_pixels(d) for d in image_set.data)
    return image_set


def demo_inputs(work: Path, docs: int, shards: int, seed: int, photos: int) -> Inputs:
    from realsyn_assets.core.ingest.documents import read_shard
    from realsyn_assets.demo.corpus import generate_demo_corpus

    corpus = generate_demo_corpus(
        work / "corpus", n_docs=docs, n_shards=min(shards, docs), seed=seed
    )
    files = sorted(p for p in (corpus.root / "images").iterdir() if p.is_file())
    demo = ImageSet(
        "demo",
        [p.read_bytes() for p in files],
        f"{len(files)} image files of the demo corpus (procedural drawings ~150-320 px incl. "
        "planted tiny / extreme-aspect / corrupt / duplicate files)",
    )
    blocks: list[str] = []
    for shard in corpus.shard_paths:
        items = read_shard(shard).items
        kinds = items.column("kind").to_pylist()
        for kind, text in zip(kinds, items.column("text").to_pylist(), strict=True):
            if kind == "text" and text:
                blocks.append(text)
    sets = [_finish_set(demo)]
    if photos > 0:
        sets.append(_finish_set(photo_set(photos, seed)))
    desc = {"kind": "demo_corpus", "docs": docs, "shards": min(shards, docs), "seed": seed}
    return Inputs(sets, blocks, desc)


def path_inputs(root: Path, texts: Path | None, photos: int, seed: int) -> Inputs:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    sets = [
        _finish_set(
            ImageSet("path", [p.read_bytes() for p in files], f"{len(files)} files under {root}")
        )
    ]
    if photos > 0:
        sets.append(_finish_set(photo_set(photos, seed)))
    text_files = [texts] if texts is not None else sorted(root.glob("*.jsonl"))
    blocks: list[str] = []
    for path in text_files:
        blocks.extend(texts_from_jsonl(path))
    desc = {"kind": "path", "path": str(root), "text_files": [str(p) for p in text_files]}
    return Inputs(sets, blocks, desc)


# --------------------------------------------------------------------------- image work


def pillow_baseline(
    data: Sequence[bytes], out_dir: Path, max_side: int, resample: int | None, quality: int | None
) -> int:
    """Plain Pillow: open, convert('RGB'), resize to our output size, save JPEG. Returns failures."""
    failures = 0
    for k, raw in enumerate(data):
        try:
            img = Image.open(io.BytesIO(raw)).convert("RGB")
            size = image_core._output_size(img.width, img.height, max_side)
            img = img.resize(size) if resample is None else img.resize(size, resample)
            path = out_dir / f"{k}.jpg"
            if quality is None:
                img.save(path, format="JPEG")
            else:
                img.save(path, format="JPEG", quality=quality)
        except Exception:
            failures += 1
    return failures


def run_image_stage(
    data: Sequence[bytes], out_dir: Path, workers: int, config: image_core.ImageFilterConfig
) -> list[image_core.ImageResult]:
    items = [(raw, out_dir / f"{k}.jpg") for k, raw in enumerate(data)]
    chunksize = max(1, min(16, math.ceil(len(items) / (4 * max(1, workers)))))
    return image_core.process_images(items, config, workers=workers, chunksize=chunksize)


# --------------------------------------------------------------------------- sentence work


def replicate_blocks(blocks: list[str], min_sentences: int) -> tuple[list[str], int, int]:
    """Cycle ``blocks`` until they hold >= min_sentences sentences: (blocks, copies, sentences)."""
    per_copy = sum(len(sentence_core.split_sentences(b)) for b in blocks)
    if per_copy == 0:
        return blocks, 1, 0
    copies = max(1, math.ceil(min_sentences / per_copy))
    return blocks * copies, copies, per_copy * copies


# --------------------------------------------------------------------------- timing


def _timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result). CPU time is what a single-process
    measurement costs even when other jobs share the cores; wall time is what the user waits."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _round(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits + 3}g}") if math.isfinite(x) else x


def _noop(_: int) -> int:
    return os.getpid()


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def machine_speedup_ceiling(workers: int, n: int = 2_000_000) -> float:
    """Speedup of a pure-Python loop on ``workers`` processes of an already running pool.

    What the machine itself allows right now: no I/O, no pickling, no pool start. On a shared
    machine the stage speedups should be read against this number, not against ``workers``.
    """
    if workers <= 1:
        return 1.0
    with ProcessPoolExecutor(max_workers=workers, mp_context=pools.worker_context()) as pool:
        list(pool.map(_noop, range(workers)))  # start the workers outside the timing
        start = time.perf_counter()
        for _ in range(workers):
            _burn(n)
        serial = time.perf_counter() - start
        start = time.perf_counter()
        list(pool.map(_burn, [n] * workers))
        parallel = time.perf_counter() - start
    return serial / parallel


def pool_start_seconds(workers: int) -> float:
    """Wall time for a fresh pool of ``workers`` processes to run one no-op task each.

    This is the fixed cost ``process_images`` pays on every call: each worker is forked from the
    fork server and then, like any spawn/forkserver child, re-imports the parent's ``__main__``
    module (for ``python -m realsyn_assets.cli`` that module imports Dagster, ~2 s of CPU per
    worker; for ``python -m realsyn_assets.bench.extract`` only numpy + Pillow).
    """
    if workers <= 1:
        return 0.0
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=pools.worker_context()) as pool:
        list(pool.map(_noop, range(workers)))
    return time.perf_counter() - start


def run_benchmark(inputs: Inputs, work: Path, repeat: int, workers: int) -> dict:
    config = image_core.ImageFilterConfig()
    lanczos = Image.Resampling.LANCZOS
    sets = [s for s in inputs.image_sets if len(s)]
    all_data = [raw for s in sets for raw in s.data]
    load_before = os.getloadavg()
    pool_cold = pool_start_seconds(workers)  # also starts the fork server: not in the timings
    pool_warm = min(pool_start_seconds(workers) for _ in range(2))
    ceiling = 0.0

    best: dict[str, float] = {}

    best_cpu: dict[str, float] = {}

    def keep_best(key: str, seconds: float, cpu: float | None = None) -> None:
        best[key] = min(best.get(key, math.inf), seconds)
        if cpu is not None:
            best_cpu[key] = min(best_cpu.get(key, math.inf), cpu)

    results_by_set: dict[str, list[image_core.ImageResult]] = {}
    failures_by_set: dict[str, int] = {}
    blocks = inputs.text_blocks
    sentence_counts: Counter = Counter()
    sentence_rows = 0

    for round_ in range(max(1, repeat)):
        # Fresh folders every round: both sides create new files (overwriting an existing file
        # costs more than creating one on ext4), and disk use stays at one round.
        round_dir = work / f"round{round_}"
        ours_dir, base_dir, par_dir = round_dir / "ours", round_dir / "base", round_dir / "par"
        for d in (ours_dir, base_dir / "lanczos", base_dir / "default", par_dir):
            d.mkdir(parents=True, exist_ok=True)
        ours_total = base_total = default_total = ours_cpu = base_cpu = 0.0
        for s in sets:
            dt, cpu, res = _timed(lambda s=s, d=ours_dir: run_image_stage(s.data, d, 1, config))
            results_by_set[s.name] = res  # type: ignore[assignment]
            keep_best(f"ours:{s.name}", dt, cpu)
            ours_total += dt
            ours_cpu += cpu
            args = (
                s.data,
                base_dir / "lanczos",
                config.output_max_side,
                lanczos,
                config.jpeg_quality,
            )
            dt, cpu, fails = _timed(lambda args=args: pillow_baseline(*args))
            failures_by_set[s.name] = int(fails)  # type: ignore[arg-type]
            keep_best(f"base:{s.name}", dt, cpu)
            base_total += dt
            base_cpu += cpu
            args = (s.data, base_dir / "default", config.output_max_side, None, None)
            dt, _, _ = _timed(lambda args=args: pillow_baseline(*args))
            keep_best(f"default:{s.name}", dt)
            default_total += dt
        keep_best("ours:all", ours_total, ours_cpu)
        keep_best("base:all", base_total, base_cpu)
        keep_best("default:all", default_total)
        if workers > 1 and all_data:
            dt, _, _ = _timed(lambda d=par_dir: run_image_stage(all_data, d, workers, config))
            keep_best("ours_par:all", dt)

        if blocks:
            dt, cpu, rows = _timed(lambda: split_blocks(blocks, workers=1))
            keep_best("sent:1", dt, cpu)
            sentence_rows = len(rows.sentences)  # type: ignore[union-attr]
            sentence_counts = Counter(rows.reasons)  # type: ignore[union-attr]
            if workers > 1:
                dt, _, rows_par = _timed(
                    lambda: split_blocks(blocks, workers=workers, min_blocks=0)
                )
                keep_best("sent:par", dt)
                if rows_par != rows:
                    raise RuntimeError("parallel sentence stage disagrees with the serial one")
        if workers > 1:
            ceiling = max(ceiling, machine_speedup_ceiling(workers))
        shutil.rmtree(round_dir, ignore_errors=True)

    n_images = len(all_data)
    kept = sum(r.kept for res in results_by_set.values() for r in res)
    breakdown = {}
    for s in sets:
        ours = _rate(len(s), best[f"ours:{s.name}"])
        base = _rate(len(s), best[f"base:{s.name}"])
        default = _rate(len(s), best[f"default:{s.name}"])
        breakdown[s.name] = {
            "images": len(s),
            "kept": sum(r.kept for r in results_by_set[s.name]),
            "megapixels": _round(s.pixels / 1e6),
            "description": s.description,
            "image_per_s_per_core": _round(ours),
            "pillow_baseline_per_s_per_core": _round(base),
            "image_ratio_vs_pillow": _round(ours / base),
            "image_ratio_vs_pillow_cpu_time": _round(
                best_cpu[f"base:{s.name}"] / best_cpu[f"ours:{s.name}"]
            ),
            "pillow_default_per_s_per_core": _round(default),
            "image_ratio_vs_pillow_default": _round(ours / default),
            "pillow_failures": failures_by_set[s.name],
        }
    reasons = Counter(r.reason for res in results_by_set.values() for r in res if not r.kept)

    out: dict = {"benchmark": "extract"}
    if n_images:
        ours_rate = _rate(n_images, best["ours:all"])
        base_rate = _rate(n_images, best["base:all"])
        default_rate = _rate(n_images, best["default:all"])
        out.update(
            {
                "images": n_images,
                "images_kept": kept,
                "image_rejections": dict(sorted(reasons.items())),
                "image_per_s_per_core": _round(ours_rate),
                "pillow_baseline_per_s_per_core": _round(base_rate),
                "image_ratio_vs_pillow": _round(ours_rate / base_rate),
                "pillow_default_per_s_per_core": _round(default_rate),
                "image_ratio_vs_pillow_default": _round(ours_rate / default_rate),
                "image_ratio_vs_pillow_cpu_time": _round(
                    best_cpu["base:all"] / best_cpu["ours:all"]
                ),
                "image_megapixels_per_s_per_core": _round(
                    sum(s.pixels for s in sets) / 1e6 / best["ours:all"]
                ),
            }
        )
        if workers > 1:
            par = best["ours_par:all"]
            out["image_per_s_workers"] = _round(_rate(n_images, par))
            out["two_core_speedup_images"] = _round(best["ours:all"] / par)
    if blocks:
        out.update(
            {
                "sentences": sentence_rows,
                "sentences_kept": sentence_counts.get(None, 0),
                "sentence_rejections": {
                    str(k): v for k, v in sorted(sentence_counts.items(), key=str) if k is not None
                },
                "text_blocks": len(blocks),
                "sentences_per_s_per_core": _round(_rate(sentence_rows, best["sent:1"])),
                "sentences_per_cpu_s": _round(_rate(sentence_rows, best_cpu["sent:1"])),
            }
        )
        if workers > 1:
            out["sentences_per_s_workers"] = _round(_rate(sentence_rows, best["sent:par"]))
            out["two_core_speedup_sentences"] = _round(best["sent:1"] / best["sent:par"])
    out["image_breakdown"] = breakdown
    out["pillow_baseline"] = (
        f"Image.open(BytesIO) + convert('RGB') + resize(same size as ours, LANCZOS) + "
        f"save(JPEG, quality={config.jpeg_quality}) on the same bytes, 1 process; the "
        "'pillow_default' variant uses resize() and save() defaults (bicubic, quality 75)"
    )
    out["image_stage"] = (
        f"core.images.process_images(workers=1), output_max_side={config.output_max_side}, "
        f"jpeg_quality={config.jpeg_quality}, atomic JPEG write + pHash"
    )
    out["workers"] = workers
    out["cpu_count"] = os.cpu_count()
    out["repeat"] = max(1, repeat)
    out["timing"] = (
        "wall clock, best of `repeat` rounds; parallel times include starting the worker pool "
        "(see pool_start_s; the fork server itself is started before timing: pool_cold_start_s)"
    )
    out["pool_cold_start_s"] = round(pool_cold, 3)
    if workers > 1:
        out["machine_speedup_ceiling"] = _round(ceiling)
        out["machine_speedup_ceiling_note"] = (
            f"best speedup of a pure-Python loop on {workers} processes of a warm pool in the same "
            "run: what the (shared) machine allowed; compare the stage speedups with it"
        )
    out["pool_start_s"] = round(pool_warm, 3)
    main_module = sys.modules.get("__main__")
    main_spec = getattr(main_module, "__spec__", None)
    out["main_module"] = main_spec.name if main_spec else getattr(main_module, "__file__", None)
    out["forkserver_preload"] = (
        pools.STAGE_MODULES if pools.default_start_method() == "forkserver" else []
    )
    out["load_average_before"] = [round(x, 2) for x in load_before]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out["best_seconds"] = {k: round(v, 4) for k, v in sorted(best.items())}
    out["best_cpu_seconds"] = {k: round(v, 4) for k, v in sorted(best_cpu.items())}
    out["targets"] = TARGETS
    out["meets_targets"] = {
        key: bool(out[key] >= target) for key, target in TARGETS.items() if key in out
    }
    return out


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench extract", description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=240, help="demo corpus documents (default 240)")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--photos",
        type=int,
        default=None,
        help="synthetic web-sized photo JPEGs to add (default 192 for the demo corpus, 0 with --path)",
    )
    p.add_argument("--path", type=Path, default=None, help="folder of images + *.jsonl texts")
    p.add_argument("--texts", type=Path, default=None, help="jsonl of texts (with --path)")
    p.add_argument(
        "--min-sentences",
        type=int,
        default=200_000,
        help="cycle the text blocks until they hold at least this many sentences (default 200k)",
    )
    p.add_argument("--repeat", type=int, default=3, help="rounds; the best is reported")
    p.add_argument("--workers", type=int, default=2, help="processes for the speedup measurement")
    p.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temp)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv if argv is not None else sys.argv[1:])
    if args.path is not None and not args.path.is_dir():
        print(f"--path {args.path} is not a folder", file=sys.stderr)
        return 2
    work = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="bench_extract_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.path is not None:
            photos = args.photos if args.photos is not None else 0
            inputs = path_inputs(args.path, args.texts, photos, args.seed)
        else:
            photos = args.photos if args.photos is not None else 192
            inputs = demo_inputs(work, args.docs, args.shards, args.seed, photos)
        base_blocks = len(inputs.text_blocks)
        inputs.text_blocks, copies, _ = replicate_blocks(inputs.text_blocks, args.min_sentences)
        inputs.description.update(
            {
                "image_sets": {s.name: s.description for s in inputs.image_sets},
                "text_blocks_distinct": base_blocks,
                "text_block_copies": copies,
                "text_note": f"text blocks cycled {copies}x to reach >= {args.min_sentences} "
                "sentences (about one shard)",
            }
        )
        result = run_benchmark(inputs, work, args.repeat, args.workers)
        result["input"] = inputs.description
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
