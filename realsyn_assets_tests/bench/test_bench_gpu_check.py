"""`realsyn bench gpu --smoke`: the prepared GPU check runs whole on a CPU at tiny sizes."""

from __future__ import annotations

import json

import pytest

from realsyn_assets.bench import gpu_check
from realsyn_assets.cli import main as cli


@pytest.mark.slow
def test_gpu_check_smoke_writes_one_json_with_every_part(capsys, tmp_path):
    out_file = tmp_path / "gpu.json"
    argv = ["bench", "gpu", "--smoke", "--device", "cpu", "--workdir", str(tmp_path)]
    assert cli([*argv, "--out", str(out_file)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads(out_file.read_text()) == printed
    assert printed["smoke"] is True and printed["device"] == "cpu" and printed["failed"] == []
    embed, train = printed["embed"], printed["train"]
    assert embed["model"] == "realsyn-tiny" and embed["images_per_s"] > 0
    assert "goal_met" not in embed  # the goal is judged on ViT-B-32 on CUDA only
    assert train["steps"] == 4 and train["samples_per_s"] > 0
    assert "skipped" in printed["generate"] or printed["generate"]["texts_per_s"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.json"]  # temp files removed


def test_a_failing_part_is_recorded_and_the_others_run(monkeypatch, capsys, tmp_path):
    def broken(*_args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(gpu_check, "embed_part", broken)
    argv = ["bench", "gpu", "--device", "cpu", "--parts", "embed,generate"]
    assert cli([*argv, "--workdir", str(tmp_path)]) == 1
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["failed"] == ["embed"] and "out of memory" in printed["embed"]["error"]
    assert "generate" in printed and "error" not in printed["generate"]


def test_full_sizes_are_the_documented_gpu_check():
    assert gpu_check.FULL["model"] == "ViT-B-32" and gpu_check.FULL["images"] == 2048
    assert gpu_check.FULL["embed_batch"] == 256 and gpu_check.EMBED_GOAL_IMAGES_PER_S == 2500
