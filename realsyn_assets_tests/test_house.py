"""House rules of the code base, checked on the source (ast) and on the loaded Definitions.

* core/ holds pure algorithms: it imports nothing from assets/, resources/, demo/ or Dagster;
* an asset function stays readable: no function in assets/ longer than 60 lines; no core module
  longer than 500 lines; nobody edits `sys.path`;
* names as code: the graph defines exactly the keys of `names.Asset`, uses every `names.Group`,
  and records only metrics declared in the `<Asset>Metrics` classes of names.py;
* the whole Definitions (assets, groups, partitions, deps, checks, jobs, sensors, resources and
  config defaults) is pinned in snapshots/definitions.json: a change to the graph shows up as a
  diff in review. Regenerate it with `REALSYN_UPDATE_SNAPSHOTS=1 .venv/bin/pytest
  realsyn_assets_tests/test_house.py`.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from realsyn_assets_tests.conftest import REPO

PACKAGE = REPO / "realsyn_assets"
TESTS = REPO / "realsyn_assets_tests"
SNAPSHOT = TESTS / "snapshots" / "definitions.json"
MAX_ASSET_FUNCTION_LINES = 60
MAX_CORE_MODULE_LINES = 500
# What core/ must not import: orchestration (Dagster and everything built on it) and demo code.
CORE_FORBIDDEN = (
    "dagster",
    "realsyn_assets.assets",
    "realsyn_assets.resources",
    "realsyn_assets.demo",
    "realsyn_assets.definitions",
    "realsyn_assets.sensors",
    "realsyn_assets.automation",
    "realsyn_assets.concurrency",
    "realsyn_assets.partitions",
    "realsyn_assets.stages",
    "realsyn_assets.pipeline",
    "realsyn_assets.cli",
)


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module imported anywhere in the file (also inside functions), relative resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _report(offenders: list[str], rule: str) -> str:
    return f"{len(offenders)} offender(s) of: {rule}\n  " + "\n  ".join(offenders)


def test_core_imports_no_orchestration_and_no_demo():
    offenders = sorted(
        {
            f"{_rel(path)}:{line} imports {module}"
            for path in _python_files(PACKAGE / "core")
            for line, module in _imports(path)
            if any(module == f or module.startswith(f + ".") for f in CORE_FORBIDDEN)
        }
    )
    assert not offenders, _report(
        offenders, "core/ imports nothing from " + ", ".join(CORE_FORBIDDEN)
    )


def test_asset_functions_are_short():
    offenders = []
    for path in _python_files(PACKAGE / "assets"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # from `def` to its last line
                if lines > MAX_ASSET_FUNCTION_LINES:
                    offenders.append(f"{_rel(path)}:{node.lineno} {node.name}() {lines} lines")
    assert not offenders, _report(
        offenders, f"no function in assets/ longer than {MAX_ASSET_FUNCTION_LINES} lines"
    )


def test_core_modules_are_short():
    offenders = []
    for path in _python_files(PACKAGE / "core"):
        lines = len(path.read_text().splitlines())
        if lines > MAX_CORE_MODULE_LINES:
            offenders.append(f"{_rel(path)} {lines} lines")
    assert not offenders, _report(
        offenders, f"no module in core/ longer than {MAX_CORE_MODULE_LINES} lines"
    )


def test_nobody_edits_sys_path():
    offenders = []
    for path in _python_files(PACKAGE) + _python_files(TESTS):
        for node in ast.walk(ast.parse(path.read_text())):
            touches = (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "sys"
                and any(alias.name == "path" for alias in node.names)
            )
            if touches:
                offenders.append(f"{_rel(path)}:{node.lineno}")
    assert not offenders, _report(offenders, "no sys.path manipulation (install the package)")


# ---- names as code ------------------------------------------------------------------------


def test_graph_defines_exactly_the_declared_assets_and_groups():
    from realsyn_assets.definitions import defs
    from realsyn_assets.names import Asset, Group

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    declared = {a.value for a in Asset}
    assert keys == declared, (
        f"assets not in names.Asset: {sorted(keys - declared)}; "
        f"names.Asset members without an asset: {sorted(declared - keys)}"
    )
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {g.value for g in Group}, (
        f"groups not in names.Group: {sorted(groups - set(Group))}; "
        f"unused names.Group members: {sorted(set(Group) - groups)}"
    )


def metrics_class_name(asset: str) -> str:
    """`sentence_dedup` -> `SentenceDedupMetrics`."""
    return "".join(part.capitalize() for part in asset.split("_")) + "Metrics"


def declared_metrics() -> dict[str, tuple[set[str], set[str]]]:
    """asset -> (plain metric names, prefixes) of its metrics class in names.py."""
    from realsyn_assets import names

    out = {}
    for asset in names.Asset:
        cls = getattr(names, metrics_class_name(asset), None)
        if cls is None:
            continue
        members = list(cls)
        prefixes = {m.value for m in members if m.name.endswith("_PREFIX")}
        out[asset.value] = ({m.value for m in members} - prefixes, prefixes)
    return out


def test_metrics_classes_are_name_tables_named_after_assets():
    from realsyn_assets import names

    assets = {metrics_class_name(a) for a in names.Asset}
    classes = {
        name
        for name, value in vars(names).items()
        if inspect.isclass(value) and name.endswith("Metrics") and name != "Metrics"
    }
    assert classes <= assets, f"metrics classes of no asset: {sorted(classes - assets)}"
    for name in classes:
        table = getattr(names, name)
        assert issubclass(table, names.NameTable), name
        assert all(type(member) is names.Name for member in table), name


def test_definitions_serialize():
    """What the webserver and the run storage do with the Definitions: every name in them must be
    a plain string (Dagster's serialiser rejects Enum members)."""
    from dagster._core.remote_representation.external_data import RepositorySnap

    from realsyn_assets.definitions import defs

    dg.serialize_value(RepositorySnap.from_def(defs.get_repository_def()))


@pytest.mark.slow
def test_every_recorded_metric_is_declared(demo_home):
    """Each (stage, metric) the demo recorded in DuckDB is a member (or has a prefix member) of
    that stage's metrics class; each plain member of a class is recorded by the demo."""
    import duckdb

    con = duckdb.connect(str(demo_home / "metrics.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT DISTINCT stage, metric FROM stage_counts").fetchall()
    finally:
        con.close()
    recorded: dict[str, set[str]] = {}
    for stage, metric in rows:
        recorded.setdefault(stage, set()).add(metric)
    declared = declared_metrics()
    undeclared = [
        f"{stage}: {metric} (not in names.{metrics_class_name(stage)})"
        for stage, metrics in sorted(recorded.items())
        for metric in sorted(metrics)
        if metric not in declared.get(stage, (set(), set()))[0]
        and not any(metric.startswith(p) for p in declared.get(stage, (set(), set()))[1])
    ]
    assert not undeclared, _report(undeclared, "every recorded metric is declared in names.py")
    never_recorded = [
        f"names.{metrics_class_name(stage)}: {metric}"
        for stage, (plain, _) in sorted(declared.items())
        for metric in sorted(plain - recorded.get(stage, set()))
    ]
    assert not never_recorded, _report(never_recorded, "every declared metric is recorded")


# ---- snapshot of the Definitions ----------------------------------------------------------


def _partitions(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return f"dynamic:{partitions_def.name}"
    return f"static:{','.join(partitions_def.get_partition_keys())}"


def _defaults(model: type) -> dict:
    """Field -> default of a Pythonic config class or resource (what the launchpad shows)."""
    out = {}
    for name, field in model.model_fields.items():
        if field.is_required():  # e.g. the nested home resource
            out[name] = "<required>"
            continue
        default = field.default
        if field.default_factory is not None:
            default = field.default_factory()
        out[name] = (
            default if isinstance(default, str | int | float | bool | None) else repr(default)
        )
    return out


def _op_config(assets_def: dg.AssetsDefinition) -> dict | None:
    for param in inspect.signature(assets_def.op.compute_fn.decorated_fn).parameters.values():
        annotation = param.annotation
        if isinstance(annotation, str):
            annotation = assets_def.op.compute_fn.decorated_fn.__globals__.get(annotation)
        if (
            inspect.isclass(annotation)
            and issubclass(annotation, dg.Config)
            and not issubclass(annotation, dg.ConfigurableResource)
        ):
            return {"class": annotation.__name__, "defaults": _defaults(annotation)}
    return None


def definitions_snapshot() -> dict:
    from realsyn_assets.definitions import JOBS, defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for assets_def in defs.assets:
        for key in assets_def.keys:
            node = graph.get(key)
            assets[key.to_user_string()] = {
                "group": node.group_name,
                "partitions": _partitions(node.partitions_def),
                "deps": sorted(k.to_user_string() for k in node.parent_keys),
                "config": _op_config(assets_def),
            }
    checks = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.selection.resolve(graph)) for job in JOBS
    }
    sensors = {s.name: s.job_name if s.targets else None for s in defs.sensors}
    resources = {}
    for key, resource in sorted(defs.resources.items()):
        cls = getattr(resource, "resource_cls", type(resource))  # configured at launch
        resources[key] = {"class": cls.__name__, "defaults": _defaults(cls)}
    return {
        "assets": dict(sorted(assets.items())),
        "checks": checks,
        "jobs": dict(sorted(jobs.items())),
        "sensors": sensors,
        "resources": resources,
    }


def test_definitions_snapshot():
    snapshot = definitions_snapshot()
    text = json.dumps(snapshot, indent=1, sort_keys=False) + "\n"
    if os.environ.get("REALSYN_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.is_file(), f"no snapshot yet: run with REALSYN_UPDATE_SNAPSHOTS=1 ({SNAPSHOT})"
    expected = json.loads(SNAPSHOT.read_text())
    changed = [
        f"{section}: {name}"
        for section in sorted(set(expected) | set(snapshot))
        for name in sorted(_keys(expected.get(section)) | _keys(snapshot.get(section)), key=str)
        if _item(expected.get(section), name) != _item(snapshot.get(section), name)
    ]
    assert not changed, _report(
        changed,
        "the Definitions match snapshots/definitions.json (if intended: "
        "REALSYN_UPDATE_SNAPSHOTS=1 .venv/bin/pytest realsyn_assets_tests/test_house.py)",
    )


def _keys(section) -> set:
    if isinstance(section, dict):
        return set(section)
    return set(section or [])


def _item(section, name):
    if isinstance(section, dict):
        return section.get(name)
    return name in (section or [])
