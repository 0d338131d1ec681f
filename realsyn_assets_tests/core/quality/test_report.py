"""Tests for core/quality/report.py: funnel rows, markdown and the funnel sanity rule."""

from __future__ import annotations

from realsyn_assets.core.quality.report import (
    IMAGE_FUNNEL,
    PAPER_IMAGES,
    build_report,
    funnel_problems,
    funnel_rows,
    render_markdown,
)
from realsyn_assets.names import Asset, BalancedSubsetMetrics


def _images():
    counts = {step[1:]: n for step, n in zip(IMAGE_FUNNEL, (200, 150, 100, 90), strict=True)}
    return funnel_rows(IMAGE_FUNNEL, lambda stage, metric: counts[stage, metric], PAPER_IMAGES)


def test_funnel_rows_fractions_against_the_first_step():
    rows = _images()
    assert [r["count"] for r in rows] == [200, 150, 100, 90]
    assert [r["fraction"] for r in rows] == [1.0, 0.75, 0.5, 0.45]
    assert rows[0]["paper_fraction"] == 1.0
    assert rows[-1]["paper_fraction"] == round(168.3 / 336, 4)
    empty = funnel_rows(IMAGE_FUNNEL, lambda stage, metric: 0, PAPER_IMAGES)
    assert [r["fraction"] for r in empty] == [0.0] * 4


def test_report_markdown_and_problems():
    images = _images()
    sentences = [dict(r, count=r["count"] * (i != 3)) for i, r in enumerate(images)]
    report = build_report(
        images,
        sentences,
        [(Asset.EXTRACTED_IMAGES, "too_small", 50)],
        [("15M", 20.0)],
        [("15M", BalancedSubsetMetrics.SAMPLES, 20.0)],
        {},
    )
    markdown = render_markdown(report)
    assert "| image slots | 200 | 100.0% | 100.0% |" in markdown
    assert "| extracted_images | too_small | 50 |" in markdown
    assert "- 15M: 20 samples" in markdown
    assert "demo ground truth" not in markdown
    assert funnel_problems(report) == ["sentence_funnel ends at zero"]
    report["image_funnel"][2]["count"] = 500
    assert funnel_problems(report)[0] == "image_funnel increases"
