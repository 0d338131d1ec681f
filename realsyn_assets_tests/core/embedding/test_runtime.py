"""Checkpoint writing: atomic, and the same object gives the same bytes."""

import hashlib

import torch

from realsyn_assets.core.embedding.runtime import atomic_torch_save


def test_same_state_saves_to_identical_bytes(tmp_path):
    state = {"weights": torch.arange(12.0).reshape(3, 4), "steps": 7}
    digests = []
    for name in ("a.pt", "b.pt", "a.pt"):  # another name, and a rewrite in place
        atomic_torch_save(state, tmp_path / name)
        digests.append(hashlib.sha1((tmp_path / name).read_bytes()).hexdigest())
    assert len(set(digests)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]  # no temp files left
    loaded = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(loaded["weights"], state["weights"]) and loaded["steps"] == 7
