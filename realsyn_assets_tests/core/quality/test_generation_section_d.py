"""The quality report's generation section: sums of the synthetic_texts metrics over shards."""

from realsyn_assets.core.quality import report
from realsyn_assets.names import SyntheticTextsMetrics as M


def test_generation_summary_rates_and_failures():
    rows = [
        (M.IMAGES, 20),
        (M.SYN_INVALID_PREFIX + "refusal", 2),
        (M.SYN_INVALID_PREFIX + "empty", 1),
        (M.CAPTION_INVALID_PREFIX + "garbage", 3),
        (M.GT_IMAGES_SCORED, 10),
        (M.GT_CAPTION_RIGHT, 7),
        (M.GT_TAGS_RIGHT, 5),
        (M.GT_TEXT1_RIGHT, 8),
        (M.GT_SYN_RIGHT, 9),
        (M.GT_TEXT1_WRONG, 2),
        (M.GT_SYN_RIGHT_TEXT1_WRONG, 1),
    ]
    gen = report.generation_summary(rows)
    assert gen["syn_invalid_by_kind"] == {"empty": 1, "refusal": 2}
    assert gen["caption_invalid_by_kind"] == {"garbage": 3}
    truth = gen["ground_truth"]
    assert truth["text1_precision"] == 0.8 and truth["syn_text_precision"] == 0.9
    assert truth["syn_right_when_text1_wrong"] == 0.5
    text = "\n".join(report.generation_section(gen))
    assert "| syn_text (fused) | 0.900 |" in text and "refusal 2" in text


def test_generation_summary_without_ground_truth():
    gen = report.generation_summary([(M.IMAGES, 4)])
    assert "ground_truth" not in gen and gen["syn_invalid_by_kind"] == {}
    assert "none" in "\n".join(report.generation_section(gen))
