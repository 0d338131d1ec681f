"""quality: the whole funnel (comparable with the paper's), rejection reasons, plots."""

import json

import dagster as dg

from realsyn_assets.assets._checks import Result, check_result
from realsyn_assets.assets._common import png_metadata
from realsyn_assets.core.io import atomic_write_bytes
from realsyn_assets.partitions import ALL_SHARDS
from realsyn_assets.resources import MetricsResource, StorageResource

# (label, stage, metric) in pipeline order; totals are summed over partitions.
IMAGE_FUNNEL = [
    ("image slots", "extracted_images", "images_in"),
    ("after quality filter", "extracted_images", "images_kept"),
    ("after redundancy filter", "image_dedup", "images_kept"),
    ("in cosine window", "image_clusters", "pairs_in_window"),
]
SENTENCE_FUNNEL = [
    ("sentences", "extracted_sentences", "sentences_in"),
    ("after quality filter", "extracted_sentences", "sentences_kept"),
    ("after semantic filter", "sentence_dedup", "after_semantic_filter"),
    ("after redundancy filter", "sentence_dedup", "sentences_kept"),
]
PAPER = {
    "images": [336e6, 285e6, 198e6, 168.3e6],
    "sentences": [2.13e9, 1.82e9, 1.16e9, 0.84e9],
}


def retrieval_precision_overall(metrics: MetricsResource) -> dict[str, float]:
    """Corpus-wide ground-truth precision of the retrieved texts (demo corpus only).

    Each shard records its own precision over its labelled images; the corpus figure weights
    them by ``gt_images_scored`` so that it equals scoring every labelled image at once.
    Empty when no shard recorded ground-truth scores (real data).
    """
    rows = metrics.query(
        "SELECT partition, metric, value FROM stage_counts "
        "WHERE stage='retrieved_texts' AND metric LIKE 'gt_%'"
    )
    shards: dict[str, dict[str, float]] = {}
    for partition, metric, value in rows:
        shards.setdefault(partition, {})[metric] = float(value)
    weights = {p: m.get("gt_images_scored", 0.0) for p, m in shards.items()}
    total = sum(weights.values())
    if not total:
        return {}
    names = sorted({m for scores in shards.values() for m in scores} - {"gt_images_scored"})
    overall = {
        name: sum(weights[p] * shards[p].get(name, 0.0) for p in shards) / total for name in names
    }
    overall["gt_images_scored"] = total
    overall["gt_precision_text1_min_shard"] = min(
        scores.get("gt_precision_text1", 0.0) for p, scores in shards.items() if weights[p]
    )
    return overall


def funnel(metrics: MetricsResource, steps: list[tuple[str, str, str]]) -> list[dict]:
    rows = []
    for label, stage, metric in steps:
        rows.append({"step": label, "count": int(metrics.total(stage, metric))})
    return rows


@dg.asset(
    group_name="quality",
    deps=[
        dg.AssetDep("image_dedup", partition_mapping=ALL_SHARDS),
        dg.AssetDep("sentence_dedup", partition_mapping=ALL_SHARDS),
        "image_clusters",
        dg.AssetDep("balanced_subset", partition_mapping=dg.AllPartitionMapping()),
    ],
    description="The image and sentence funnels next to the paper's, rejections by reason and "
    "subset sizes per scale, from the DuckDB metrics; markdown report + PNG plot.",
)
def quality_report(
    context: dg.AssetExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> dg.MaterializeResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = funnel(metrics, IMAGE_FUNNEL)
    sentences = funnel(metrics, SENTENCE_FUNNEL)
    for rows, paper in ((images, PAPER["images"]), (sentences, PAPER["sentences"])):
        first = rows[0]["count"] or 1
        for row, p in zip(rows, paper, strict=False):
            row["fraction"] = round(row["count"] / first, 4)
            row["paper_fraction"] = round(p / paper[0], 4)
    reasons = metrics.query(
        "SELECT stage, reason, sum(count) FROM rejections GROUP BY stage, reason ORDER BY stage, 3 DESC"
    )
    scales = metrics.query(
        "SELECT partition, value FROM stage_counts WHERE stage='balanced_subset' AND metric='samples' "
        "ORDER BY value"
    )
    evals = metrics.query(
        "SELECT partition, metric, value FROM stage_counts WHERE stage='clip_evaluation' ORDER BY 1, 2"
    )

    precision = retrieval_precision_overall(metrics)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, rows, title in ((axes[0], images, "images"), (axes[1], sentences, "sentences")):
        ax.plot([r["fraction"] for r in rows], marker="o", label="this corpus")
        ax.plot([r["paper_fraction"] for r in rows], marker="x", linestyle="--", label="paper")
        ax.set_xticks(range(len(rows)), [r["step"].replace(" ", "\n", 1) for r in rows], fontsize=6)
        ax.set_title(f"{title}: fraction kept")
        ax.legend(fontsize=6)
    report = {
        "image_funnel": images,
        "sentence_funnel": sentences,
        "rejections": [{"stage": s, "reason": r, "count": int(n)} for s, r, n in reasons],
        "subset_sizes": {p: int(v) for p, v in scales},
        "evaluation": [{"scale": p, "metric": m, "value": v} for p, m, v in evals],
        "retrieval_precision": precision,
    }
    out_dir = storage.layout.asset_dir("quality_report")
    atomic_write_bytes(out_dir / "report.json", json.dumps(report, indent=2).encode())
    fig.savefig(out_dir / "funnel.png", dpi=80, bbox_inches="tight")
    lines = [
        "# RealSyn quality report",
        "",
        "## Image funnel",
        "",
        "| step | count | kept | paper |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['step']} | {r['count']} | {r['fraction']:.1%} | {r['paper_fraction']:.1%} |"
        for r in images
    ]
    lines += ["", "## Sentence funnel", "", "| step | count | kept | paper |", "|---|---|---|---|"]
    lines += [
        f"| {r['step']} | {r['count']} | {r['fraction']:.1%} | {r['paper_fraction']:.1%} |"
        for r in sentences
    ]
    lines += ["", "## Rejections by reason", "", "| stage | reason | count |", "|---|---|---|"]
    lines += [f"| {s} | {r} | {int(n)} |" for s, r, n in reasons]
    lines += ["", "## Balanced subsets", ""] + [f"- {p}: {int(v)} samples" for p, v in scales]
    if precision:
        lines += [
            "",
            "## Retrieved texts against the demo ground truth",
            "",
            f"Share of retrieved texts that describe the image's colour and shape, over "
            f"{int(precision['gt_images_scored'])} labelled images (all shards):",
            "",
            "| rank | precision |",
            "|---|---|",
        ]
        ranks = sorted(
            int(name.removeprefix("gt_precision_text"))
            for name in precision
            if name.removeprefix("gt_precision_text").isdigit()
        )
        lines += [f"| text{j} | {precision[f'gt_precision_text{j}']:.3f} |" for j in ranks]
        lines += [
            f"| in-document nearest text (MMC4-style) | "
            f"{precision.get('gt_in_document_precision_text1', 0.0):.3f} |",
            "",
            f"Lowest shard (text1): {precision['gt_precision_text1_min_shard']:.3f}.",
        ]
    markdown = "\n".join(lines) + "\n"
    atomic_write_bytes(out_dir / "report.md", markdown.encode())
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(markdown),
            "funnel": png_metadata(fig),
            "images_final": images[-1]["count"],
            "sentences_final": sentences[-1]["count"],
            **{
                name: dg.MetadataValue.float(float(value))
                for name, value in precision.items()
                if name != "gt_images_scored"
            },
            "path": dg.MetadataValue.path(str(out_dir / "report.md")),
        }
    )


@dg.asset_check(
    asset="quality_report", description="Both funnels are non-increasing and end above zero."
)
def funnels_monotone(storage: StorageResource) -> Result:
    import json

    report = json.loads((storage.layout.asset_dir("quality_report") / "report.json").read_text())
    problems = []
    for name in ("image_funnel", "sentence_funnel"):
        counts = [row["count"] for row in report[name]]
        if any(b > a for a, b in zip(counts, counts[1:], strict=False)):
            problems.append(f"{name} increases")
        if not counts or counts[-1] == 0:
            problems.append(f"{name} ends at zero")
    return check_result(not problems, "; ".join(problems) or "funnels monotone and non-empty")
