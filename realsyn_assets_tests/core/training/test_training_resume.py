"""A training run killed with SIGKILL after a periodic checkpoint resumes from it and ends with
exactly the weights of an uninterrupted run; a changed config or changed rows start over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

from realsyn_assets.core.training import checkpoints
from realsyn_assets.core.training.clip import CHECKPOINT_NAME, TrainConfig, train_clip
from realsyn_assets.core.training.worker import write_spec
from realsyn_assets_tests.core.training.test_clip import make_shapes

pytestmark = pytest.mark.slow

# 40 samples, batch 8: 5 steps per epoch, 15 steps; a resume file every 2 steps.
CONFIG = TrainConfig(epochs=3, batch_size=8, num_threads=1, checkpoint_every_steps=2)
KILL_AT = "checkpoint: step 2/15"


def _killed_run(samples, out_dir) -> list[str]:
    """Start the worker as its own process, SIGKILL it as soon as it reports its first periodic
    checkpoint, and return the lines it printed."""
    spec = write_spec(samples, CONFIG, out_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "realsyn_assets.core.training.worker", "--spec", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(KILL_AT):
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, lines
    return lines


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    import torch

    samples = make_shapes(tmp_path / "images", n=40)
    whole = train_clip(samples, CONFIG, tmp_path / "whole")
    assert whole.steps == 15 and whole.resumed_from_step == 0

    out = tmp_path / "killed"
    lines = _killed_run(samples, out)
    assert any(line.startswith("rank 0/1: started") for line in lines), lines
    assert not (out / CHECKPOINT_NAME).exists()  # killed before the end
    partial = torch.load(out / checkpoints.RESUME_NAME, map_location="cpu", weights_only=True)
    assert partial["step"] == 2 and len(partial["losses"]) == 2

    messages: list[str] = []
    resumed = train_clip(samples, CONFIG, out, log=messages.append)
    assert "resuming from resume.pt at step 2" in messages, messages
    assert resumed.resumed_from_step == 2 and resumed.steps == 15
    assert resumed.losses == whole.losses
    a = checkpoints.load_weights(whole.checkpoint_path)
    b = checkpoints.load_weights(resumed.checkpoint_path)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the resume file at the end holds the same weights; every file loads weights_only
    final = checkpoints.load_weights(out / checkpoints.RESUME_NAME)
    assert all(torch.equal(a[k], final[k]) for k in a)

    # a changed config starts over, and says so
    messages.clear()
    changed = train_clip(samples, replace(CONFIG, lr=5e-4, max_steps=3), out, log=messages.append)
    assert changed.resumed_from_step == 0 and changed.steps == 3
    assert any("other config: starting over" in m for m in messages), messages
    # so do changed training rows
    messages.clear()
    fewer = replace(CONFIG, lr=5e-4, max_steps=3)
    train_clip(samples[:-1], fewer, out, log=messages.append)
    assert any("other training rows: starting over" in m for m in messages), messages
    # runtime settings (workers, logging, checkpoint period) do not change the run
    messages.clear()
    again = train_clip(
        samples[:-1],
        replace(fewer, log_every=1, checkpoint_every_steps=0),
        out,
        log=messages.append,
    )
    assert again.resumed_from_step == 3 and "resuming from resume.pt at step 3" in messages
