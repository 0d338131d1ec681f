"""Shared fixtures (a small demo home materialized once through the real CLI and Dagster) and
the test tiers, marked here so that no test has to remember them:

* `e2e`: every test under realsyn_assets_tests/e2e/ (drives the CLI or the webserver);
* `slow`: every test that builds a demo home through Dagster (fixtures `demo_home`,
  `fresh_home`), plus the tests marked `slow` explicitly (they train a model);
* `shared_data`: every test whose code, or a helper function of its module that it calls, uses a
  path under ../shared/data.

`.venv/bin/pytest -m "not slow"` is the quick tier; `.venv/bin/pytest` runs everything.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
E2E = Path(__file__).resolve().parent / "e2e"
SLOW_FIXTURES = {"demo_home", "fresh_home"}


def _uses_shared_data(function, module, depth: int = 2) -> bool:
    """Whether `function` (or a function of `module` it calls, `depth` levels down) names a
    module-level path under SHARED_DATA."""
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    names = set(code.co_names)
    for const in code.co_consts:  # nested functions and comprehensions
        if inspect.iscode(const):
            names |= set(const.co_names)
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, Path) and value.is_relative_to(SHARED_DATA):
            return True
        if (
            depth
            and inspect.isfunction(value)
            and value.__module__ == module.__name__
            and _uses_shared_data(value, module, depth - 1)
        ):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        module = getattr(item, "module", None)
        function = getattr(item, "function", None)
        if module is not None and _uses_shared_data(function, module):
            item.add_marker(pytest.mark.shared_data)


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


@pytest.fixture
def clean_env(monkeypatch):
    """`realsyn` run in process (prepare_environment) sets REALSYN_HOME / DAGSTER_HOME in
    os.environ: start without them and remove them afterwards."""
    for name in ("REALSYN_HOME", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    yield
    for name in ("REALSYN_HOME", "DAGSTER_HOME"):
        os.environ.pop(name, None)
