"""Tests for the fusion step of core/generation: prompt, cleaning, offline fusion, the
OpenAI-compatible HTTP backend, vLLM and the backend factory."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from realsyn_assets.core.generation.cleaning import clean_generation
from realsyn_assets.core.generation.clients import (
    GenerationError,
    OpenAICompatibleGenerator,
    VLLMGenerator,
    make_generator,
)
from realsyn_assets.core.generation.offline import OfflineFusionGenerator
from realsyn_assets.core.generation.prompts import (
    FUSION_INSTRUCTION,
    FusionInput,
    TextGenerator,
    build_chat_messages,
    build_fusion_prompt,
)

ITEM = FusionInput(
    realistic_text="my puppy max loves the waves at carmel beach in 2 0 1 9 , it 's his spot",
    caption="a dog running on the beach",
    tags=["dog", "beach", "ocean", "sand"],
)


# ---------------------------------------------------------------------------------------------
# prompt
# ---------------------------------------------------------------------------------------------


def test_prompt_contains_instruction_and_three_inputs():
    prompt = build_fusion_prompt(ITEM)
    assert prompt.startswith(FUSION_INSTRUCTION)
    assert ITEM.realistic_text in prompt
    assert "a dog running on the beach" in prompt
    assert "dog, beach, ocean, sand" in prompt
    # the instruction states the paper's requirements (own wording)
    low = FUSION_INSTRUCTION.lower()
    for phrase in ("single", "tags", "do not add", "do not just join"):
        assert phrase in low


def test_prompt_marks_missing_inputs():
    prompt = build_fusion_prompt(FusionInput("some text here", None, []))
    assert "Machine caption: (none)" in prompt
    assert "Tags: (none)" in prompt


def test_chat_messages_shape():
    msgs = build_chat_messages(ITEM)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == FUSION_INSTRUCTION
    user = msgs[1]["content"]
    assert ITEM.realistic_text in user and "a dog running on the beach" in user
    assert "ocean" in user
    custom = build_chat_messages(ITEM, instruction="Merge.")
    assert custom[0]["content"] == "Merge."


# ---------------------------------------------------------------------------------------------
# cleaning
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            'Sure! Here is the caption:\n\n"A dog runs on Carmel beach."',
            "A dog runs on Carmel beach.",
        ),
        ("Caption: A red bus in London.", "A red bus in London."),
        ("**Fused sentence:** a dog on sand.", "a dog on sand."),
        ("  A   cat\n sits  on a mat.  ", "A cat"),  # first non-empty line only
        (
            "A man in St. Louis walks home. Note: I merged the inputs.",
            "A man in St. Louis walks home.",
        ),
        ("“A lighthouse at dusk.”", "A lighthouse at dusk."),
        ("Here is the merged sentence:", ""),
        ("", ""),
    ],
)
def test_clean_generation_cases(raw, expected):
    assert clean_generation(raw) == expected


def test_clean_generation_collapses_whitespace_and_truncates():
    assert clean_generation("a  b\tc   d") == "a b c d"
    long = " ".join(f"w{i}" for i in range(200))
    out = clean_generation(long, max_words=10)
    assert out.split() == [f"w{i}" for i in range(10)]
    assert len(clean_generation(long).split()) == 77


# ---------------------------------------------------------------------------------------------
# offline generator
# ---------------------------------------------------------------------------------------------


def test_offline_is_deterministic_and_fuses_inputs():
    g = OfflineFusionGenerator()
    a = g.generate([ITEM, ITEM])
    b = OfflineFusionGenerator().generate([ITEM])
    assert a[0] == a[1] == b[0]
    out = a[0]
    assert out.startswith("A dog running on the beach")  # leads with the caption subject
    assert "carmel" in out and "puppy" in out and "2019" in out  # realistic details kept
    assert "it's" in out  # BPE-style "it 's" repaired
    assert "ocean" in out  # a new tag is added
    assert out.count("dog") == 1  # tags already mentioned are not repeated
    assert out.endswith(".") and "\n" not in out


def test_offline_adds_at_most_two_new_tags():
    item = FusionInput("a quiet street at night", "a car parked", ["car", "tree", "lamp", "moon"])
    out = OfflineFusionGenerator().generate([item])[0]
    assert "tree" in out and "lamp" in out and "moon" not in out


@pytest.mark.parametrize(
    "item",
    [
        FusionInput("the eiffel tower at night ( paris )", None, []),
        FusionInput("", "a photo of a red car parked on a street.", []),
        FusionInput("", None, ["cat", "sofa"]),
        FusionInput("", None, []),
        FusionInput("   ", "", ["", "  "]),
    ],
)
def test_offline_never_empty(item):
    out = OfflineFusionGenerator().generate([item])[0]
    assert out.strip() and out.endswith(".")


def test_offline_fallbacks_use_available_input():
    g = OfflineFusionGenerator()
    assert g.fuse(FusionInput("the eiffel tower at night ( paris )", None, [])) == (
        "The eiffel tower at night (paris)."
    )
    assert g.fuse(FusionInput("", "a photo of a red car.", [])) == "A red car."
    assert "cat" in g.fuse(FusionInput("", None, ["cat"]))


def test_offline_respects_word_budget():
    item = FusionInput(" ".join(["word"] * 150), "a caption here", ["zebra"])
    out = OfflineFusionGenerator(max_words=30).fuse(item)
    assert len(out.split()) <= 30
    assert "zebra" in out  # tags survive truncation of the details


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible backend against a real local HTTP server
# ---------------------------------------------------------------------------------------------


def _web_text(payload: dict) -> str:
    text = payload["messages"][-1]["content"] if "messages" in payload else payload["prompt"]
    for line in text.splitlines():
        if line.startswith("Web text: "):
            return line[len("Web text: ") :]
    return "?"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def _send(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server API
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        web = _web_text(payload)
        srv = self.server
        with srv.lock:
            srv.requests.append((self.path, payload, dict(self.headers)))
            srv.hits[(self.path, web)] += 1
            hit = srv.hits[(self.path, web)]
        prefix, _, endpoint = self.path.partition("/v1/")
        if prefix == "/broken":
            return self._send(500, {"error": "boom"})
        if prefix == "/bad":
            return self._send(400, {"error": "bad request"})
        if prefix == "/flaky" and hit <= 2:
            return self._send(503, {"error": "warming up"})
        if prefix == "/slow" and hit == 1:
            time.sleep(0.6)
        # later items answer faster, so completion order differs from submission order
        if web.startswith("item "):
            time.sleep(max(0.0, 0.05 - 0.004 * int(web.split()[1])))
        answer = f"ECHO {web}"
        if endpoint == "chat/completions":
            return self._send(
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "model": payload["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"Caption: {answer}"},
                            "finish_reason": "stop",
                        }
                    ],
                },
            )
        if endpoint == "completions":
            return self._send(
                200,
                {
                    "id": "y",
                    "object": "text_completion",
                    "model": payload["model"],
                    "choices": [{"index": 0, "text": f" {answer}\n", "finish_reason": "stop"}],
                },
            )
        return self._send(404, {"error": "no such endpoint"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list = []
        self.hits: dict = defaultdict(int)

    def handle_error(self, request, client_address):
        # the client gave up on a deliberately slow answer: expected, keep the log clean
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
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


def test_openai_chat_preserves_order_under_concurrency(server):
    srv, url = server
    g = OpenAICompatibleGenerator(f"{url}/v1", "my-model", api_key="sk-test", concurrency=6)
    assert isinstance(g, TextGenerator)
    out = g.generate(_items(12))
    assert out == [f"ECHO item {i} text" for i in range(12)]  # label stripped, order kept
    path, payload, headers = srv.requests[0]
    assert path == "/v1/chat/completions"
    assert payload["model"] == "my-model" and payload["max_tokens"] == 96
    assert payload["temperature"] == pytest.approx(0.2)
    assert payload["messages"][0] == {"role": "system", "content": FUSION_INSTRUCTION}
    assert headers.get("Authorization") == "Bearer sk-test"
    assert g.fallback_count == 0
    assert g.generate([]) == []


def test_openai_completions_endpoint(server):
    srv, url = server
    g = OpenAICompatibleGenerator(f"{url}/v1/", "base-model", use_chat=False, max_tokens=40)
    out = g.generate(_items(3))
    assert out == [f"ECHO item {i} text" for i in range(3)]
    path, payload, headers = srv.requests[0]
    assert path == "/v1/completions"
    assert payload["prompt"].startswith(FUSION_INSTRUCTION) and payload["max_tokens"] == 40
    assert "Authorization" not in headers


def test_openai_retries_transient_failures(server):
    srv, url = server
    g = OpenAICompatibleGenerator(f"{url}/flaky/v1", "m", retries=3, backoff_s=0.01)
    assert g.generate(_items(2)) == ["ECHO item 0 text", "ECHO item 1 text"]
    assert srv.hits[("/flaky/v1/chat/completions", "item 0 text")] == 3  # 503, 503, 200
    assert g.fallback_count == 0


def test_openai_retries_timeouts(server):
    srv, url = server
    g = OpenAICompatibleGenerator(f"{url}/slow/v1", "m", timeout_s=0.25, backoff_s=0.01)
    assert g.generate([FusionInput("slow one", None, [])]) == ["ECHO slow one"]
    assert srv.hits[("/slow/v1/chat/completions", "slow one")] == 2


def test_openai_raises_naming_item_without_fallback(server):
    srv, url = server
    g = OpenAICompatibleGenerator(f"{url}/broken/v1", "m", retries=2, backoff_s=0.01)
    with pytest.raises(GenerationError, match=r"item 0\b.*HTTP 500.*3 attempts") as info:
        g.generate(_items(1))
    assert info.value.index == 0
    assert srv.hits[("/broken/v1/chat/completions", "item 0 text")] == 3


def test_openai_does_not_retry_client_errors(server):
    srv, url = server
    g = OpenAICompatibleGenerator(f"{url}/bad/v1", "m", retries=3, backoff_s=0.01)
    with pytest.raises(GenerationError, match="HTTP 400"):
        g.generate(_items(1))
    assert srv.hits[("/bad/v1/chat/completions", "item 0 text")] == 1


def test_openai_fallback_counts_failed_items(server):
    srv, url = server
    g = OpenAICompatibleGenerator(
        f"{url}/broken/v1", "m", retries=1, backoff_s=0.01, on_error="fallback", concurrency=2
    )
    items = _items(3)
    out = g.generate(items)
    assert out == OfflineFusionGenerator().generate(items)
    assert g.fallback_count == 3 and g.last_fallback_indices == [0, 1, 2]
    g.generate(items[:1])
    assert g.fallback_count == 4 and g.last_fallback_indices == [0]


def test_openai_connection_refused_is_clear():
    g = OpenAICompatibleGenerator("http://127.0.0.1:9/v1", "m", retries=0, timeout_s=2)
    with pytest.raises(GenerationError, match="item 0"):
        g.generate(_items(1))


def test_openai_rejects_bad_on_error():
    with pytest.raises(ValueError):
        OpenAICompatibleGenerator("http://x/v1", "m", on_error="ignore")


# ---------------------------------------------------------------------------------------------
# vLLM backend
# ---------------------------------------------------------------------------------------------


def test_vllm_missing_raises_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(ImportError, match=r"pip install realsyn_assets\[gpu\]"):
        VLLMGenerator("meta-llama/Meta-Llama-3-8B-Instruct")
    with pytest.raises(ImportError, match="gpu"):
        make_generator("vllm", model="x")


def _fake_vllm(chat_template: str | None, answers: dict[str, str]) -> types.ModuleType:
    """Minimal stand-in with the vLLM API surface we use (LLM, SamplingParams, outputs)."""
    mod = types.ModuleType("vllm")
    calls: dict = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    def _out(text):
        return types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)])

    class LLM:
        def __init__(self, model, **kw):
            calls["init"] = (model, kw)

        def get_tokenizer(self):
            return types.SimpleNamespace(chat_template=chat_template)

        def chat(self, messages, sampling_params=None, use_tqdm=True):
            calls["chat"] = (messages, sampling_params)
            return [_out(answers.get(_web_text({"messages": m}), "")) for m in messages]

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            calls["generate"] = (prompts, sampling_params)
            return [_out(answers.get(_web_text({"prompt": p}), "")) for p in prompts]

    mod.LLM, mod.SamplingParams, mod.calls = LLM, SamplingParams, calls
    return mod


def test_vllm_uses_chat_template_when_present(monkeypatch):
    fake = _fake_vllm(
        "{{ messages }}", {"item 0 text": "Sentence: A fused one.", "item 1 text": ""}
    )
    monkeypatch.setitem(sys.modules, "vllm", fake)
    g = VLLMGenerator("m", max_tokens=50, temperature=0.1, tensor_parallel_size=2)
    out = g.generate(_items(2))
    assert out[0] == "A fused one."
    assert out[1] == OfflineFusionGenerator().fuse(_items(2)[1]) and g.fallback_count == 1
    assert fake.calls["init"] == ("m", {"tensor_parallel_size": 2})
    messages, params = fake.calls["chat"]
    assert messages[0][0]["role"] == "system" and params.kw == {
        "max_tokens": 50,
        "temperature": 0.1,
    }
    assert "generate" not in fake.calls


def test_vllm_falls_back_to_plain_prompts_without_template(monkeypatch):
    fake = _fake_vllm(None, {"item 0 text": " a plain completion\n\nmore"})
    monkeypatch.setitem(sys.modules, "vllm", fake)
    g = make_generator("vllm", model="base")
    assert g.generate(_items(1)) == ["a plain completion"]
    prompts, _ = fake.calls["generate"]
    assert prompts[0].startswith(FUSION_INSTRUCTION) and "chat" not in fake.calls


# ---------------------------------------------------------------------------------------------
# factory
# ---------------------------------------------------------------------------------------------


def test_make_generator():
    assert isinstance(make_generator("offline"), OfflineFusionGenerator)
    assert make_generator("Offline", max_tags=1).max_tags == 1
    g = make_generator("openai", base_url="http://h:1/v1", model="m", concurrency=3)
    assert isinstance(g, OpenAICompatibleGenerator) and g.concurrency == 3
    assert g.name == "openai:m"
    with pytest.raises(ValueError, match="unknown generator backend"):
        make_generator("gpt-magic")


def test_modules_import_no_heavy_dependency():
    import ast
    from pathlib import Path

    from realsyn_assets.core import generation

    for path in Path(generation.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:  # module level only: vllm must be imported lazily
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                top.add(node.module.split(".")[0])
        assert not top & {"vllm", "dagster", "torch", "openai", "requests"}, path.name
