"""A home's resource settings: `<REALSYN_HOME>/resources.yaml`, the defaults of every run.

One file configures the models and backends for every way the graph runs — `realsyn run` /
`realsyn demo`, runs launched from the UI and runs the automation daemon launches — so a
configured encoder cannot be used by one stage and forgotten by the next::

    encoder: {model_name: EVA02-E-14-plus, checkpoint: /models/eva02_e14_plus.pt, device: cuda}
    generator: {backend: vllm, model: meta-llama/Meta-Llama-3-8B-Instruct, dtype: bfloat16}
    captioner: {backend: openai, model: Qwen/Qwen2-VL-2B-Instruct, base_url: "http://gpu:8001/v1"}

Top-level keys are resource names, values their fields (the launchpad describes each). Run
config given at launch still wins for that run. The code location reads the file when it loads
(restart `dg dev` or reload the location after editing it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from realsyn_assets.resources.home import resolve_home

RESOURCES_FILE = "resources.yaml"

# Resources a home may configure; `home` itself is the folder the file lives in.
CONFIGURABLE = ("storage", "metrics", "vectors", "encoder", "engine", "generator", "captioner")


class ResourceSettingsError(ValueError):
    """resources.yaml is not a mapping of known resource names to mappings of fields."""


def settings_path(home: str | os.PathLike | None = None) -> Path:
    return resolve_home(home) / RESOURCES_FILE


def load_resource_settings(home: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The fields per resource name from the home's resources.yaml ({} when there is none)."""
    path = settings_path(home)
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ResourceSettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ResourceSettingsError(f"{path}: expected a mapping of resource names, got {raw!r}")
    unknown = sorted(set(raw) - set(CONFIGURABLE))
    if unknown:
        raise ResourceSettingsError(
            f"{path}: unknown resource(s) {', '.join(map(str, unknown))}; "
            f"known: {', '.join(CONFIGURABLE)}"
        )
    for name, fields in raw.items():
        if not isinstance(fields, dict) or "home" in fields:
            raise ResourceSettingsError(
                f"{path}: `{name}` must be a mapping of its fields (not `home`), got {fields!r}"
            )
    return {name: dict(fields) for name, fields in raw.items()}


def build(name: str, cls: type, settings: dict[str, dict[str, Any]], source: Path, **given: Any):
    """`cls(**given, **settings[name])`, a bad field named with the file (`source`) it came from."""
    fields = settings.get(name, {})
    try:
        return cls(**given, **fields)
    except Exception as exc:  # pydantic's ValidationError names the field; add the file
        if not fields:
            raise
        raise ResourceSettingsError(f"{source}: bad settings for `{name}`: {exc}") from exc
