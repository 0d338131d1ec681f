"""Benchmarks behind `realsyn bench NAME`: each module has `main(argv) -> int` printing JSON.

Timings on shared machines are noisy, so every benchmark measures its baseline in the same run
and reports ratios; benchmarks are not tests.
"""

NAMES = ("extract", "retrieval", "embed")
