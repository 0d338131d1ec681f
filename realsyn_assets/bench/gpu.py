"""`realsyn bench gpu`: the prepared GPU check (embedding, training, vLLM generation); the code
is in :mod:`realsyn_assets.bench.gpu_check`."""

from realsyn_assets.bench.gpu_check import main

__all__ = ["main"]
