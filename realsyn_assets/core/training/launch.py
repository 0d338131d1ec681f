"""Run a training in this process, or data-parallel across N processes through torchrun.

One process (the default) calls `train_clip` directly. More start
``python -m torch.distributed.run --standalone --nproc_per_node N -m
realsyn_assets.core.training.worker --spec ...`` as a subprocess in its own process group: its
output is streamed line by line into `log`, an interruption of the caller stops the whole group,
and a non-zero exit raises `WorkerFailed` carrying the tail of the output. Rank 0 writes the
checkpoint, which the caller then reads back as the TrainResult.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from realsyn_assets.core.embedding.runtime import (
    ENCODER_DEVICE_FIELD,
    load_checkpoint,
    resolve_device,
)
from realsyn_assets.core.training import distributed
from realsyn_assets.core.training.clip import (
    CHECKPOINT_NAME,
    LOSS_PLOT_NAME,
    TrainConfig,
    TrainResult,
    TrainSample,
    train_clip,
)
from realsyn_assets.core.training.worker import RESULT_NAME, write_spec

TAIL_LINES = 60
STOP_GRACE_S = 10.0


class WorkerFailed(RuntimeError):
    """torchrun exited non-zero; `tail` holds the last lines of its output."""

    def __init__(self, returncode: int, tail: str):
        super().__init__(f"training workers exited with code {returncode}:\n{tail}")
        self.returncode = returncode
        self.tail = tail


def torchrun_command(spec: Path | str, nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "realsyn_assets.core.training.worker",
        "--spec",
        str(spec),
    ]


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the launcher's process group, SIGKILL what is left after a grace period."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_streaming(
    command: Sequence[str], log: Callable[[str], None], env: dict | None = None
) -> None:
    """Run `command` in its own process group, each output line into `log`; raise WorkerFailed
    with the output's tail on a non-zero exit; stop the group if the caller is interrupted."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(line)
        returncode = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    if returncode != 0:
        raise WorkerFailed(returncode, "\n".join(tail))


def result_from_checkpoint(out_dir: Path | str, seconds: float, processes: int) -> TrainResult:
    """The TrainResult of a run that another process (torchrun's rank 0) finished in out_dir."""
    out_dir = Path(out_dir)
    state = load_checkpoint(out_dir / CHECKPOINT_NAME)
    summary = json.loads((out_dir / RESULT_NAME).read_text())
    return TrainResult(
        checkpoint_path=out_dir / CHECKPOINT_NAME,
        losses=[float(v) for v in state["losses"]],
        steps=int(state["steps"]),
        seconds=seconds,
        loss_plot_path=out_dir / LOSS_PLOT_NAME,
        lrs=[float(v) for v in state.get("lrs", [])],
        batch_sizes=[int(v) for v in state.get("batch_sizes", [])],
        resumed_from_step=int(summary["resumed_from_step"]),
        processes=processes,
    )


def train(
    samples: Sequence[TrainSample],
    config: TrainConfig,
    out_dir: Path | str,
    nproc_per_node: int = 1,
    log: Callable[[str], None] | None = None,
    init_checkpoint: str | None = None,
) -> TrainResult:
    """Train in-process (1 process) or through torchrun (`nproc_per_node` > 1; 0 = one per GPU)."""
    say = log or (lambda _msg: None)
    nproc = distributed.resolve_nproc(
        nproc_per_node, resolve_device(config.device, ENCODER_DEVICE_FIELD)
    )
    if nproc == 1:
        return train_clip(samples, config, out_dir, init_checkpoint, log=say)
    t0 = time.perf_counter()
    spec = write_spec(samples, config, Path(out_dir), init_checkpoint)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(config.num_threads or 1))
    env["PYTHONUNBUFFERED"] = "1"
    say(f"launching {nproc} training processes through torchrun")
    run_streaming(torchrun_command(spec, nproc), say, env)
    return result_from_checkpoint(out_dir, time.perf_counter() - t0, nproc)
