"""`realsyn bench embed --device` and `realsyn bench generate` through the CLI, on the CPU."""

from __future__ import annotations

import json

import pytest

from realsyn_assets.bench import generate
from realsyn_assets.cli import main as cli
from realsyn_assets.core.embedding.runtime import DeviceUnavailableError


def _json_line(capsys) -> dict:
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert lines, "no JSON printed"
    return json.loads(lines[-1])


def test_bench_embed_reports_the_device_it_ran_on_without_lancedb(capsys, tmp_path):
    argv = [
        "bench", "embed",
        "--model", "realsyn-tiny",
        "--device", "cpu",
        "--precision", "fp16",
        "--images", "12",
        "--size", "64x48",
        "--batch-size", "6",
        "--repeats", "1",
        "--no-store",
        "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert cli(argv) == 0
    out = _json_line(capsys)
    assert out["device"] == "cpu" and out["images"] == 12 and out["images_per_s"] > 0
    assert out["lancedb_write"] is False and out["runs"][0]["write_s"] < 0.01  # read + encode
    assert out["precision"] == "fp32"  # autocast is CUDA-only: the CPU ran fp32
    assert out["torch"] and "cuda" in out and "gpu" not in out


def test_bench_embed_explicit_cuda_without_cuda_names_the_option(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="--device='cuda'"):
        cli(["bench", "embed", "--device", "cuda", "--images", "2", "--workdir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []  # failed before writing anything


def test_bench_generate_offline_prints_texts_per_second(capsys, tmp_path):
    argv = [
        "bench", "generate",
        "--backend", "offline",
        "--device", "cpu",
        "--prompts", "12",
        "--batch-size", "5",
        "--repeats", "1",
        "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert cli(argv) == 0
    out = _json_line(capsys)
    assert out["backend"] == "offline" and out["device"] == "cpu"
    assert out["prompts"] == 12 and out["texts"] == 12 and out["texts_per_s"] > 0
    assert out["tokens_per_s"] is None and out["batch_size"] == 5
    assert list(tmp_path.iterdir()) == []  # the temp dir (encoder weights) is removed


def test_bench_generate_model_backends_need_a_model(tmp_path):
    with pytest.raises(SystemExit, match="needs --model"):
        cli(["bench", "generate", "--backend", "openai", "--workdir", str(tmp_path)])


def test_synthetic_inputs_are_varied_and_deterministic():
    a, b = generate.synthetic_inputs(20, seed=3), generate.synthetic_inputs(20, seed=3)
    assert a == b and len({i.realistic_text for i in a}) == 20
    assert all(3 <= len(i.tags) <= 5 and i.caption for i in a)


def test_local_llama_is_a_loadable_model_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    items = generate.synthetic_inputs(4)
    out = generate.make_local_llama(tmp_path / "llama", generate._words(items), 64, 1)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = tok(items[0].realistic_text + " " + " ".join(items[1].tags))["input_ids"]
    assert tok.unk_token_id not in ids  # the inputs' words are in the vocabulary
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 1 and model.config.vocab_size == len(tok)


def test_bench_retrieval_reports_its_cpu_device_and_refuses_cuda(capsys):
    argv = [
        "bench", "retrieval",
        "--sentences", "2000",
        "--images", "100",
        "--dim", "16",
        "--calibration-images", "30",
        "--no-lancedb",
        "--device", "cpu",
    ]  # fmt: skip
    assert cli(argv) == 0
    out = _json_line(capsys)
    assert out["device"] == "cpu" and out["faiss_gpus"] >= 0
    with pytest.raises(DeviceUnavailableError, match="runs on the CPU only"):
        cli([*argv[:-1], "cuda"])
