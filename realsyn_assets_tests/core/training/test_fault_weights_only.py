"""Checkpoints are read with `torch.load(..., weights_only=True)` (issue 18, failure 7): a file
that carries pickled code is refused, not run, and what the pipeline saves (tensors and plain
containers) loads that way."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch

import realsyn_assets
from realsyn_assets.core.embedding.runtime import atomic_torch_save, load_checkpoint
from realsyn_assets.core.training.evaluate import checkpoint_model_name

PACKAGE = Path(realsyn_assets.__file__).resolve().parent


class _Payload:
    """Unpickling this runs `Path(marker).touch()`: what a hostile checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_fault_corrupt_checkpoint_with_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "checkpoint.pt"
    torch.save({"model_name": "realsyn-tiny", "payload": _Payload(marker)}, hostile)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint_model_name(hostile)
    assert not marker.exists()


def test_fault_saved_checkpoint_state_loads_weights_only(tmp_path):
    """The layout train_clip and the bootstrap trainer save: tensors, str, int, float, lists,
    tuples, dicts, None."""
    state = {
        "state_dict": {"visual.proj": torch.zeros(3, 3)},
        "model_name": "realsyn-tiny",
        "train_config": {"betas": (0.9, 0.98), "max_steps": None, "lr": 1e-3, "precision": "fp32"},
        "steps": 2,
        "losses": [1.5, 1.25],
        "init_checkpoint": None,
    }
    atomic_torch_save(state, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(tmp_path / "checkpoint.pt")
    assert loaded["train_config"] == state["train_config"] and loaded["losses"] == [1.5, 1.25]
    assert checkpoint_model_name(tmp_path / "checkpoint.pt") == "realsyn-tiny"


def _torch_load_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            yield node


def test_fault_every_torch_load_in_the_package_is_weights_only():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for call in _torch_load_calls(ast.parse(path.read_text(), str(path))):
            flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{call.lineno}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"
