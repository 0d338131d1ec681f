"""The quality report: the image and sentence funnels next to the paper's, rejections by reason,
subset sizes, evaluation scores and (demo corpus) the retrieved texts' ground-truth precision.

Pure functions over the numbers the stages record; the quality asset reads them from DuckDB and
writes what these functions return (report.json, report.md, funnel.png).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from realsyn_assets.names import (
    Asset,
    ExtractedImagesMetrics,
    ExtractedSentencesMetrics,
    ImageClustersMetrics,
    ImageDedupMetrics,
    QualityReportMetadata,
    RetrievedTextsMetrics,
    SentenceDedupMetrics,
    SyntheticTextsMetrics,
)

# (label, stage, metric) in pipeline order; each count is the metric summed over partitions.
FunnelSteps = Sequence[tuple[str, str, str]]
IMAGE_FUNNEL: FunnelSteps = [
    ("image slots", Asset.EXTRACTED_IMAGES, ExtractedImagesMetrics.IMAGES_IN),
    ("after quality filter", Asset.EXTRACTED_IMAGES, ExtractedImagesMetrics.IMAGES_KEPT),
    ("after redundancy filter", Asset.IMAGE_DEDUP, ImageDedupMetrics.IMAGES_KEPT),
    ("in cosine window", Asset.IMAGE_CLUSTERS, ImageClustersMetrics.PAIRS_IN_WINDOW),
]
SENTENCE_FUNNEL: FunnelSteps = [
    ("sentences", Asset.EXTRACTED_SENTENCES, ExtractedSentencesMetrics.SENTENCES_IN),
    ("after quality filter", Asset.EXTRACTED_SENTENCES, ExtractedSentencesMetrics.SENTENCES_KEPT),
    ("after semantic filter", Asset.SENTENCE_DEDUP, SentenceDedupMetrics.AFTER_SEMANTIC_FILTER),
    ("after redundancy filter", Asset.SENTENCE_DEDUP, SentenceDedupMetrics.SENTENCES_KEPT),
]
# The paper's counts at the same steps (Table 1), for the "paper" column.
PAPER_IMAGES = [336e6, 285e6, 198e6, 168.3e6]
PAPER_SENTENCES = [2.13e9, 1.82e9, 1.16e9, 0.84e9]
# report.json keys of the two funnels (read back by the quality check).
FUNNELS = ("image_funnel", "sentence_funnel")

_RT = RetrievedTextsMetrics


def funnel_rows(
    steps: FunnelSteps, total: Callable[[str, str], float], paper: Sequence[float]
) -> list[dict]:
    """One row per step: its count (`total(stage, metric)`), the fraction of the first step's
    count kept, and the paper's fraction at the same step."""
    rows = [{"step": label, "count": int(total(stage, metric))} for label, stage, metric in steps]
    first = rows[0]["count"] or 1
    for row, p in zip(rows, paper, strict=False):
        row["fraction"] = round(row["count"] / first, 4)
        row["paper_fraction"] = round(p / paper[0], 4)
    return rows


def weighted_precision(rows: Iterable[tuple[str, str, float]]) -> dict[str, float]:
    """Corpus-wide ground-truth precision of the retrieved texts from per-shard `gt_*` metrics.

    `rows` are (partition, metric, value). Each shard records its own precision over its
    labelled images; the corpus figure weights them by `gt_images_scored` so that it equals
    scoring every labelled image at once. Empty when no shard scored any image (real data).
    """
    shards: dict[str, dict[str, float]] = {}
    for partition, metric, value in rows:
        shards.setdefault(partition, {})[metric] = float(value)
    weights = {p: m.get(_RT.GT_IMAGES_SCORED, 0.0) for p, m in shards.items()}
    total = sum(weights.values())
    if not total:
        return {}
    names = sorted({m for scores in shards.values() for m in scores} - {_RT.GT_IMAGES_SCORED})
    overall = {
        name: sum(weights[p] * shards[p].get(name, 0.0) for p in shards) / total for name in names
    }
    overall[_RT.GT_IMAGES_SCORED] = total
    overall[QualityReportMetadata.GT_PRECISION_TEXT1_MIN_SHARD] = min(
        scores.get(_RT.GT_PRECISION_TEXT1, 0.0) for p, scores in shards.items() if weights[p]
    )
    return overall


def build_report(
    images: list[dict],
    sentences: list[dict],
    rejections: Iterable[tuple[str, str, int]],
    subset_sizes: Iterable[tuple[str, float]],
    evaluation: Iterable[tuple[str, str, float]],
    precision: Mapping[str, float],
) -> dict:
    """The report.json content: funnels, (stage, reason, count) rejections, (scale, samples)
    subset sizes, (scale, metric, value) evaluation scores and the retrieval precision."""
    return {
        FUNNELS[0]: images,
        FUNNELS[1]: sentences,
        "rejections": [{"stage": s, "reason": r, "count": int(n)} for s, r, n in rejections],
        "subset_sizes": {p: int(v) for p, v in subset_sizes},
        "evaluation": [{"scale": p, "metric": m, "value": v} for p, m, v in evaluation],
        "retrieval_precision": dict(precision),
    }


def _funnel_table(title: str, rows: list[dict]) -> list[str]:
    lines = ["", f"## {title}", "", "| step | count | kept | paper |", "|---|---|---|---|"]
    return lines + [
        f"| {r['step']} | {r['count']} | {r['fraction']:.1%} | {r['paper_fraction']:.1%} |"
        for r in rows
    ]


def _precision_section(precision: Mapping[str, float]) -> list[str]:
    lines = [
        "",
        "## Retrieved texts against the demo ground truth",
        "",
        f"Share of retrieved texts that describe the image's colour and shape, over "
        f"{int(precision[_RT.GT_IMAGES_SCORED])} labelled images (all shards):",
        "",
        "| rank | precision |",
        "|---|---|",
    ]
    prefix = _RT.GT_PRECISION_TEXT_PREFIX
    ranks = sorted(
        int(name.removeprefix(prefix)) for name in precision if name.removeprefix(prefix).isdigit()
    )
    lines += [f"| text{j} | {precision[f'{prefix}{j}']:.3f} |" for j in ranks]
    return lines + [
        f"| in-document nearest text (MMC4-style) | "
        f"{precision.get(_RT.GT_IN_DOCUMENT_PRECISION_TEXT1, 0.0):.3f} |",
        "",
        f"Lowest shard (text1): "
        f"{precision[QualityReportMetadata.GT_PRECISION_TEXT1_MIN_SHARD]:.3f}.",
    ]


_ST = SyntheticTextsMetrics


def generation_summary(rows: Iterable[tuple[str, float]]) -> dict:
    """The synthetic_texts step over all shards from (metric, value summed over shards) rows:
    validation failures by kind and, on the demo, ground-truth rates of captions, tags, text1
    and syn_text (share of labelled images whose text names the image's colour and shape) and
    the share of images with a wrong text1 whose syn_text is right."""
    totals = {str(m): float(v) for m, v in rows}

    def by_kind(prefix: str) -> dict[str, int]:
        return {
            name.removeprefix(prefix): int(v)
            for name, v in sorted(totals.items())
            if name.startswith(prefix) and v
        }

    out: dict = {
        "images": int(totals.get(_ST.IMAGES, 0)),
        "syn_invalid_by_kind": by_kind(_ST.SYN_INVALID_PREFIX),
        "caption_invalid_by_kind": by_kind(_ST.CAPTION_INVALID_PREFIX),
    }
    scored = totals.get(_ST.GT_IMAGES_SCORED, 0.0)
    if scored:
        wrong = totals.get(_ST.GT_TEXT1_WRONG, 0.0)
        out["ground_truth"] = {
            "images_scored": int(scored),
            "caption_precision": totals.get(_ST.GT_CAPTION_RIGHT, 0.0) / scored,
            "tags_precision": totals.get(_ST.GT_TAGS_RIGHT, 0.0) / scored,
            "text1_precision": totals.get(_ST.GT_TEXT1_RIGHT, 0.0) / scored,
            "syn_text_precision": totals.get(_ST.GT_SYN_RIGHT, 0.0) / scored,
            "text1_wrong": int(wrong),
            "syn_right_when_text1_wrong": (
                totals.get(_ST.GT_SYN_RIGHT_TEXT1_WRONG, 0.0) / wrong if wrong else 0.0
            ),
        }
    return out


def generation_section(gen: Mapping) -> list[str]:
    """report.md lines of the generation step (captions, tags, synthetic texts)."""
    lines = ["", "## Synthetic texts", ""]
    kinds = gen.get("syn_invalid_by_kind", {})
    lines.append(
        f"{gen.get('images', 0)} images; invalid synthetic texts by kind: "
        + (", ".join(f"{k} {n}" for k, n in kinds.items()) or "none")
        + "."
    )
    cap_kinds = gen.get("caption_invalid_by_kind", {})
    lines.append(
        "Invalid captions by kind: "
        + (", ".join(f"{k} {n}" for k, n in cap_kinds.items()) or "none")
        + "."
    )
    truth = gen.get("ground_truth")
    if truth:
        lines += [
            "",
            f"Against the demo ground truth ({truth['images_scored']} labelled images; a text "
            "is right when it names the image's colour and shape):",
            "",
            "| text | precision |",
            "|---|---|",
            f"| caption | {truth['caption_precision']:.3f} |",
            f"| tags (together) | {truth['tags_precision']:.3f} |",
            f"| text1 (retrieved) | {truth['text1_precision']:.3f} |",
            f"| syn_text (fused) | {truth['syn_text_precision']:.3f} |",
            "",
            f"syn_text right where text1 is wrong: {truth['syn_right_when_text1_wrong']:.3f} "
            f"of {truth['text1_wrong']} images.",
        ]
    return lines


def render_markdown(report: Mapping) -> str:
    """report.md: the report as markdown tables."""
    lines = ["# RealSyn quality report"]
    lines += _funnel_table("Image funnel", report[FUNNELS[0]])
    lines += _funnel_table("Sentence funnel", report[FUNNELS[1]])
    lines += ["", "## Rejections by reason", "", "| stage | reason | count |", "|---|---|---|"]
    lines += [f"| {r['stage']} | {r['reason']} | {r['count']} |" for r in report["rejections"]]
    lines += ["", "## Balanced subsets", ""]
    lines += [f"- {p}: {n} samples" for p, n in report["subset_sizes"].items()]
    if report["retrieval_precision"]:
        lines += _precision_section(report["retrieval_precision"])
    if report.get("generation"):
        lines += generation_section(report["generation"])
    return "\n".join(lines) + "\n"


def funnel_problems(report: Mapping) -> list[str]:
    """Why the report's funnels are not sane: a step larger than the one before, or an empty end."""
    problems = []
    for name in FUNNELS:
        counts = [row["count"] for row in report[name]]
        if any(b > a for a, b in zip(counts, counts[1:], strict=False)):
            problems.append(f"{name} increases")
        if not counts or counts[-1] == 0:
            problems.append(f"{name} ends at zero")
    return problems


def funnel_figure(images: list[dict], sentences: list[dict]):
    """Fraction kept per step, this corpus against the paper (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, rows, title in ((axes[0], images, "images"), (axes[1], sentences, "sentences")):
        ax.plot([r["fraction"] for r in rows], marker="o", label="this corpus")
        ax.plot([r["paper_fraction"] for r in rows], marker="x", linestyle="--", label="paper")
        ax.set_xticks(range(len(rows)), [r["step"].replace(" ", "\n", 1) for r in rows], fontsize=6)
        ax.set_title(f"{title}: fraction kept")
        ax.legend(fontsize=6)
    return fig
