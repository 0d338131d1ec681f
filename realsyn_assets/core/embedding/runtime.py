"""How torch runs for the encoder and its training: device, precision, threads, quiet loading,
atomic checkpoint files. torch is imported inside functions so importing this stays cheap."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from realsyn_assets.core.io import RecordingWriter, atomic_path, ensure_free_space

# Bytes a torch archive adds to its tensors (record names, the pickled structure, alignment).
CHECKPOINT_OVERHEAD_BYTES = 1 << 20


# The config setting that picks the torch device of embedding and of both trainers (train and
# bootstrap take the `encoder` resource's device): what a device error tells the user to change.
ENCODER_DEVICE_FIELD = "encoder.device"


class DeviceUnavailableError(ValueError):
    """A configured torch device this machine does not have; names the config field."""


def resolve_device(device: str, field: str = "device") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cpu`` as is; ``cuda`` / ``cuda:N``
    only when torch sees that GPU, else :class:`DeviceUnavailableError` naming `field` (the
    config setting to change), instead of a torch error deep inside a model's first ``.to()``.
    Other torch device strings (``mps``, ...) are passed through after a syntax check."""
    device = str(device).strip()
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise DeviceUnavailableError(
            f"{field}={device!r} is not a torch device; use auto, cpu, cuda or cuda:N"
        ) from exc
    if parsed.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"{field}={device!r} but CUDA is not available on this machine (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); set {field} "
            'to "auto" or "cpu"'
        )
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise DeviceUnavailableError(
            f"{field}={device!r} but this machine has {count} CUDA device(s) (cuda:0.."
            f"cuda:{count - 1}); set {field} to one of them"
        )
    return device


def device_report(device: str) -> dict:
    """What a benchmark ran on: the resolved device, torch and CUDA versions, the GPU's name."""
    import torch

    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(index).total_memory / 2**30, 1
        )
    return info


def autocast_context(device: str, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision only on CUDA; CPU always runs fp32 (CPU half precision is slow and lossy)."""
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    if precision == "fp32" or not device.startswith("cuda"):
        return contextlib.nullcontext()
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type="cuda", dtype=dtype)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers while a model is created, then restore its settings.

    Loading a sentence-transformers checkpoint into a CLIP text tower prints a load report (the
    pooler weights CLIP does not use) and a progress bar on every model creation: noise in
    every Dagster step. Real errors still raise.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch ops on ``n`` intra-op threads (None: leave torch's setting alone).

    Why: on a small shared machine, OpenMP threads spin-wait for a core that another process
    holds, which slows a multi-threaded run far more than running on one thread does. The
    setting is process-wide, so it is restored on exit.
    """
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in `obj` (nested dicts, lists, tuples): a checkpoint's size to
    within its small archive overhead."""
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    nbytes = getattr(obj, "nbytes", None)
    return int(nbytes) if isinstance(nbytes, int) else 0


def checkpoint_bytes(model: Any) -> int:
    """The estimated size of a checkpoint of `model`'s state dict (plus archive overhead)."""
    return tensor_bytes(dict(model.state_dict())) + CHECKPOINT_OVERHEAD_BYTES


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through the one atomic writer: never a half-written checkpoint.

    Saved through a file object, not the temporary path: torch names the records inside the
    archive after a path's file name, which would put the random temporary name into the bytes
    (the same weights would then hash differently on every run). Free space is checked first;
    a full disk or a missing permission raises `StorageError` naming `path`. Save only tensors
    and plain containers: checkpoints are read with ``torch.load(..., weights_only=True)``."""
    import torch

    ensure_free_space(path, tensor_bytes(obj) + CHECKPOINT_OVERHEAD_BYTES)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        recorder = RecordingWriter(fh)
        try:
            torch.save(obj, recorder)
        except RuntimeError as exc:
            if recorder.error is None:
                raise
            raise recorder.error from exc


def load_checkpoint(path: Path | str) -> Any:
    """A checkpoint written by `atomic_torch_save` (or any tensors-only file), on the CPU, with
    ``weights_only=True``: no pickle code runs, whatever the file holds."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
