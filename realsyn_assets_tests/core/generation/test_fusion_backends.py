"""The fusion model backends: the openai client against a real local HTTP server (concurrency,
retries, Retry-After, timeouts, the on_error policies, order) and the in-process vLLM backend
against a stand-in module with vLLM's API (one engine per process, one call per batch)."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from realsyn_assets.core.generation import vllm_engine
from realsyn_assets.core.generation.clients import (
    GenerationError,
    make_generator,
    offline_fusion,
    prompt_version_of,
)
from realsyn_assets.core.generation.clients_openai import OpenAIFusionGenerator
from realsyn_assets.core.generation.clients_vllm import VLLMFusionGenerator
from realsyn_assets.core.generation.prompts import (
    FUSION_INSTRUCTION,
    FUSION_PROMPT_VERSION,
    FusionInput,
    TextGenerator,
)

# ---------------------------------------------------------------------------------------------
# a local OpenAI-compatible server whose behaviour is chosen by the URL prefix
# ---------------------------------------------------------------------------------------------


def _web_text(payload: dict) -> str:
    text = payload["messages"][-1]["content"] if "messages" in payload else payload["prompt"]
    for line in text.splitlines():
        if line.startswith("Web text: "):
            return line[len("Web text: ") :]
    return "?"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code: int, obj: dict, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, payload: dict, endpoint: str, text: str) -> None:
        if endpoint == "completions":
            choice = {"index": 0, "text": f" {text}\n", "finish_reason": "stop"}
            obj = "text_completion"
        else:
            message = {"role": "assistant", "content": f"Caption: {text}"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            obj = "chat.completion"
        body = {"id": "x", "object": obj, "created": 0, "model": payload["model"]}
        self._send(200, {**body, "choices": [choice]})

    def do_POST(self):  # noqa: N802 - http.server API
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        web, srv = _web_text(payload), self.server
        mode, _, endpoint = self.path.strip("/").partition("/v1/")
        with srv.lock:
            srv.requests.append(
                (self.path, payload, {k.lower(): v for k, v in self.headers.items()})
            )
            srv.hits[web] += 1
            srv.times[web].append(time.monotonic())
            hit = srv.hits[web]
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._serve(mode, endpoint, payload, web, hit)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _serve(self, mode: str, endpoint: str, payload: dict, web: str, hit: int) -> None:
        if mode == "broken" or (mode == "broken-odd" and int(web.split()[1]) % 2):
            return self._send(500, {"error": {"message": "boom"}})
        if mode == "bad":
            return self._send(400, {"error": {"message": "bad request"}})
        if mode == "flaky" and hit == 1:
            return self._send(500, {"error": {"message": "warming up"}})
        if mode == "limited" and hit == 1:
            return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
        if mode == "slow" and hit == 1:
            time.sleep(1.5)
        if mode == "nochoice":
            return self._send(
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": payload["model"],
                    "choices": [],
                },
            )
        if web.startswith("item "):  # later items answer sooner: completion order != input order
            time.sleep(max(0.0, 0.2 - 0.015 * int(web.split()[1])))
        return self._answer(payload, endpoint, f"ECHO {web}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list = []
        self.hits: dict = defaultdict(int)
        self.times: dict = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _items(n: int) -> list[FusionInput]:
    return [FusionInput(f"item {i} text", f"caption {i}", [f"tag{i}"]) for i in range(n)]


def _gen(url: str, mode: str = "ok", **kw) -> OpenAIFusionGenerator:
    return make_generator("openai", model="my-model", base_url=f"{url}/{mode}/v1", **kw)


# ---------------------------------------------------------------------------------------------
# openai backend
# ---------------------------------------------------------------------------------------------


def test_openai_order_preserved_and_concurrency_bounded(server):
    srv, url = server
    g = _gen(url, concurrency=3, api_key="sk-test")
    assert isinstance(g, TextGenerator) and g.name == "openai" and g.model == "my-model"
    out = g.generate(_items(10))
    assert out == [f"ECHO item {i} text" for i in range(10)]  # label stripped, order kept
    assert 2 <= srv.max_in_flight <= 3
    path, payload, headers = srv.requests[0]
    assert path == "/ok/v1/chat/completions"
    assert payload["messages"][0] == {"role": "system", "content": FUSION_INSTRUCTION}
    assert payload["max_tokens"] == 96 and payload["seed"] == 0
    assert headers["authorization"] == "Bearer sk-test"
    assert g.requests_sent == 10 and g.last_errors == {} and g.generate([]) == []


def test_openai_completions_endpoint_without_key(server):
    srv, url = server
    g = _gen(url, use_chat=False, max_tokens=40)
    assert g.generate(_items(2)) == ["ECHO item 0 text", "ECHO item 1 text"]
    path, payload, headers = srv.requests[0]
    assert path == "/ok/v1/completions" and payload["prompt"].startswith(FUSION_INSTRUCTION)
    assert payload["max_tokens"] == 40 and "authorization" not in headers


def test_openai_retries_500_then_ok(server):
    srv, url = server
    g = _gen(url, "flaky", max_retries=2)
    assert g.generate(_items(2)) == ["ECHO item 0 text", "ECHO item 1 text"]
    assert srv.hits["item 0 text"] == srv.hits["item 1 text"] == 2


def test_openai_honours_retry_after_on_429(server):
    srv, url = server
    g = _gen(url, "limited", max_retries=2)
    assert g.generate([FusionInput("limited one", None, [])]) == ["ECHO limited one"]
    first, second = srv.times["limited one"]
    assert srv.hits["limited one"] == 2
    assert second - first >= 0.95  # Retry-After: 1 (the client's own backoff is <= 0.5 s)


def test_openai_timeout_is_retried_then_reported(server):
    srv, url = server
    g = _gen(url, "slow", timeout_s=0.5, max_retries=1)
    assert g.generate([FusionInput("slow one", None, [])]) == ["ECHO slow one"]
    assert srv.hits["slow one"] == 2
    g = _gen(url, "slow", timeout_s=0.5, max_retries=0)
    with pytest.raises(GenerationError, match=r"item 0 .*'slow two'.*timed out"):
        g.generate([FusionInput("slow two", None, [])])


def test_openai_fail_names_the_item(server):
    srv, url = server
    g = _gen(url, "broken-odd", max_retries=1)
    with pytest.raises(GenerationError, match=r"item 1 \(web text 'item 1 text'\)") as info:
        g.generate(_items(2))
    assert info.value.index == 1
    assert srv.hits["item 1 text"] == 2  # one retry


def test_openai_client_errors_are_not_retried(server):
    srv, url = server
    with pytest.raises(GenerationError, match="400"):
        _gen(url, "bad", max_retries=3).generate(_items(1))
    assert srv.hits["item 0 text"] == 1


def test_openai_fallback_uses_offline_fusion_and_counts(server):
    srv, url = server
    g = _gen(url, "broken-odd", max_retries=0, on_error="fallback", concurrency=4)
    items = _items(4)
    out = g.generate(items)
    offline = offline_fusion().generate([items[1], items[3]])
    assert out == ["ECHO item 0 text", offline[0], "ECHO item 2 text", offline[1]]
    assert g.last_fallback_indices == [1, 3] and g.fallback_count == 2
    assert set(g.last_errors) == {1, 3} and g.dropped_count == 0
    g.generate(items[:2])
    assert g.fallback_count == 3 and g.last_fallback_indices == [1]


def test_openai_drop_returns_none_in_place(server):
    srv, url = server
    g = _gen(url, "broken-odd", max_retries=0, on_error="drop")
    assert g.generate(_items(3)) == ["ECHO item 0 text", None, "ECHO item 2 text"]
    assert g.last_dropped_indices == [1] and g.dropped_count == 1 and g.fallback_count == 0


def test_openai_answer_without_choices_is_an_item_failure(server):
    srv, url = server
    g = _gen(url, "nochoice", on_error="drop")
    assert g.generate(_items(1)) == [None]
    assert "no choices" in str(g.last_errors[0])


def test_openai_connection_refused_names_item():
    g = make_generator("openai", model="m", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(GenerationError, match="item 0"):
        g.generate(_items(1))


def test_openai_options_are_checked():
    with pytest.raises(ValueError, match="on_error"):
        make_generator("openai", model="m", on_error="ignore")
    with pytest.raises(ValueError, match="model"):
        make_generator("openai", model="")
    with pytest.raises(ValueError, match="unknown generator backend"):
        make_generator("gpt-magic")


def test_prompt_version_follows_the_instruction():
    g = make_generator("openai", model="m")
    assert g.prompt_version == FUSION_PROMPT_VERSION == prompt_version_of(FUSION_INSTRUCTION)
    custom = make_generator("openai", model="m", instruction="Merge the clues.")
    assert custom.prompt_version.startswith("custom-")
    assert custom.prompt_version != prompt_version_of("Merge the clues!")


# ---------------------------------------------------------------------------------------------
# vllm backend, against a stand-in module with vLLM's API
# ---------------------------------------------------------------------------------------------


def _fake_vllm(answers: dict[str, str], chat_template: str | None = "{{ messages }}"):
    mod = types.ModuleType("vllm")
    mod.engines, mod.calls = [], []

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    def _out(text):
        return types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)])

    class LLM:
        def __init__(self, **kw):
            self.kw = kw
            mod.engines.append(self)

        def get_tokenizer(self):
            return types.SimpleNamespace(chat_template=chat_template)

        def chat(self, messages, sampling_params=None, use_tqdm=True):
            mod.calls.append(("chat", messages, sampling_params))
            if any("explode" in _web_text({"messages": m}) for m in messages):
                raise RuntimeError("CUDA out of memory")
            return [_out(answers.get(_web_text({"messages": m}), "")) for m in messages]

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            mod.calls.append(("generate", prompts, sampling_params))
            return [_out(answers.get(_web_text({"prompt": p}), "")) for p in prompts]

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    return mod


@pytest.fixture
def fake_vllm(monkeypatch):
    fake = _fake_vllm({f"item {i} text": f"Sentence: fused {i}." for i in range(8)})
    monkeypatch.setitem(sys.modules, "vllm", fake)
    vllm_engine.drop_engines()
    yield fake
    vllm_engine.drop_engines()


def test_vllm_one_engine_per_process_and_one_call_per_batch(fake_vllm):
    g = make_generator("vllm", model="org/llm", dtype="bfloat16", max_model_len=2048)
    assert isinstance(g, VLLMFusionGenerator) and g.name == "vllm" and g.model == "org/llm"
    assert g.generate(_items(3)) == ["fused 0.", "fused 1.", "fused 2."]
    assert g.generate(_items(5))[4] == "fused 4."
    again = make_generator("vllm", model="org/llm", dtype="bfloat16", max_model_len=2048)
    assert again.engine is g.engine and len(fake_vllm.engines) == 1
    assert fake_vllm.engines[0].kw == {
        "model": "org/llm",
        "dtype": "bfloat16",
        "max_model_len": 2048,
    }
    kinds = [c[0] for c in fake_vllm.calls]
    assert kinds == ["chat", "chat"] and len(fake_vllm.calls[1][1]) == 5
    assert fake_vllm.calls[0][2].kw == {"max_tokens": 96, "temperature": 0.2, "seed": 0}
    other = make_generator("vllm", model="org/llm", dtype="float16")
    assert other.engine is not g.engine and len(fake_vllm.engines) == 2


def test_vllm_plain_prompts_without_chat_template(monkeypatch):
    fake = _fake_vllm({"item 0 text": " a plain completion\n\nmore"}, chat_template=None)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    vllm_engine.drop_engines()
    try:
        g = make_generator("vllm", model="base")
        assert g.generate(_items(1)) == ["a plain completion"]
        assert fake.calls[0][0] == "generate" and fake.calls[0][1][0].startswith(FUSION_INSTRUCTION)
    finally:
        vllm_engine.drop_engines()


def test_vllm_batch_failure_goes_to_the_policy(fake_vllm):
    items = [*_items(2), FusionInput("explode now", None, ["x"])]
    with pytest.raises(GenerationError, match="out of memory"):
        make_generator("vllm", model="m").generate(items)
    g = make_generator("vllm", model="m", on_error="fallback")
    vecs = np.zeros((3, 4), np.float32)
    assert g.generate(items, vecs) == offline_fusion().generate(items)
    assert g.fallback_count == 3
    assert make_generator("vllm", model="m", on_error="drop").generate(items) == [None] * 3


def test_vllm_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    vllm_engine.drop_engines()
    with pytest.raises(ImportError, match="gpu"):
        make_generator("vllm", model="x")
