"""Benchmarks behind `realsyn bench NAME`: each module has `main(argv) -> int` printing JSON.

Timings on shared machines are noisy, so every benchmark measures its baseline in the same run
and reports ratios; benchmarks are not tests.
"""

import pkgutil

# Modules that are benchmarks (a `main`); helpers shared between them are not listed.
_HELPERS = {"synthetic", "gpu_check"}  # gpu_check runs as `bench gpu`
NAMES = tuple(
    sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if m.name not in _HELPERS and not m.name.startswith("_")
    )
)
