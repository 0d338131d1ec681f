"""`realsyn instance`: the home's dagster.yaml written for PostgreSQL or SQLite (no server here).

Covers what the Postgres e2e test (e2e/test_postgres_instance.py) cannot cheaply: a user's own
sections and comments survive, conflicting storage sections are refused unless forced, the
SQLite round trip restores the file, no password reaches the disk, Dagster's own config schema
accepts the written file, and an unreachable server is named in the error.
"""

from __future__ import annotations

import socket

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from realsyn_assets import instance_config as ic
from realsyn_assets.cli import main
from realsyn_assets.pipeline import DAGSTER_YAML, DAGSTER_YAML_SECTIONS, ensure_dagster_yaml

URL = "postgresql://realsyn@db.example:6543/realsyn_runs?sslmode=require"

CUSTOM = """# my notes about this instance
telemetry:
  enabled: false
run_monitoring:
  enabled: true   # keep an eye on runs
  poll_interval_seconds: 30

# pools: my own limit
concurrency:
  pools:
    default_limit: 3
"""


def _target(env="REALSYN_PG_PASSWORD"):
    return ic.PostgresTarget.from_url(URL, env)


def _sections(text: str) -> dict:
    return yaml.safe_load(text)


def test_postgres_yaml_keeps_realsyn_and_user_sections(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(CUSTOM)
    assert ic.set_storage(config, _target()) is True
    text = config.read_text()
    assert text.startswith(CUSTOM)  # every other section and comment byte for byte
    data = _sections(text)
    assert data["concurrency"] == {"pools": {"default_limit": 3}}
    assert data["run_monitoring"]["poll_interval_seconds"] == 30
    assert data["storage"] == {
        "postgres": {
            "postgres_db": {
                "username": "realsyn",
                "hostname": "db.example",
                "port": 6543,
                "db_name": "realsyn_runs",
                "scheme": "postgresql+psycopg2",
                "password": {"env": "REALSYN_PG_PASSWORD"},
                "params": {"sslmode": "require"},
            }
        }
    }
    # Dagster's own schema accepts it (run, event log and schedule storage from one section)
    validated, _ = dagster_instance_config(str(tmp_path))
    assert "postgres" in validated["storage"]
    assert ic.set_storage(config, _target()) is False  # idempotent
    assert ic.describe_storage(config).startswith(
        "postgres: postgresql://realsyn@db.example:6543/realsyn_runs"
    )


def test_default_yaml_gets_concurrency_and_postgres(tmp_path):
    config = tmp_path / "dagster.yaml"
    ic.set_storage(config, _target())
    data = _sections(config.read_text())
    for key in DAGSTER_YAML_SECTIONS:
        assert key in data
    assert data["telemetry"] == {"enabled": False}
    assert ic.postgres_target(config) == _target()


def test_ensure_dagster_yaml_leaves_a_postgres_config_alone(tmp_path):
    config = tmp_path / "dagster.yaml"
    ic.set_storage(config, _target())
    before = config.read_bytes()
    ensure_dagster_yaml(config)
    assert config.read_bytes() == before
    # a Postgres config without realsyn's sections only gets those appended
    own = "telemetry:\n  enabled: false\n" + yaml.safe_dump({"storage": _target().section()})
    config.write_text(own)
    ensure_dagster_yaml(config)
    text = config.read_text()
    assert text.startswith(own)
    assert set(DAGSTER_YAML_SECTIONS) <= set(_sections(text))
    assert _sections(text)["storage"] == _target().section()


@pytest.mark.parametrize(
    "section",
    [
        "storage:\n  sqlite:\n    base_dir: /data/dagster\n",
        "run_storage:\n  module: dagster.core.storage.runs\n  class: SqliteRunStorage\n"
        "  config:\n    base_dir: /data/runs\n",
        "storage:\n  postgres:\n    postgres_url: postgresql://other@elsewhere/db\n",
    ],
)
def test_conflicting_storage_sections_are_refused_unless_forced(tmp_path, section):
    config = tmp_path / "dagster.yaml"
    config.write_text(CUSTOM + section)
    before = config.read_bytes()
    with pytest.raises(ic.InstanceConfigError, match="not written by realsyn.*--force"):
        ic.set_storage(config, _target())
    with pytest.raises(ic.InstanceConfigError, match="--force"):
        ic.set_storage(config, None)  # --sqlite too: the user's section would go
    assert config.read_bytes() == before
    assert ic.set_storage(config, _target(), force=True)
    data = _sections(config.read_text())
    assert data["storage"] == _target().section() and "run_storage" not in data
    assert config.read_text().startswith(CUSTOM)


def test_sqlite_round_trip_restores_the_file(tmp_path):
    config = tmp_path / "dagster.yaml"
    config.write_text(CUSTOM)
    ic.set_storage(config, _target())
    ic.set_storage(config, ic.PostgresTarget.from_url("postgresql://u@other:5432/d"))  # ours: ok
    assert ic.postgres_target(config).hostname == "other"
    assert ic.set_storage(config, None) is True
    assert config.read_text() == CUSTOM
    assert ic.describe_storage(config).startswith("sqlite")
    assert ic.set_storage(config, None) is False


def test_no_password_on_disk(tmp_path, monkeypatch):
    secret = "s3cr3t-Pa55"
    monkeypatch.setenv("REALSYN_PG_PASSWORD", secret)
    config = tmp_path / "dagster.yaml"
    ic.set_storage(config, _target())
    assert secret not in config.read_text()
    assert ic.postgres_target(config).password() == secret  # read from the env when opened
    with pytest.raises(ic.InstanceConfigError, match="holds a password"):
        ic.PostgresTarget.from_url(f"postgresql://realsyn:{secret}@db:5432/x")
    no_env = ic.PostgresTarget.from_url(URL, None)  # --password-env '': libpq's own sources
    ic.set_storage(config, no_env)
    assert "password" not in _sections(config.read_text())["storage"]["postgres"]["postgres_db"]
    assert secret not in "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())


@pytest.mark.parametrize(
    "url, match",
    [
        ("mysql://u@h/db", "not a postgresql"),
        ("postgresql://h:5432/db", "lacks the user"),
        ("postgresql://u@h:5432/", "lacks the database"),
        ("postgresql://u@h:notaport/db", "bad port"),
    ],
)
def test_bad_urls_are_refused(url, match):
    with pytest.raises(ic.InstanceConfigError, match=match):
        ic.PostgresTarget.from_url(url)


def test_unreachable_server_is_named(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("REALSYN_PG_PASSWORD", "")
    target = ic.PostgresTarget.from_url(f"postgresql://realsyn@127.0.0.1:{port}/realsyn")
    with pytest.raises(ic.InstanceConfigError, match=f"at 127.0.0.1:{port}"):
        ic.configure(tmp_path, target)
    assert (
        not (tmp_path / "dagster.yaml").exists()
        or "postgres" not in (tmp_path / "dagster.yaml").read_text()
    )
    monkeypatch.delenv("REALSYN_PG_PASSWORD")
    with pytest.raises(ic.InstanceConfigError, match=r"\$REALSYN_PG_PASSWORD is not set"):
        ic.check_connection(target)


def test_cli_prints_the_storage(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("REALSYN_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    assert main(["instance", "--home", str(home)]) == 0
    assert "instance storage: sqlite" in capsys.readouterr().out
    config = home / "dagster" / "dagster.yaml"
    assert config.read_text().startswith(DAGSTER_YAML)
    config.write_text(config.read_text() + "storage:\n  sqlite:\n    base_dir: /x\n")
    assert main(["instance", "--home", str(home), "--sqlite"]) == 1
    assert "--force" in capsys.readouterr().err
