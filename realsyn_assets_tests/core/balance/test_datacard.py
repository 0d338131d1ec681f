"""Tests for core/balance/datacard.py: the card's numbers, plots and markdown."""

from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.balance import datacard as dc


def _card(**overrides) -> dc.DataCard:
    values = dict(
        scale="30M",
        train_samples=1200,
        eval_samples=34,
        columns=["image_id", "text1", "syn_text", "extra_note"],
        cap=12,
        cap_rule="paper_fraction",
        target_share=30.33 / 168.3,
        achieved_share=0.1795,
        clusters=56,
        candidate_pairs=6874,
        clusters_version="abc123",
        shards={"train": 2, "eval": 1},
        encoder="ViT-B-32|pretrained|laion2b",
        generators=dc.provenance_lines({"backend": ["offline"] * 3}, "generator"),
        captioners=[],
        funnel=[{"step": "image slots", "count": 5000, "fraction": 1.0, "paper_fraction": 1.0}],
        token_lengths=dc.token_length_rows(
            {"text1": ["a b c", "", None]}, lambda t: len(t.split())
        ),
        sampling=[
            {
                "sampling": "balanced",
                "samples": 1234,
                "clusters_covered": 56,
                "gini": 0.12,
                "max_share": 0.02,
                "mean_syn_score": 0.55,
            }
        ],
        plots={"Cluster sizes": "cluster_sizes.png"},
    )
    return dc.DataCard(**{**values, **overrides})


def test_card_states_every_measured_number(tmp_path):
    path = dc.write_data_card(tmp_path / "DATA_CARD.md", _card())
    text = path.read_text()
    assert "**1,234** = train **1,200** + eval **34**" in text
    assert "Per-cluster cap: **12** (rule: `paper_fraction`" in text
    assert "target 18.02%, achieved 17.95%" in text and "candidate pairs: 6,874" in text
    assert "Image clusters: 56" in text and "`abc123`" in text
    assert "WebDataset shards: train 2, eval 1" in text
    assert "paper's RealSyn30M: fixed cap 35" in text
    assert "`ViT-B-32|pretrained|laion2b`" in text
    assert "`offline`: 3 samples (the project's offline rule-based fusion, not a language" in text
    assert "- Captioner: not recorded" in text
    assert "| balanced | 1,234 | 56 | 0.12 | 2.00% | 0.55 |" in text
    assert "![Cluster sizes](cluster_sizes.png)" in text
    assert "| `text1` | 1 | 3.0 | 3 | 3 | 3 | 0.00% |" in text
    assert "| image slots | 5,000 | 100.00% | 100.00% |" in text
    assert "| `extra_note` | Extra column. |" in text
    assert "license" in text.lower()
    assert "not recorded" not in text.split("## Provenance")[0]
    dc.write_data_card(tmp_path / "again.md", _card())
    assert (tmp_path / "again.md").read_bytes() == path.read_bytes()


def test_card_never_guesses_what_was_not_measured():
    text = dc.render_data_card(
        dc.DataCard(scale="tiny", train_samples=3, eval_samples=0, columns=["text1"])
    )
    assert "Per-cluster cap: **not recorded** (rule: `not recorded`" in text
    assert "target not recorded, achieved not recorded" in text
    assert "Synthetic-text generator: not recorded" in text
    assert "language model" not in text  # nothing claims an LM made the texts
    assert "## Plots" not in text and "## Funnel" not in text


def test_provenance_names_backends_and_models():
    lines = dc.provenance_lines(
        {"backend": ["vllm", "vllm", "offline"], "model": ["Qwen2.5-7B", "Qwen2.5-7B", None]},
        "generator",
    )
    assert lines == [
        "`offline`: 1 samples (the project's offline rule-based fusion, not a language model)",
        "`vllm` / `Qwen2.5-7B`: 2 samples (language-model generator)",
    ]
    assert dc.provenance_lines({"backend": ["mystery"]}, "captioner") == [
        "`mystery`: 1 samples (captioner backend as recorded)"
    ]


def test_token_lengths_with_the_clip_tokenizer():
    count = dc.clip_token_counter()
    long = " ".join(["word"] * 100)
    (row,) = dc.token_length_rows({"syn_text": ["a red circle", long]}, count)
    assert row["texts"] == 2 and row["max"] == 100 and row["truncated_share"] == 0.5
    assert count("a red circle") == 3


def test_balanced_sampling_is_flatter_than_random():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), [500, 200, 100, 50, 40, 30, 20, 10, 5, 5])
    scores = rng.uniform(0.4, 0.8, labels.size)
    ranks = np.concatenate([np.arange(n) for n in np.bincount(labels)])
    balanced = ranks < 20
    random = np.sort(rng.permutation(labels.size)[: balanced.sum()])
    pool, bal, rnd = dc.sampling_comparison(
        labels, scores, labels[balanced], scores[balanced], random
    )
    assert (pool["samples"], bal["samples"], rnd["samples"]) == (960, 160, 160)
    assert bal["gini"] < rnd["gini"] and bal["max_share"] < rnd["max_share"]
    assert bal["clusters_covered"] == 10 >= rnd["clusters_covered"]
    assert pool["mean_syn_score"] == pytest.approx(scores.mean())


def test_sizes_and_plots_are_stable(tmp_path):
    assert dc.sizes_by_id([2, 2, -1, 0]).tolist() == [1, 0, 2]
    assert dc.sizes_by_rank(np.array([1, 0, 3, 2])).tolist() == [3, 2, 1]
    paths = []
    for name in ("a.png", "b.png"):
        figure = dc.cluster_size_figure(np.array([9, 5, 1]), np.array([4, 4, 1]), 4)
        paths.append(dc.save_png(figure, tmp_path / name))
        sims = dc.similarity_figure({"text1": np.array([0.2, 0.3, np.nan]), "syn_text": []})
        dc.save_png(sims, tmp_path / f"sim-{name}")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "sim-a.png").read_bytes() == (tmp_path / "sim-b.png").read_bytes()
