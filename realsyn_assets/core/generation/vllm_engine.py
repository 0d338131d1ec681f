"""One in-process vLLM engine per set of engine options, shared by every caller in the process.

Creating a `vllm.LLM` loads the weights onto the GPU(s) and takes minutes; doing it per shard or
per materialization would dominate the run and can run the GPU out of memory. Captioner and
fusion backends call `vllm_engine(...)` instead of `vllm.LLM(...)`: the first call with given
options builds the engine, later calls with the same options get the same object back.
"""

from __future__ import annotations

import json
import threading
from typing import Any

VLLM_HINT = (
    "the 'vllm' backend needs the optional vllm package and a GPU: `pip install -e \".[gpu]\"`; "
    "or serve the model with `vllm serve` and use the 'openai' backend"
)

_ENGINES: dict[str, Any] = {}
_LOCK = threading.Lock()


def import_vllm():
    """The `vllm` module, or an ImportError that says how to install it."""
    try:
        import vllm  # noqa: PLC0415 - optional heavy dependency, imported on use
    except ImportError as exc:
        raise ImportError(VLLM_HINT) from exc
    return vllm


def engine_key(options: dict[str, Any]) -> str:
    """A stable key for a set of engine options (order-independent, nested dicts included)."""
    return json.dumps(options, sort_keys=True, default=str)


def engine_options(
    *,
    dtype: str | None = None,
    tensor_parallel_size: int | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The `vllm.LLM` keyword arguments the backends expose, plus any other engine keyword
    (`enforce_eager`, `limit_mm_per_prompt`, ...); None leaves an option to vLLM's default."""
    return {
        "dtype": dtype,
        "tensor_parallel_size": tensor_parallel_size,
        "max_model_len": max_model_len,
        "gpu_memory_utilization": gpu_memory_utilization,
        **extra,
    }


def vllm_engine(model: str, **options: Any):
    """The process-wide `vllm.LLM` for `model` and these engine options, created on first use.

    Options whose value is None are left to vLLM's defaults (and out of the key).
    """
    kwargs = {"model": model, **{k: v for k, v in options.items() if v is not None}}
    key = engine_key(kwargs)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = import_vllm().LLM(**kwargs)
            _ENGINES[key] = engine
        return engine


def drop_engines() -> None:
    """Forget every cached engine (tests; or to free GPU memory before loading another)."""
    with _LOCK:
        _ENGINES.clear()
