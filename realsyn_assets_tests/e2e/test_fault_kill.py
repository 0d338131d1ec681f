"""kill -9 in the middle of a write loses no committed output, and a rerun is identical.

One home goes through four killed runs, each stopped in the middle of one kind of write
(kill_hooks.py pauses the process there and the test sends SIGKILL to its whole process group):

1. extraction: `extracted_images`' parquet written to its temporary name, not renamed;
2. a DuckDB metrics transaction (extracted_sentences of shard-001) before its COMMIT;
3. a LanceDB write: the `images` rows of shard-001 deleted, the new rows not yet added;
4. a checkpoint: the 15M scale's CLIP `checkpoint.pt` written to its temporary name.

After each kill nothing is left running, every parquet file is readable and DuckDB and LanceDB
open. Then one uninterrupted `realsyn demo` over the same home must exit 0 with every check
passed, leave no temporary file, keep LanceDB rows equal to the kept rows without duplicates,
and produce the same outputs as the uninterrupted run of the conftest's `demo_home` (same corpus
size and seed).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import lancedb
import pyarrow.parquet as pq
import pytest

from realsyn_assets_tests.conftest import REPO, cli_env
from realsyn_assets_tests.e2e.kill_hooks import (
    MARKER_ENV,
    PIPELINE_WITHOUT_BOOTSTRAP,
    POINT_ENV,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

DOCS, SHARDS = "48", "3"  # the conftest's demo_home: the uninterrupted run to compare with
LAUNCH = "from realsyn_assets_tests.e2e.kill_hooks import main; raise SystemExit(main())"
MARKER_WAIT_S = 900
RERUN_TIMEOUT_S = 1800


@dataclass
class Kill:
    name: str
    point: str
    command: list[str]


def _kills(home: Path) -> list[Kill]:
    # --workers 1: the pause points are installed in this process only, not in spawned workers
    demo = ["demo", "--home", str(home), "--docs", DOCS, "--shards", SHARDS, "--workers", "1"]
    partial = [PIPELINE_WITHOUT_BOOTSTRAP, "--home", str(home), "--scales", "15M"]
    return [
        Kill("extraction", "file:*/data/extracted_images/shard-000.parquet", demo),
        Kill("duckdb", "duckdb:extracted_sentences:shard-001", demo),
        Kill("lancedb", "lancedb:images:shard-001", partial),
        Kill("checkpoint", "file:*/data/clip_checkpoint/15M/checkpoint.pt", partial),
    ]


@dataclass
class AfterKill:
    """What the home looked like right after one kill."""

    paused_at: str = ""
    cut_target_exists: bool | None = None  # the file whose write was cut, right after the kill
    error: str = ""  # the pause point was never reached, or the kill failed
    survivors: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    duckdb_rows: int = -1
    lancedb: dict[str, int] = field(default_factory=dict)
    lancedb_duplicates: int = 0


def temp_files(home: Path) -> list[str]:
    """Temporary files of core.io.atomic_path (`.NAME.XXXXXXXX.tmp[.npy]`) anywhere in the home."""
    return sorted(
        str(p.relative_to(home))
        for p in home.rglob(".*")
        if p.is_file() and ".tmp" in p.name and "dagster" not in p.relative_to(home).parts
    )


def parquet_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "data").rglob("*.parquet") if not p.name.startswith("."))


def unreadable_parquet(home: Path) -> list[str]:
    bad = []
    for path in parquet_files(home):
        try:
            pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            bad.append(f"{path.relative_to(home)}: {type(exc).__name__}: {exc}")
    return bad


def lancedb_tables(home: Path) -> dict[str, object]:
    if not (home / "lancedb").exists():
        return {}
    db = lancedb.connect(str(home / "lancedb"))
    return {
        name: db.open_table(name).to_arrow()
        for name in ("images", "sentences")
        if (home / "lancedb" / f"{name}.lance").exists()
    }


def _live_members(pgid: int) -> list[str]:
    """Processes of the group that are still running (zombies awaiting a reaper do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"{stat.parent.name} {text[: text.rindex(')') + 1]}")
    return members


def _kill_group(proc: subprocess.Popen) -> list[str]:
    with_pgid = proc.pid  # start_new_session: the child leads its own group
    try:
        os.killpg(with_pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    deadline = time.monotonic() + 20
    while (survivors := _live_members(with_pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return survivors


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def kill_at(home: Path, kill: Kill, logs: Path) -> AfterKill:
    marker = logs / f"{kill.name}.marker"
    log = logs / f"{kill.name}.log"
    env = cli_env(home) | {POINT_ENV: kill.point, MARKER_ENV: str(marker)}
    result, paused = AfterKill(), {}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, *kill.command],
            cwd=str(REPO),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + MARKER_WAIT_S
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if marker.exists():
                paused = json.loads(marker.read_text())
                result.paused_at = paused["what"]
            else:
                result.error = f"never reached {kill.point} (exit {proc.poll()}):\n{_tail(log)}"
        finally:
            result.survivors = _kill_group(proc)
    if paused.get("target"):
        result.cut_target_exists = Path(paused["target"]).exists()
    result.temp_files = temp_files(home)
    result.unreadable = unreadable_parquet(home)
    if (home / "metrics.duckdb").exists():
        con = duckdb.connect(str(home / "metrics.duckdb"), read_only=True)
        result.duckdb_rows = con.execute("SELECT count(*) FROM stage_counts").fetchone()[0]
        con.close()
    for name, table in lancedb_tables(home).items():
        result.lancedb[name] = table.num_rows
        id_column = "image_id" if name == "images" else "sentence_id"
        pairs = list(zip(table["shard"].to_pylist(), table[id_column].to_pylist(), strict=True))
        result.lancedb_duplicates += len(pairs) - len(set(pairs))
    return result


@dataclass
class KilledHome:
    home: Path
    after: dict[str, AfterKill]
    rerun: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def killed_home(tmp_path_factory) -> KilledHome:
    root = tmp_path_factory.mktemp("kill")
    home, logs = root / "home", root / "logs"
    logs.mkdir()
    after = {kill.name: kill_at(home, kill, logs) for kill in _kills(home)}
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "realsyn_assets.cli",
            "demo",
            "--home",
            str(home),
            "--docs",
            DOCS,
            "--shards",
            SHARDS,
        ],
        cwd=str(REPO),
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=RERUN_TIMEOUT_S,
    )
    return KilledHome(home, after, rerun)


def _check_after_kill(result: AfterKill, paused_in: str, left_temp: str | None) -> None:
    assert not result.error, result.error
    assert paused_in in result.paused_at, result.paused_at
    assert not result.survivors, f"still running after kill -9 of the group: {result.survivors}"
    assert not result.unreadable, result.unreadable
    assert result.lancedb_duplicates == 0
    if left_temp is not None:  # the write really was cut: its temporary file is there
        assert any(left_temp in name for name in result.temp_files), result.temp_files


def test_kill_during_extraction_leaves_every_output_readable(killed_home):
    after = killed_home.after["extraction"]
    _check_after_kill(after, "extracted_images/shard-000.parquet", ".shard-000.parquet.")
    # the cut write never reached its name; what is in place is whole (checked above)
    assert after.cut_target_exists is False


def test_kill_during_duckdb_write_keeps_metrics_readable(killed_home):
    after = killed_home.after["duckdb"]
    _check_after_kill(after, "extracted_sentences", None)
    assert after.duckdb_rows > 0  # shard-000's committed rows survived the killed transaction


def test_kill_during_lancedb_write_keeps_tables_readable(killed_home):
    after = killed_home.after["lancedb"]
    _check_after_kill(after, "lancedb table images", None)
    assert after.lancedb.get("images", 0) > 0  # shard-000's rows stay


def test_kill_during_checkpoint_write_leaves_no_partial_checkpoint(killed_home):
    after = killed_home.after["checkpoint"]
    _check_after_kill(after, "clip_checkpoint/15M/checkpoint.pt", ".checkpoint.pt.")
    # the checkpoint is absent (never renamed into place), not half-written
    assert after.cut_target_exists is False


def test_kill_rerun_exits_zero_and_passes_every_check(killed_home):
    rerun = killed_home.rerun
    output = rerun.stdout[-6000:] + rerun.stderr[-6000:]
    assert rerun.returncode == 0, output
    assert "FAILED" not in rerun.stdout, output
    assert rerun.stdout.strip().splitlines()[-1].endswith("0 failed"), output


def test_kill_rerun_leaves_no_temp_files(killed_home):
    assert temp_files(killed_home.home) == []


def test_kill_rerun_lancedb_rows_equal_kept_rows_without_duplicates(killed_home):
    home = killed_home.home
    assert unreadable_parquet(home) == []
    tables = lancedb_tables(home)
    for name, asset, id_column in (
        ("images", "extracted_images", "image_id"),
        ("sentences", "extracted_sentences", "sentence_id"),
    ):
        stored = tables[name]
        pairs = list(zip(stored["shard"].to_pylist(), stored[id_column].to_pylist(), strict=True))
        assert len(pairs) == len(set(pairs)), f"duplicate ids in LanceDB table {name}"
        kept = []
        for path in sorted((home / "data" / asset).glob("*.parquet")):
            if not path.name.endswith(".rejected.parquet"):
                table = pq.read_table(path, columns=["shard", id_column])
                kept += zip(table["shard"].to_pylist(), table[id_column].to_pylist(), strict=True)
        assert sorted(pairs) == sorted(kept), name


def _normalized(value, home: str):
    """Paths under the home made relative to it (absolute or not, as each output stores them),
    NaN made comparable."""
    if isinstance(value, str):
        return value.replace(home + os.sep, "").replace(home, "<home>")
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_normalized(v, home) for v in value]
    if isinstance(value, dict):
        return {k: _normalized(v, home) for k, v in value.items()}
    return value


def _outputs(home: Path) -> dict[str, object]:
    """Every parquet file's rows, every data card and the ids in LanceDB, home paths
    normalized."""
    outputs: dict[str, object] = {}
    for name, table in lancedb_tables(home).items():
        rows = table.drop_columns(["vector"]).to_pylist()
        outputs[f"lancedb/{name}"] = sorted(json.dumps(_normalized(r, str(home))) for r in rows)
    for path in parquet_files(home):
        rows = pq.read_table(path).to_pylist()
        outputs[str(path.relative_to(home))] = _normalized(rows, str(home))
    for card in sorted((home / "data").rglob("DATA_CARD.md")):
        outputs[str(card.relative_to(home))] = _normalized(card.read_text(), str(home))
    return outputs


def test_kill_rerun_equals_an_uninterrupted_run(killed_home, demo_home):
    rerun, uninterrupted = _outputs(killed_home.home), _outputs(demo_home)
    assert sorted(rerun) == sorted(uninterrupted)
    differ = [name for name in sorted(rerun) if rerun[name] != uninterrupted[name]]
    assert not differ, f"outputs differ from an uninterrupted run: {differ}"
    assert "data/balanced_subset/15M/realsyn.parquet" in rerun
    assert any(name.startswith("data/retrieved_texts/") for name in rerun)
