"""A local image server on 127.0.0.1 with injected faults, for the download benchmark and tests.

Run as a process (`python -m realsyn_assets.bench._image_server`) so that it can be killed by its
PID and does not share the downloader's interpreter; `serving()` starts and stops one. Every
response waits `--latency` seconds first. Paths (`<i>` is any integer, it picks the image):

    /img/<i>.jpg       a small JPEG (distinct bytes per i)
    /octet/<i>         the same bytes as application/octet-stream
    /404/<i>           404                      /500/<i>    always 500
    /flaky/<i>         500 twice per path, then the image
    /429/<i>           429 with Retry-After: 0 once per path, then the image
    /slow/<i>          the image after `--slow` seconds
    /drip/<i>          the image's headers, then one byte every 0.25 s (each read in time)
    /big/<i>           Content-Length of 64 MiB (nothing sent after the headers)
    /bigstream/<i>     2 MiB of JPEG-looking bytes, no Content-Length (connection closes)
    /text/<i>          text/html                /garbage/<i>  image/jpeg that is no image
    /tofile/<i>        302 to file:///etc/passwd
    /chain/<n>/<i>     n 302 hops, then the image
    /toblocked/<i>     302 to http://169.254.169.254/latest/meta-data
    /tolocal2/<i>      302 to this server's image under 127.0.0.2

Every request's path is appended to `--log` (one line, flushed) before it is answered.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def image_bytes(i: int) -> bytes:
    """A distinct small JPEG for index i."""
    from PIL import Image

    colour = (i % 251, (i * 7) % 253, (i * 13) % 255)
    image = Image.new("RGB", (160, 120), colour)
    image.putpixel((i % 160, (i // 160) % 120), (255 - colour[0], 0, 0))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


class _State:
    def __init__(self, latency: float, slow: float, log_path: str | None):
        self.latency, self.slow = latency, slow
        self.log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.images: dict[int, bytes] = {}

    def seen(self, path: str) -> int:
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
            if self.log:
                self.log.write(path + "\n")
                self.log.flush()
            return self.counts[path]

    def image(self, i: int) -> bytes:
        with self.lock:
            if i not in self.images:
                self.images[i] = image_bytes(i)
            return self.images[i]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed ACK
    state: _State

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's signature)
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "image/jpeg", **headers):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        state = self.state
        count = state.seen(self.path)
        if state.latency:
            time.sleep(state.latency)
        parts = self.path.strip("/").split("/")
        kind, i = parts[0], int(parts[-1].split(".")[0]) if parts[-1][:1].isdigit() else 0
        here = f"http://{self.headers.get('Host', '')}"
        if kind == "img" or (kind == "flaky" and count > 2) or (kind == "429" and count > 1):
            return self._send(200, state.image(i))
        if kind == "octet":
            return self._send(200, state.image(i), "application/octet-stream")
        if kind == "slow":
            time.sleep(state.slow)
            return self._send(200, state.image(i))
        if kind == "drip":
            body = state.image(i)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.close_connection = True
            with contextlib.suppress(OSError):
                for offset in range(len(body)):
                    self.wfile.write(body[offset : offset + 1])
                    self.wfile.flush()
                    time.sleep(0.25)
            return None
        if kind in ("404", "500", "flaky"):
            return self._send(404 if kind == "404" else 500, b"no", "text/plain")
        if kind == "429":
            return self._send(429, b"slow down", "text/plain", Retry_After="0")
        if kind == "garbage":
            return self._send(200, b"not an image at all", "image/jpeg")
        if kind == "text":
            return self._send(200, b"<html>not an image</html>", "text/html")
        if kind == "big":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(64 * 2**20))
            self.end_headers()
            self.close_connection = True
            return None
        if kind == "bigstream":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.write(b"\xff\xd8\xff" + b"\0" * (2 * 2**20))
            return None
        targets = {
            "tofile": "file:///etc/passwd",
            "toblocked": "http://169.254.169.254/latest/meta-data",
            "tolocal2": f"{here.replace('127.0.0.1', '127.0.0.2')}/img/{i}.jpg",
        }
        if kind == "chain":
            hops = int(parts[1])
            target = f"/chain/{hops - 1}/{i}" if hops > 1 else f"/img/{i}.jpg"
            return self._send(302, b"", "text/plain", Location=target)
        if kind in targets:
            return self._send(302, b"", "text/plain", Location=targets[kind])
        return self._send(404, b"unknown", "text/plain")


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Clients that hang up (timeouts, size caps, a killed downloader) are expected."""


def serve(port: int, latency: float, slow: float, log: str | None, ready: str | None) -> None:
    """Serve until killed; write the bound port to `ready` (atomically) once listening."""

    class Handler(_Handler):
        state = _State(latency, slow, log)

    server = _Server(("127.0.0.1", port), Handler)
    if ready:
        tmp = f"{ready}.tmp"
        Path(tmp).write_text(str(server.server_address[1]))
        os.replace(tmp, ready)
    server.serve_forever(poll_interval=0.05)


@contextlib.contextmanager
def serving(
    latency: float = 0.0, slow: float = 3.0, log: Path | str | None = None
) -> Iterator[str]:
    """Start the server as a subprocess; yield its base URL; kill it (by PID) on exit."""
    with tempfile.TemporaryDirectory(prefix="realsyn-image-server-") as folder:
        ready = Path(folder) / "port"
        command = [sys.executable, "-m", "realsyn_assets.bench._image_server"]
        command += ["--latency", str(latency), "--slow", str(slow), "--ready", str(ready)]
        if log is not None:
            command += ["--log", str(log)]
        process = subprocess.Popen(command, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"image server did not start (exit {process.poll()})")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{int(ready.read_text())}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--slow", type=float, default=3.0, help="extra seconds of /slow/")
    parser.add_argument("--log", help="append each request path here")
    parser.add_argument("--ready", help="write the bound port here once listening")
    args = parser.parse_args()
    serve(args.port, args.latency, args.slow, args.log, args.ready)


if __name__ == "__main__":
    main()
