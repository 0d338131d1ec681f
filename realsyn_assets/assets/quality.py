"""quality: the whole funnel (comparable with the paper's), rejection reasons, plots."""

import json
from pathlib import Path

import dagster as dg

from realsyn_assets.assets._checks import Result, check_result
from realsyn_assets.assets._common import code_version, png_metadata
from realsyn_assets.core.io import atomic_path, atomic_write_bytes
from realsyn_assets.core.quality import report as report_core
from realsyn_assets.names import Asset, BalancedSubsetMetrics, Group, Kind, RetrievedTextsMetrics
from realsyn_assets.names import QualityReportMetadata as QM
from realsyn_assets.partitions import ALL_SHARDS
from realsyn_assets.resources import MetricsResource, StorageResource

REPORT_JSON = "report.json"
FUNNELS = report_core.FUNNELS


def retrieval_precision_overall(metrics: MetricsResource) -> dict[str, float]:
    """Corpus-wide ground-truth precision of the retrieved texts (demo corpus only; empty on
    real data), from the per-shard `gt_*` metrics of retrieved_texts."""
    rows = metrics.query(
        "SELECT partition, metric, value FROM stage_counts WHERE stage=? AND metric LIKE ?",
        [Asset.RETRIEVED_TEXTS, f"{RetrievedTextsMetrics.GT_PREFIX}%"],
    )
    return report_core.weighted_precision(rows)


def _report_from_metrics(metrics: MetricsResource) -> dict:
    """The report.json content from the metrics every stage recorded."""
    images = report_core.funnel_rows(
        report_core.IMAGE_FUNNEL, metrics.total, report_core.PAPER_IMAGES
    )
    sentences = report_core.funnel_rows(
        report_core.SENTENCE_FUNNEL, metrics.total, report_core.PAPER_SENTENCES
    )
    reasons = metrics.query(
        "SELECT stage, reason, sum(count) FROM rejections GROUP BY stage, reason "
        "ORDER BY stage, 3 DESC, reason"  # ties by name: the same bytes however shards ran
    )
    scales = metrics.query(
        "SELECT partition, value FROM stage_counts WHERE stage=? AND metric=? ORDER BY value, partition",
        [Asset.BALANCED_SUBSET, BalancedSubsetMetrics.SAMPLES],
    )
    evals = metrics.query(
        "SELECT partition, metric, value FROM stage_counts WHERE stage=? ORDER BY 1, 2",
        [Asset.CLIP_EVALUATION],
    )
    precision = retrieval_precision_overall(metrics)
    report = report_core.build_report(images, sentences, reasons, scales, evals, precision)
    report["generation"] = report_core.generation_summary(
        metrics.query(
            "SELECT metric, sum(value) FROM stage_counts WHERE stage=? GROUP BY metric",
            [Asset.SYNTHETIC_TEXTS],
        )
    )
    return report


@dg.asset(
    group_name=Group.QUALITY,
    deps=[
        dg.AssetDep(Asset.IMAGE_DEDUP, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.SENTENCE_DEDUP, partition_mapping=ALL_SHARDS),
        Asset.IMAGE_CLUSTERS,
        dg.AssetDep(Asset.BALANCED_SUBSET, partition_mapping=dg.AllPartitionMapping()),
    ],
    code_version=code_version("1"),
    kinds={Kind.DUCKDB},
    description="The image and sentence funnels next to the paper's, rejections by reason, "
    "subset sizes per scale, generation and (demo corpus) retrieval precision, all read from "
    "the DuckDB metrics every stage recorded. Stored in `data/quality_report/`: report.json, "
    "report.md and funnel.png; a rerun rewrites them from the current metrics.",
)
def quality_report(
    context: dg.AssetExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> dg.MaterializeResult:
    report = _report_from_metrics(metrics)
    images, sentences = report["image_funnel"], report["sentence_funnel"]
    fig = report_core.funnel_figure(images, sentences)
    out_dir = storage.layout.asset_dir(Asset.QUALITY_REPORT)
    atomic_write_bytes(out_dir / REPORT_JSON, json.dumps(report, indent=2).encode())
    with atomic_path(out_dir / "funnel.png") as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    markdown = report_core.render_markdown(report)
    atomic_write_bytes(out_dir / "report.md", markdown.encode())
    precision = report["retrieval_precision"]
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(markdown),
            "funnel": png_metadata(fig),
            QM.IMAGES_FINAL: images[-1]["count"],
            QM.SENTENCES_FINAL: sentences[-1]["count"],
            **{
                name: dg.MetadataValue.float(float(value))
                for name, value in precision.items()
                if name != RetrievedTextsMetrics.GT_IMAGES_SCORED
            },
            "path": dg.MetadataValue.path(str(out_dir / "report.md")),
        }
    )


@dg.asset_check(
    asset=Asset.QUALITY_REPORT,
    description="Both funnels (report.json) are non-increasing step by step and end above zero; "
    "a missing or unreadable report fails. ERROR, not blocking: nothing reads the report, but "
    "a funnel that grows means a stage's counts are wrong.",
)
def funnels_monotone(storage: StorageResource) -> Result:
    return funnels_result(storage.layout.asset_dir(Asset.QUALITY_REPORT) / REPORT_JSON)


def funnels_result(path: Path) -> Result:
    """The check's logic on one report.json."""
    try:
        report = json.loads(path.read_text())
        problems = report_core.funnel_problems(report)
        finals = {name: int(report[name][-1]["count"]) if report[name] else 0 for name in FUNNELS}
    except (OSError, ValueError, KeyError, TypeError) as error:
        return check_result(False, f"no readable report at {path}: {error!r}", threshold=0)
    return check_result(
        not problems,
        "; ".join(problems) or "funnels monotone and non-empty",
        **{f"{name}_final": n for name, n in finals.items()},
        problems=len(problems),
        threshold=0,
    )
