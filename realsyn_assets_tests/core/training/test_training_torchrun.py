"""Data-parallel training through torchrun on the CPU (gloo): both ranks train, rank 0 writes,
the first step's loss equals the single-process loss over the same global batch; and a failing
launch becomes an error carrying the tail of its output."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from realsyn_assets.core.training import checkpoints, launch
from realsyn_assets.core.training.clip import TrainConfig, loss_first_last, train_clip
from realsyn_assets_tests.core.training.test_clip import make_shapes

CONFIG = TrainConfig(epochs=6, batch_size=8, num_threads=1, checkpoint_every_steps=4)


@pytest.mark.slow
def test_two_cpu_processes_train_through_torchrun(tmp_path):
    import torch

    samples = make_shapes(tmp_path / "images", n=16)
    lines: list[str] = []
    result = launch.train(samples, CONFIG, tmp_path / "ddp", nproc_per_node=2, log=lines.append)

    for rank in (0, 1):
        assert any(line.startswith(f"rank {rank}/2: started on cpu") for line in lines), lines
        assert any(line.startswith(f"rank {rank}/2: done, 12 steps") for line in lines), lines
    assert any("x 2 processes" in line for line in lines), lines
    assert result.processes == 2 and result.steps == 12 and len(result.losses) == 12
    first, last = loss_first_last(result.losses)
    assert last < first, result.losses
    assert result.checkpoint_path.exists() and (tmp_path / "ddp" / "loss.png").exists()
    resume = torch.load(
        tmp_path / "ddp" / checkpoints.RESUME_NAME, map_location="cpu", weights_only=True
    )
    assert resume["step"] == 12
    assert checkpoints.load_weights(result.checkpoint_path).keys() == resume["model"].keys()

    # the gathered loss over two half batches is the loss over the whole global batch
    single = train_clip(samples, replace(CONFIG, max_steps=1), tmp_path / "single")
    assert result.losses[0] == pytest.approx(single.losses[0], abs=1e-4)


def test_failing_launch_raises_with_the_tail_of_its_output():
    script = "import sys\nfor i in range(100): print('line', i)\nsys.exit(3)"
    lines: list[str] = []
    with pytest.raises(launch.WorkerFailed) as caught:
        launch.run_streaming([sys.executable, "-c", script], lines.append, env=None)
    assert caught.value.returncode == 3
    assert len(lines) == 100  # every line streamed to the log
    tail = caught.value.tail.splitlines()
    assert tail[-1] == "line 99" and len(tail) == launch.TAIL_LINES


def test_torchrun_command_and_process_count():
    from realsyn_assets.core.training.distributed import resolve_nproc

    command = launch.torchrun_command("spec.json", 2)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[-3:] == ["realsyn_assets.core.training.worker", "--spec", "spec.json"]
    assert resolve_nproc(3, "cpu") == 3
    assert resolve_nproc(0, "cpu") == 1  # "all GPUs" on a machine without one
    with pytest.raises(ValueError, match="nproc_per_node"):
        resolve_nproc(-1, "cpu")
