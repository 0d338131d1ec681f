"""Resumable training: the periodic resume checkpoint, the run fingerprint, and weight loading.

A run's data order, caption draws and crops are pure functions of (seed, epoch, index), so the
resume file needs only the model, optimizer, scheduler and grad-scaler states, the step, the
losses so far and torch's RNG state (for anything else that draws, e.g. dropout). It is written
atomically every ``checkpoint_every_steps`` and at the end; a rerun continues from it when its
fingerprint (hash of the result-shaping config + hash of the training rows) matches, and starts
over, saying why, when it does not. Everything saved is tensors, numbers, strings and plain
containers, so every checkpoint loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realsyn_assets.core.embedding.runtime import atomic_torch_save, load_checkpoint

if TYPE_CHECKING:
    import torch

RESUME_NAME = "resume.pt"
# TrainConfig fields that change how a run executes but not what it computes.
RUNTIME_FIELDS = frozenset(
    {"num_workers", "device", "log_every", "num_threads", "checkpoint_every_steps"}
)


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def config_hash(config: Any, init_checkpoint: str | None = None) -> str:
    """Hash of the fields of a TrainConfig that shape the result (not workers, device, logging)."""
    fields = {k: v for k, v in asdict(config).items() if k not in RUNTIME_FIELDS}
    return _sha256({"config": fields, "init_checkpoint": init_checkpoint})


def rows_hash(samples: Sequence[Any]) -> str:
    """Hash of the training rows in order: image path and candidate captions of each sample."""
    digest = hashlib.sha256()
    for s in samples:
        digest.update(json.dumps([s.image_path, list(s.texts)]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def fingerprint(config: Any, samples: Sequence[Any], init_checkpoint: str | None) -> dict:
    return {"config": config_hash(config, init_checkpoint), "rows": rows_hash(samples)}


def _rng_state(device: str) -> dict:
    import torch

    state = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def save_resume(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    scaler,
    step: int,
    losses: Sequence[float],
    lrs: Sequence[float],
    batch_sizes: Sequence[int],
    run_fingerprint: dict,
    device: str,
) -> None:
    """The full training state at `step`, atomically (tensors moved to the CPU)."""
    import torch

    def cpu(obj):
        if isinstance(obj, torch.Tensor):
            return obj.detach().cpu()
        if isinstance(obj, dict):
            return {k: cpu(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(cpu(v) for v in obj)
        return obj

    state = {
        "step": int(step),
        "fingerprint": dict(run_fingerprint),
        "model": cpu(model.state_dict()),
        "optimizer": cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": cpu(_rng_state(device)),
        "losses": [float(v) for v in losses],
        "lrs": [float(v) for v in lrs],
        "batch_sizes": [int(v) for v in batch_sizes],
    }
    atomic_torch_save(state, path)


def load_resume(path: Path, run_fingerprint: dict, say: Callable[[str], None]) -> dict | None:
    """The resume state at `path` when it belongs to this run (same fingerprint), else None.

    An unreadable or foreign file is reported through `say` and ignored: the run starts over."""
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: start over
        say(f"{path.name} is unreadable ({type(exc).__name__}: {exc}): starting over")
        return None
    found = state.get("fingerprint", {}) if isinstance(state, dict) else {}
    changed = [k for k in ("config", "rows") if found.get(k) != run_fingerprint[k]]
    if changed:
        what = " and ".join({"config": "config", "rows": "training rows"}[k] for k in changed)
        say(
            f"{path.name} (step {state.get('step')}) is from a run with other {what}: starting over"
        )
        return None
    say(f"resuming from {path.name} at step {state['step']}")
    return state


def restore(state: dict, *, model, optimizer, scheduler, scaler, device: str) -> None:
    """Put a `load_resume` state back into freshly built training objects."""
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["rng"]["cuda"], torch.device(device))


def load_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """The model weights of a final checkpoint or a resume file, loaded ``weights_only``."""
    state = load_checkpoint(path)
    weights = state.get("state_dict", state.get("model"))
    if not isinstance(weights, dict):
        raise ValueError(f"{path} holds no model weights (keys: {sorted(state)})")
    return weights
