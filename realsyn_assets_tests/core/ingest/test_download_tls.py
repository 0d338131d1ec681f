"""https downloads: the connection goes to the validated address with the URL's host as TLS
server name, and certificates are verified (an untrusted one is a connection_error)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from realsyn_assets.bench._image_server import image_bytes
from realsyn_assets.core.ingest import http_fetch as hf

DATA = image_bytes(5)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        self.wfile.write(DATA)

    def log_message(self, *args):
        pass


@pytest.fixture
def https_url(tmp_path):
    """(URL of an image on a local https server with a self-signed certificate, cert file)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/a.jpg", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_https_is_verified_and_works_with_a_trusted_certificate(https_url, monkeypatch):
    url, cert = https_url
    settings = hf.DownloadSettings(retries=0, allow_addresses=("127.0.0.1",))
    outcome, data = hf.Fetcher(settings).fetch(url)
    assert (outcome.status, data) == (hf.CONNECTION_ERROR, None)
    assert outcome.detail.startswith("SSLError")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the certificate is trusted
    outcome, data = hf.Fetcher(settings).fetch(url)
    assert (outcome.status, outcome.http_status, data) == (hf.OK, 200, DATA)
