"""The vllm captioner backend's request construction and engine reuse, against a fake `vllm`
module (the real VLM path needs CUDA and is not exercised here)."""

from __future__ import annotations

import base64
import io
import sys
import types

import numpy as np
import pytest
from PIL import Image

from realsyn_assets.core.generation import vllm_engine
from realsyn_assets.core.generation.captioners import (
    CAPTION_INSTRUCTION,
    CaptionError,
    CaptionInput,
    make_captioner,
)
from realsyn_assets.core.generation.captioning_backends import VLLMCaptioner

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 30), "blue": (25, 30, 210)}


def _decode(url: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    img = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :], validate=True)))
    assert img.format == "JPEG"
    return img


def _colour(img: Image.Image) -> str:
    mean = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return ("red", "green", "blue")[int(mean.argmax())]


def _fake_vllm() -> types.ModuleType:
    """A `vllm` stand-in: records engines, sampling params and chat calls; answers from pixels."""
    mod = types.ModuleType("vllm")
    mod.engines = []
    mod.calls = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            mod.engines.append(self)

        def chat(self, messages, sampling_params=None, use_tqdm=True):
            mod.calls.append({"messages": messages, "params": sampling_params, "tqdm": use_tqdm})
            outs = []
            for conv in messages:
                (turn,) = conv
                assert turn["role"] == "user"
                parts = {p["type"]: p for p in turn["content"]}
                assert parts["text"]["text"] == CAPTION_INSTRUCTION
                img = _decode(parts["image_url"]["image_url"]["url"])
                text = f"Caption: A {_colour(img)} square.\n\nSure, anything else?"
                outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)]))
            return outs

    mod.LLM = LLM
    mod.SamplingParams = SamplingParams
    return mod


@pytest.fixture()
def fake_vllm(monkeypatch):
    mod = _fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", mod)
    vllm_engine.drop_engines()
    yield mod
    vllm_engine.drop_engines()


def _images(tmp_path, names) -> list[CaptionInput]:
    items = []
    for i, name in enumerate(names):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (900, 300), COLOURS[name]).save(path)
        items.append(CaptionInput(image_path=path, vector=None))
    return items


OPTIONS = {
    "model": "Qwen/Qwen2-VL-2B-Instruct",
    "dtype": "bfloat16",
    "tensor_parallel_size": 2,
    "max_model_len": 2048,
    "gpu_memory_utilization": 0.5,
}


def test_one_batched_chat_call_with_images_as_data_uris(fake_vllm, tmp_path):
    cap = make_captioner("vllm", **OPTIONS, max_tokens=20, max_image_side=300)
    assert isinstance(cap, VLLMCaptioner) and cap.backend == "vllm"
    assert cap.model == OPTIONS["model"]  # a hub name is its own identity
    assert fake_vllm.engines == []  # the engine loads on first use, not at construction
    names = ["blue", "red", "green", "red"]
    assert cap.caption(_images(tmp_path, names)) == [f"A {n} square." for n in names]
    (call,) = fake_vllm.calls
    assert len(call["messages"]) == 4 and call["tqdm"] is False
    assert call["params"].kwargs == {"max_tokens": 20, "temperature": 0.0}
    sizes = {_decode(c[0]["content"][0]["image_url"]["url"]).size for c in call["messages"]}
    assert sizes == {(300, 100)}
    (engine,) = fake_vllm.engines
    assert engine.kwargs == {**OPTIONS, "limit_mm_per_prompt": {"image": 1}}


def test_engine_is_created_once_per_process_and_options(fake_vllm, tmp_path):
    items = _images(tmp_path, ["red", "green"])
    first = make_captioner("vllm", **OPTIONS)
    second = make_captioner("vllm", **OPTIONS)
    first.caption(items)
    second.caption(items)
    first.caption(items[:1])
    assert len(fake_vllm.engines) == 1 and len(fake_vllm.calls) == 3
    other = make_captioner("vllm", **{**OPTIONS, "gpu_memory_utilization": 0.3})
    other.caption(items)
    assert len(fake_vllm.engines) == 2
    assert fake_vllm.engines[1].kwargs["gpu_memory_utilization"] == 0.3


def test_unreadable_image_is_left_out_of_the_batch(fake_vllm, tmp_path):
    items = _images(tmp_path, ["green", "blue"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    items.insert(0, CaptionInput(image_path=bad, vector=None))
    with pytest.raises(CaptionError, match="bad.jpg"):
        make_captioner("vllm", **OPTIONS).caption(items)
    lenient = make_captioner("vllm", **OPTIONS, on_error="none")
    assert lenient.caption(items) == [None, "A green square.", "A blue square."]
    assert list(lenient.last_errors) == [0]
    assert len(fake_vllm.calls[-1]["messages"]) == 2


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"\.\[gpu\]"):
        make_captioner("vllm", model="any")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown captioner backend 'ofa'"):
        make_captioner("ofa")
