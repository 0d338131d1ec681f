"""Test helper: run a stdlib HTTP server on 127.0.0.1 in a thread for the length of a test."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from unittest import mock

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@contextmanager
def serving(server: HTTPServer) -> Iterator[str]:
    """Serve `server` from a daemon thread and yield its base URL ("http://127.0.0.1:PORT").

    Proxy variables are cleared meanwhile so that HTTP clients talk to the local server
    directly; the server is shut down, closed and its thread joined on exit.
    """
    host, port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    with mock.patch.dict(os.environ, env, clear=True):
        thread.start()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
