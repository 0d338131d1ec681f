"""The openai captioner backend against a real HTTP server on 127.0.0.1 that checks the
vision-chat request format and answers from the pixels it received."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realsyn_assets.core.generation.captioners import (
    CAPTION_INSTRUCTION,
    CaptionError,
    CaptionInput,
    make_captioner,
)
from realsyn_assets.core.generation.captioning_backends import OpenAICaptioner
from realsyn_assets_tests.local_http import serving

MODEL = "tiny-vlm"
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 30), "blue": (25, 30, 210)}


def _colour_name(img: Image.Image) -> str:
    mean = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return ("red", "green", "blue")[int(mean.argmax())]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests = 0
        self.fail_first = 0  # answer this many requests with HTTP 500 first
        self.delay_s = 0.0
        self.errors: list[str] = []
        self.sizes: list[tuple[int, int]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and hung up, as the timeout test intends

    def _image(self, payload: dict) -> Image.Image:
        """The image of a vision-chat request; AssertionError when the format is wrong."""
        assert self.path == "/v1/chat/completions", self.path
        assert payload["model"] == MODEL
        (message,) = payload["messages"]
        assert message["role"] == "user"
        parts = {part["type"]: part for part in message["content"]}
        assert parts["text"]["text"] == CAPTION_INSTRUCTION
        url = parts["image_url"]["image_url"]["url"]
        prefix = "data:image/jpeg;base64,"
        assert url.startswith(prefix), url[:40]
        img = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :], validate=True)))
        assert img.format == "JPEG"
        img.load()
        return img

    def do_POST(self):  # noqa: N802 - http.server API
        srv = self.server
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests += 1
            failing = srv.requests <= srv.fail_first
        if srv.delay_s:
            time.sleep(srv.delay_s)
        if failing:
            self._reply(500, {"error": {"message": "engine busy"}})
            return
        try:
            img = self._image(payload)
        except (AssertionError, KeyError, ValueError, OSError) as exc:
            with srv.lock:
                srv.errors.append(repr(exc))
            self._reply(400, {"error": {"message": f"bad request: {exc!r}"}})
            return
        with srv.lock:
            srv.sizes.append(img.size)
        text = f'Caption: "A {_colour_name(img)} square on a plain background."\nIt is simple.'
        self._reply(
            200,
            {
                "id": "cmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            },
        )


@pytest.fixture()
def server():
    srv = _Server()
    with serving(srv) as base:
        yield srv, f"{base}/v1"


def _images(tmp_path: Path, names: list[str]) -> list[CaptionInput]:
    items = []
    for i, name in enumerate(names):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (1000, 500), COLOURS[name]).save(path)
        items.append(CaptionInput(image_path=path.resolve(), vector=None))
    return items


def test_sends_vision_chat_and_returns_captions_in_order(server, tmp_path):
    srv, url = server
    names = ["red", "blue", "green", "green", "red", "blue", "red"]
    cap = make_captioner(
        "openai", model=MODEL, base_url=url, concurrency=3, max_image_side=256, max_retries=0
    )
    assert isinstance(cap, OpenAICaptioner) and cap.backend == "openai" and cap.model == MODEL
    captions = cap.caption(_images(tmp_path, names))
    assert srv.errors == []
    assert captions == [f"A {n} square on a plain background." for n in names]
    assert srv.requests == len(names)
    assert set(srv.sizes) == {(256, 128)}  # downsized to max_image_side, aspect kept
    assert cap.caption([]) == []


def test_retries_a_server_error_then_succeeds(server, tmp_path):
    srv, url = server
    srv.fail_first = 1
    cap = make_captioner("openai", model=MODEL, base_url=url, max_retries=2, concurrency=1)
    assert cap.caption(_images(tmp_path, ["green"])) == ["A green square on a plain background."]
    assert srv.requests == 2 and srv.errors == []


def test_server_error_without_retries_names_the_image(server, tmp_path):
    srv, url = server
    srv.fail_first = 10
    cap = make_captioner("openai", model=MODEL, base_url=url, max_retries=0)
    items = _images(tmp_path, ["red"])
    with pytest.raises(CaptionError, match=str(items[0].image_path)) as info:
        cap.caption(items)
    assert "500" in str(info.value)


def test_timeout_is_a_per_item_failure(server, tmp_path):
    srv, url = server
    srv.delay_s = 1.5
    items = _images(tmp_path, ["red", "blue"])
    strict = make_captioner("openai", model=MODEL, base_url=url, timeout_s=0.3, max_retries=0)
    with pytest.raises(CaptionError, match="img0.png") as info:
        strict.caption(items)
    assert "Timeout" in str(info.value)

    lenient = make_captioner(
        "openai", model=MODEL, base_url=url, timeout_s=0.3, max_retries=0, on_error="none"
    )
    assert lenient.caption(items) == [None, None]
    assert sorted(lenient.last_errors) == [0, 1]
    assert lenient.last_errors[1].image_path == items[1].image_path


def test_unreadable_image_fails_only_that_item(server, tmp_path):
    srv, url = server
    items = _images(tmp_path, ["blue", "red"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    items.insert(1, CaptionInput(image_path=broken, vector=None))
    cap = make_captioner("openai", model=MODEL, base_url=url, on_error="none", max_retries=0)
    captions = cap.caption(items)
    assert captions[0] == "A blue square on a plain background."
    assert captions[1] is None and captions[2] == "A red square on a plain background."
    assert list(cap.last_errors) == [1] and "broken.jpg" in str(cap.last_errors[1])
    assert srv.requests == 2  # the broken file was never sent
