"""The training worker that torchrun starts once per process:

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m realsyn_assets.core.training.worker --spec OUT_DIR/run_spec.json

The spec (written by `write_spec`) names the training rows (a parquet file), the TrainConfig and
the output folder. Every rank joins the process group, trains its share of each global batch,
and prints one line when it starts and one when it is done; rank 0 also prints the step log and
writes the checkpoints. Without torchrun it trains in this one process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa

from realsyn_assets.core.io import atomic_write_bytes, read_table, write_table
from realsyn_assets.core.training import distributed
from realsyn_assets.core.training.clip import TrainConfig, TrainSample, train_clip

SPEC_NAME = "run_spec.json"
SAMPLES_NAME = "run_samples.parquet"
RESULT_NAME = "run_result.json"  # rank 0's summary, read back by the launcher


def write_spec(
    samples: Sequence[TrainSample],
    config: TrainConfig,
    out_dir: Path,
    init_checkpoint: str | None = None,
) -> Path:
    """Write the rows and the spec a worker reads into out_dir; return the spec's path."""
    out_dir = Path(out_dir)
    rows = pa.table(
        {
            "image_path": [s.image_path for s in samples],
            "texts": pa.array([list(s.texts) for s in samples], pa.list_(pa.string())),
        }
    )
    write_table(rows, out_dir / SAMPLES_NAME)
    spec = {
        "samples": SAMPLES_NAME,
        "config": asdict(config),
        "out_dir": str(out_dir),
        "init_checkpoint": init_checkpoint,
    }
    path = out_dir / SPEC_NAME
    atomic_write_bytes(path, json.dumps(spec, indent=2).encode())
    return path


def read_spec(path: Path) -> tuple[list[TrainSample], TrainConfig, Path, str | None]:
    spec = json.loads(Path(path).read_text())
    rows = read_table(Path(path).parent / spec["samples"]).to_pylist()
    samples = [TrainSample(r["image_path"], list(r["texts"])) for r in rows]
    fields = dict(spec["config"])
    fields["betas"] = tuple(fields["betas"])
    fields["text_columns"] = tuple(fields["text_columns"])
    return samples, TrainConfig(**fields), Path(spec["out_dir"]), spec["init_checkpoint"]


def _print(message: str) -> None:
    """One write per line: lines of several ranks sharing a pipe do not interleave."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, type=Path, help="run_spec.json to train")
    args = parser.parse_args(argv)
    samples, config, out_dir, init_checkpoint = read_spec(args.spec)
    ctx = distributed.context_from_env()
    from realsyn_assets.core.embedding.runtime import ENCODER_DEVICE_FIELD, resolve_device

    device = distributed.rank_device(resolve_device(config.device, ENCODER_DEVICE_FIELD), ctx)
    config = replace(config, device=device)
    tag = f"rank {ctx.rank}/{ctx.world_size}"
    distributed.init_process_group(ctx, device)
    try:
        _print(f"{tag}: started on {device}")
        result = train_clip(samples, config, out_dir, init_checkpoint, log=_print, dist=ctx)
        _print(f"{tag}: done, {result.steps} steps")
        if ctx.is_main:
            summary = {"steps": result.steps, "resumed_from_step": result.resumed_from_step}
            atomic_write_bytes(out_dir / RESULT_NAME, json.dumps(summary).encode())
    finally:
        distributed.destroy_process_group(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
