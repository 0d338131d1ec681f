"""Helpers of the tests that run real vLLM on CPU from the second virtualenv `.ci/run` builds
(`REALSYN_VLLM_PYTHON`): a tiny random-weight Llama built locally, and `vllm serve` on it."""
