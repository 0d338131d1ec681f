"""Small helpers shared by the asset modules: metadata and stage bookkeeping."""

import io
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa

from realsyn_assets.resources.metrics import MetricsResource


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
