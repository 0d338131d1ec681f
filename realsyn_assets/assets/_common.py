"""Small helpers shared by the asset modules: metadata, stage bookkeeping, code versions."""

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa

from realsyn_assets.resources.metrics import MetricsResource


def code_version(logic: str, *configs: type, exclude: tuple[str, ...] = ()) -> str:
    """An asset's code version: `<logic>.<hash>`.

    `logic` is bumped by hand when the asset's own code changes what it writes. The hash covers
    the defaults of the config classes (Dagster `Config`s or resources, pydantic models) whose
    fields change results, so editing a default such as `phash_max_distance` changes the code
    version too and the UI marks the asset and everything downstream stale. `exclude` names
    fields that only change speed or logging (batch sizes, workers, progress)."""
    defaults: dict = {}
    for config in configs:
        for name, field in sorted(config.model_fields.items()):
            if name in exclude:
                continue
            value = field.default
            if value is not None and not isinstance(value, str | int | float | bool | list | tuple):
                value = repr(value)
            defaults[f"{config.__name__}.{name}"] = value
    if not defaults:
        return logic
    blob = json.dumps(defaults, sort_keys=True, default=str).encode()
    return f"{logic}.{hashlib.sha256(blob).hexdigest()[:8]}"


def table_schema(table: pa.Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in table.schema]
    )


def stage_metadata(
    metrics: MetricsResource,
    stage: str,
    partition: str,
    counts: Mapping[str, float],
    rejections: Mapping[str, int] | None = None,
    table: pa.Table | None = None,
    path: Path | None = None,
) -> dict:
    """Record counts in DuckDB and return the same numbers as Dagster metadata."""
    metrics.record(stage, partition, counts, rejections or {})
    meta: dict = {}
    for key, value in counts.items():
        meta[key] = dg.MetadataValue.float(float(value)) if isinstance(value, float) else int(value)
    if rejections:
        meta["rejections"] = dg.MetadataValue.json(
            {k: int(v) for k, v in sorted(rejections.items())}
        )
    if table is not None:
        meta["dagster/row_count"] = table.num_rows
        meta["dagster/column_schema"] = table_schema(table)
    if path is not None:
        meta["path"] = dg.MetadataValue.path(str(path))
    return meta


def png_bytes_metadata(data: bytes, label: str = "plot") -> dg.MetadataValue:
    """PNG bytes as inline markdown (Dagster shows it on the asset page)."""
    import base64

    encoded = base64.b64encode(data).decode()
    return dg.MetadataValue.md(f"![{label}](data:image/png;base64,{encoded})")


def png_metadata(figure) -> dg.MetadataValue:
    """A small matplotlib figure as inline markdown; closes the figure."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return png_bytes_metadata(buffer.getvalue())


def rejection_counts(reasons: list[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    return counts
