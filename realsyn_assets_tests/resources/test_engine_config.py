"""The engine resource without a cluster: the local engine calls the function in this process
and never imports Ray; the address comes from the resource field, else $REALSYN_RAY_ADDRESS,
else <home>/engine.yaml; a failing task's error names the task; `realsyn engine` writes and
removes engine.yaml and `realsyn status`'s engine line follows it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from realsyn_assets import cli, engine_cli
from realsyn_assets.resources import EngineResource, HomeResource
from realsyn_assets.resources.engine import (
    ADDRESS_ENV,
    ENGINE_FILE,
    read_engine_file,
    resolve_settings,
    task_name,
    write_engine_file,
)
from realsyn_assets.resources.home import Home


@pytest.fixture(autouse=True)
def _no_env_address(monkeypatch):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)


def _engine(root, **fields) -> EngineResource:
    return EngineResource(home=HomeResource(path=str(root)), **fields)


def test_local_engine_runs_in_process_without_importing_ray_or_dagster_ray(tmp_path):
    code = (
        "import os, sys\n"
        "from realsyn_assets.resources import EngineResource, HomeResource\n"
        f"engine = EngineResource(home=HomeResource(path={str(tmp_path)!r}))\n"
        "pid = engine.run(os.getpid, name='realsyn:probe:local', gpu=True)\n"
        "print(pid == os.getpid(), 'ray' in sys.modules or 'dagster_ray' in sys.modules,\n"
        "      engine.describe())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ADDRESS_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["True", "False"], out.stdout
    assert "local" in out.stdout


def test_local_engine_passes_arguments_and_returns_the_result(tmp_path):
    engine = _engine(tmp_path)
    assert engine.run(divmod, 17, 5, name=task_name("a", "s")) == (3, 2)
    assert engine.run(sorted, [3, 1, 2], reverse=True, name=task_name("a", "s")) == [3, 2, 1]


def test_a_failing_task_keeps_its_type_and_names_the_task(tmp_path):
    engine = _engine(tmp_path)
    with pytest.raises(ZeroDivisionError) as raised:
        engine.run(divmod, 1, 0, name=task_name("extracted_images", "shard-7"))
    assert any("realsyn:extracted_images:shard-7" in note for note in raised.value.__notes__)


def test_task_names_are_asset_and_shard():
    assert task_name("image_embeddings", "abc123") == "realsyn:image_embeddings:abc123"


def test_precedence_field_over_env_over_file(tmp_path, monkeypatch):
    assert not _engine(tmp_path).settings().is_ray
    assert _engine(tmp_path).settings().source == "default"
    write_engine_file(tmp_path, "file-head:6379", gpus_per_gpu_task=0.25, cpus_per_task=2)
    settings = _engine(tmp_path).settings()
    assert (settings.address, settings.source) == ("file-head:6379", "file")
    assert (settings.gpus_per_gpu_task, settings.cpus_per_task) == (0.25, 2.0)
    monkeypatch.setenv(ADDRESS_ENV, "env-head:6379")
    assert _engine(tmp_path).settings().address == "env-head:6379"
    assert _engine(tmp_path).settings().source == "env"
    explicit = _engine(tmp_path, ray_address="field-head:6379", gpus_per_gpu_task=0.5)
    settings = explicit.settings()
    assert (settings.address, settings.source) == ("field-head:6379", "resource")
    assert settings.gpus_per_gpu_task == 0.5  # the field, not the file's 0.25
    assert settings.cpus_per_task == 2.0  # the field at its default: the file's value
    assert "field-head:6379" in explicit.describe()


def test_engine_file_is_a_ray_mapping_and_bad_files_name_themselves(tmp_path):
    path = write_engine_file(tmp_path, " head:6379 ")
    assert path == tmp_path / ENGINE_FILE
    assert read_engine_file(tmp_path) == {"address": "head:6379"}
    path.write_text("ray: [not, a, mapping]\n")
    with pytest.raises(ValueError, match=ENGINE_FILE):
        resolve_settings(tmp_path)
    path.write_text("ray: {address: h:1, gpus_per_gpu_task: lots}\n")
    with pytest.raises(ValueError, match="gpus_per_gpu_task"):
        resolve_settings(tmp_path)
    with pytest.raises(ValueError, match="address"):
        write_engine_file(tmp_path, "  ")


def test_cli_engine_writes_and_removes_the_file_and_status_line_follows(tmp_path, capsys):
    home = str(tmp_path / "home")
    assert cli.main(["engine", "--home", home, "--ray", "10.1.2.3:6379"]) == 0
    assert read_engine_file(home)["address"] == "10.1.2.3:6379"
    assert "ray at 10.1.2.3:6379" in engine_cli.engine_line(Home(home))
    assert cli.main(["engine", "--home", home, "--local"]) == 0
    assert not (tmp_path / "home" / ENGINE_FILE).exists()
    assert engine_cli.engine_line(Home(home)).startswith("engine: local")
    (tmp_path / "home" / ENGINE_FILE).write_text(": : :\n")
    assert "INVALID" in engine_cli.engine_line(Home(home))
    assert cli.main(["engine", "--home", home]) == 1
    assert ENGINE_FILE in capsys.readouterr().out


def test_cli_and_resource_agree_on_the_environment_variable():
    assert engine_cli.ADDRESS_ENV == ADDRESS_ENV


class _Cluster:
    """What `_gpus` asks of the `ray` module: the cluster's resources."""

    def __init__(self, gpus: float):
        self.gpus = gpus

    def cluster_resources(self) -> dict:
        return {"CPU": 16.0, "GPU": self.gpus} if self.gpus else {"CPU": 16.0}


def test_gpu_steps_ask_for_gpus_only_on_a_cluster_that_has_them(tmp_path):
    from realsyn_assets.resources.engine import _gpus

    settings = _engine(tmp_path, ray_address="h:1", gpus_per_gpu_task=0.5).settings()
    assert _gpus(_Cluster(8), settings, True, "realsyn:image_embeddings:s") == 0.5
    assert _gpus(_Cluster(8), settings, False, "realsyn:extracted_images:s") == 0
    assert _gpus(_Cluster(0), settings, True, "realsyn:image_embeddings:s") == 0
    none = _engine(tmp_path, ray_address="h:1", gpus_per_gpu_task=0.0).settings()
    assert _gpus(_Cluster(8), none, True, "realsyn:image_embeddings:s") == 0


def test_task_workers_follow_the_cpus_a_ray_task_asks_for(tmp_path):
    assert _engine(tmp_path).task_workers(6) == 6
    assert _engine(tmp_path, ray_address="h:1").task_workers(6) == 1
    assert _engine(tmp_path, ray_address="h:1", cpus_per_task=4).task_workers(6) == 4


def test_the_ray_test_fails_without_ray_when_a_cluster_is_required(monkeypatch):
    from realsyn_assets_tests.e2e.ray_cluster import REQUIRE, require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setenv(REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="ray is not installed"):
        require_ray()
    monkeypatch.delenv(REQUIRE)
    with pytest.raises(pytest.skip.Exception, match="ray is not installed"):
        require_ray()
