"""Shared fixtures: a small demo home materialized once through the real CLI and Dagster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["REALSYN_HOME"] = str(home)
    env["DAGSTER_HOME"] = str(home / "dagster")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_cli(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "realsyn_assets.cli", *args],
        env=cli_env(home),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """`realsyn demo` on a 48-document corpus (3 shards), once per test session."""
    home = tmp_path_factory.mktemp("demo_home")
    result = run_cli(home, "demo", "--home", str(home), "--docs", "48", "--shards", "3")
    if result.returncode != 0:
        raise AssertionError(
            f"realsyn demo failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    (home / "demo_stdout.txt").write_text(result.stdout)
    return home


@pytest.fixture
def dagster_instance(demo_home, monkeypatch):
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(demo_home / "dagster"))
    monkeypatch.setenv("REALSYN_HOME", str(demo_home))
    instance = dg.DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """A new REALSYN_HOME with its own Dagster instance, plus a factory for a demo corpus in it:
    `layout, make_corpus = fresh_home; corpus = make_corpus(n_docs, n_shards, seed)`."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from realsyn_assets import pipeline
    from realsyn_assets.demo.corpus import generate_demo_corpus

    layout = pipeline.prepare_environment(tmp_path / "home")
    monkeypatch.setenv("REALSYN_HOME", str(layout.root))
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))

    def make_corpus(n_docs: int, n_shards: int, seed: int):
        return generate_demo_corpus(
            layout.root / "corpus", n_docs=n_docs, n_shards=n_shards, seed=seed
        )

    return layout, make_corpus
