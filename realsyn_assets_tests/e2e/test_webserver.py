"""The UI path: a real Dagster webserver over the demo home answers GraphQL with our assets,
jobs (including the re-clustering action), materializations and check results."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from realsyn_assets_tests.conftest import REPO, cli_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def _restore_default_signals() -> None:
    # Started from pytest the server may inherit ignored SIGINT/SIGTERM; make it stoppable.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def webserver(demo_home: Path):
    port = _free_port()
    log = open(demo_home / "webserver.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "realsyn_assets.definitions",
        ],
        cwd=str(REPO),
        env=cli_env(demo_home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_restore_default_signals,  # noqa: PLW1509 - no threads started yet
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise AssertionError((demo_home / "webserver.log").read_text()[-4000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def test_ui_serves_the_demo_runs_and_checks(webserver: int):
    data = _graphql(
        webserver,
        """{ repositoriesOrError { ... on RepositoryConnection { nodes {
               jobs { name } sensors { name } } } } }""",
    )
    (repo,) = data["repositoriesOrError"]["nodes"]
    jobs = {j["name"] for j in repo["jobs"]}
    assert {"recluster_sentences_job", "scale_job", "shard_extract_job"} <= jobs
    assert "inbox_sensor" in {s["name"] for s in repo["sensors"]}

    data = _graphql(
        webserver,
        """{ assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId }
               assetChecksOrError { ... on AssetChecks { checks { name } } } } }""",
    )
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert "sentence_clusters" in nodes and "retrieved_texts" in nodes
    for name, node in nodes.items():
        assert node["assetMaterializations"], f"{name} has no materialization in the UI"
    checks = {c["name"] for c in nodes["sentence_clusters"]["assetChecksOrError"]["checks"]}
    assert {"clusters_cover_sentences", "clusters_current"} <= checks

    data = _graphql(
        webserver,
        """{ runsOrError(limit: 500) { ... on Runs { results { status jobName } } } }""",
    )
    runs = data["runsOrError"]["results"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs)
    assert "sentence_clusters_job" in {r["jobName"] for r in runs}
