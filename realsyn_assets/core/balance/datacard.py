"""The data card of an exported subset: what is in it, how it was made, and how it compares.

Pure functions: the numbers (token lengths, cluster balance of balanced vs random sampling), the
plots (matplotlib figures) and the markdown. The `subset_export` asset gathers the inputs from
the subset, the image clusters, the synthetic texts and the metrics, and writes what these return.
Every number on the card is passed in measured; a value that was not measured is printed as
"not recorded", never guessed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realsyn_assets.core.balance.export import REALSYN_COLUMNS
from realsyn_assets.core.balance.sampling import cluster_size_stats
from realsyn_assets.core.io import atomic_path, atomic_write_bytes

# Per-cluster caps of the paper's semantic balance sampling (§5): scale -> cap.
PAPER_CAPS = {"15M": 20, "30M": 35, "100M": 180}
# open_clip's text context: 77 tokens including start and end, so 75 for the text itself.
CLIP_CONTEXT = 77
TEXT_COLUMNS = ("text1", "text2", "text3", "syn_text")
# Generator / captioner backends that are language models (the rest are rule-based or ours).
LANGUAGE_MODEL_BACKENDS = ("openai", "vllm", "transformers")
RULE_BASED_BACKENDS = ("offline", "rule", "rules")
NOT_RECORDED = "not recorded"

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "raw_image_url": "Source reference of the image: its URL, or its path relative to the folder "
    "of its shard file.",
    "text1": "Retrieved realistic sentence with the highest image-text similarity (R1).",
    "text2": "Second retrieved realistic sentence (R2), similarity lower than or equal to text1's.",
    "text3": "Third retrieved realistic sentence (R3), similarity lower than or equal to text2's.",
    "syn_text": "Synthetic text (S1): text1 fused with a machine caption and image tags by the "
    "generator named under Provenance.",
    "image_id": "Content hash of the original image bytes (stable across reruns and shards).",
    "shard": "Input shard the image came from.",
    "image_path": "Path of the normalised JPEG relative to the home folder (not exported to "
    "WebDataset json).",
    "image_doc_id": "Id of the source document the image came from.",
    "image_position": "Position of the image inside its source document.",
    "syn_score": "Cosine similarity between the image and syn_text embeddings.",
    "cluster": "Image cluster id used by semantic balance sampling.",
    "caption": "Machine caption used as a fusion input.",
    "tags": "Open-set tags used as a fusion input.",
    "n_texts": "Number of retrieved realistic texts (up to 3).",
}
for _k in (1, 2, 3):
    COLUMN_DESCRIPTIONS[f"text{_k}_id"] = f"Content hash of the normalised text{_k} sentence."
    COLUMN_DESCRIPTIONS[f"text{_k}_doc_id"] = f"Id of the source document of text{_k}."
    COLUMN_DESCRIPTIONS[f"text{_k}_position"] = f"Position of text{_k} inside its source document."
    COLUMN_DESCRIPTIONS[f"text{_k}_score"] = f"Cosine similarity between the image and text{_k}."


@dataclass
class DataCard:
    """Everything one scale's card states. None = not measured (printed as "not recorded")."""

    scale: str
    train_samples: int
    eval_samples: int
    columns: Sequence[str]
    cap: int | None = None
    cap_rule: str | None = None
    target_share: float | None = None
    achieved_share: float | None = None
    clusters: int | None = None
    candidate_pairs: int | None = None
    clusters_version: str | None = None
    shards: Mapping[str, int] = field(default_factory=dict)  # split -> tar shards
    encoder: str | None = None
    generators: Sequence[str] = ()  # one line per (backend, model) with its sample count
    captioners: Sequence[str] = ()
    funnel: Sequence[Mapping[str, Any]] = ()  # rows: step, count, fraction, paper_fraction
    token_lengths: Sequence[Mapping[str, Any]] = ()  # rows of `token_length_rows`
    sampling: Sequence[Mapping[str, Any]] = ()  # rows of `sampling_comparison`
    plots: Mapping[str, str] = field(default_factory=dict)  # caption -> file next to the card
    train_data: str | None = None  # the train tars as a brace pattern, relative to the card


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


def clip_token_counter() -> Callable[[str], int]:
    """Tokens of a text under CLIP's BPE (open_clip's SimpleTokenizer, local vocabulary),
    without the start and end tokens."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    return lambda text: len(tokenizer.encode(text))


def token_length_rows(
    columns: Mapping[str, Iterable[str | None]], count: Callable[[str], int]
) -> list[dict[str, Any]]:
    """Per text column: non-empty texts, mean / median / p90 / max tokens, and the share longer
    than CLIP's context (those are truncated when trained on)."""
    rows = []
    limit = CLIP_CONTEXT - 2
    for name, texts in columns.items():
        lengths = np.array([count(t) for t in texts if t], dtype=np.int64)
        if lengths.size == 0:
            rows.append({"column": name, "texts": 0})
            continue
        rows.append(
            {
                "column": name,
                "texts": int(lengths.size),
                "mean": float(lengths.mean()),
                "p50": float(np.percentile(lengths, 50)),
                "p90": float(np.percentile(lengths, 90)),
                "max": int(lengths.max()),
                "truncated_share": float((lengths > limit).mean()),
            }
        )
    return rows


def _balance_row(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    stats = cluster_size_stats(labels)
    n = int(labels.size)
    finite = scores[np.isfinite(scores)]
    return {
        "sampling": name,
        "samples": n,
        "clusters_covered": int(stats["n_clusters"]),
        "gini": float(stats["gini"]),
        "max_share": float(stats["max"] / n) if n else 0.0,
        "mean_syn_score": float(finite.mean()) if finite.size else float("nan"),
    }


def sampling_comparison(
    pool_labels: np.ndarray,
    pool_scores: np.ndarray,
    balanced_labels: np.ndarray,
    balanced_scores: np.ndarray,
    random_indices: np.ndarray,
) -> list[dict[str, Any]]:
    """Balanced sampling beside uniform random sampling of the same size from the same pool
    (the paper's ablation, Table 6): cluster-size Gini (0 = even), the largest cluster's share
    of the samples, clusters covered and the mean image–syn_text cosine. Rows: the whole
    candidate pool, balanced, random."""
    pool_labels = np.asarray(pool_labels)
    pool_scores = np.asarray(pool_scores, dtype=np.float64)
    idx = np.asarray(random_indices, dtype=np.int64)
    return [
        _balance_row("candidate pool", pool_labels, pool_scores),
        _balance_row(
            "balanced", np.asarray(balanced_labels), np.asarray(balanced_scores, np.float64)
        ),
        _balance_row("random", pool_labels[idx], pool_scores[idx]),
    ]


def sizes_by_id(labels) -> np.ndarray:
    """Samples per cluster id (index = id) of these cluster labels; negative labels ignored."""
    lab = np.asarray(labels, dtype=np.int64)
    lab = lab[lab >= 0]
    return np.bincount(lab) if lab.size else np.zeros(0, np.int64)


def sizes_by_rank(sizes_by_cluster_id: np.ndarray) -> np.ndarray:
    """Sizes of the non-empty clusters, largest first."""
    sizes = np.asarray(sizes_by_cluster_id, dtype=np.int64)
    return np.sort(sizes[sizes > 0])[::-1]


def provenance_lines(columns: Mapping[str, Sequence[str | None]], role: str) -> list[str]:
    """'backend / model: n samples (kind)' per distinct (backend, model) pair; `columns` maps
    "backend" (and optionally "model") to per-row values. Rule-based backends say they are not
    a language model; unknown backends are named as they are."""
    backends = list(columns.get("backend") or [])
    models = list(columns.get("model") or [None] * len(backends))
    counts: dict[tuple[str, str], int] = {}
    for backend, model in zip(backends, models, strict=True):
        key = (str(backend or "unknown"), str(model or ""))
        counts[key] = counts.get(key, 0) + 1
    lines = []
    for (backend, model), n in sorted(counts.items()):
        if backend in LANGUAGE_MODEL_BACKENDS:
            kind = f"language-model {role}"
        elif backend in RULE_BASED_BACKENDS:
            kind = "the project's offline " + (
                "rule-based fusion, not a language model" if role == "generator" else role
            )
        else:
            kind = f"{role} backend as recorded"
        name = f"`{backend}`" + (f" / `{model}`" if model else "")
        lines.append(f"{name}: {n:,} samples ({kind})")
    return lines


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def cluster_size_figure(before: np.ndarray, after: np.ndarray, cap: int | None):
    """Cluster sizes by rank, before (candidate pool) and after balancing (paper Fig. 9)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for sizes, label in ((before, "before"), (after, "after")):
        ranks = np.arange(1, len(sizes) + 1)
        ax.step(ranks, sizes, where="mid", marker="o", markersize=3, label=label)
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if cap is not None:
        ax.axhline(cap, color="grey", linestyle="--", linewidth=1, label=f"cap {cap}")
    ax.set_xlabel("cluster rank (largest first)")
    ax.set_ylabel("samples in cluster")
    ax.set_title("Cluster sizes before / after balance sampling")
    ax.legend()
    return fig


def similarity_figure(scores: Mapping[str, np.ndarray]):
    """Histograms of image–text cosines, one per text column (text1, syn_text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    values = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    values = {k: v[np.isfinite(v)] for k, v in values.items()}
    both = np.concatenate([*values.values(), np.zeros(0)])
    low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    bins = np.linspace(low, max(high, low + 1e-3), 31)
    for name, v in values.items():
        ax.hist(v, bins=bins, alpha=0.6, label=f"image–{name} (n={v.size})")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("samples")
    ax.set_title("Image–text similarity")
    ax.legend()
    return fig


def save_png(figure, path: Path | str) -> Path:
    """Write a figure as PNG, atomically and byte-stable (no software/date metadata)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.{digits}g}" if np.isfinite(value) else "n/a"
    return str(value)


def _pct(value: float | None) -> str:
    return NOT_RECORDED if value is None else f"{100 * value:.2f}%"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _summary(card: DataCard) -> list[str]:
    paper = PAPER_CAPS.get(card.scale)
    total = card.train_samples + card.eval_samples
    lines = [
        "## Summary",
        "",
        f"- Scale partition: **{card.scale}**"
        + (f" (the paper's RealSyn{card.scale}: fixed cap {paper})" if paper else ""),
        f"- Samples: **{total:,}** = train **{card.train_samples:,}** + eval "
        f"**{card.eval_samples:,}** (eval images are held out by id hash, in separate files)",
        f"- Per-cluster cap: **{_fmt(card.cap)}** (rule: `{card.cap_rule or NOT_RECORDED}`; "
        "clusters larger than the cap are uniformly subsampled, smaller ones kept whole)",
        f"- Share of the candidate pool: target {_pct(card.target_share)}, achieved "
        f"{_pct(card.achieved_share)} (candidate pairs: {_fmt(card.candidate_pairs)})",
        f"- Image clusters: {_fmt(card.clusters)}"
        + (f" (clusters version `{card.clusters_version}`)" if card.clusters_version else ""),
        "- WebDataset shards: "
        + (", ".join(f"{s} {n}" for s, n in card.shards.items()) or NOT_RECORDED),
    ]
    if paper and total < 1_000_000:
        lines.append(
            f"- {card.scale} names the paper's scale (its recipe); this corpus is far smaller "
            "than the paper's, so the sample count is far below the label."
        )
    return lines


def _provenance(card: DataCard) -> list[str]:
    lines = ["", "## Provenance", "", "- Encoder (retrieval, filtering, clustering, scores): "]
    lines[-1] += f"`{card.encoder}`" if card.encoder else NOT_RECORDED
    for label, entries in (
        ("Synthetic-text generator", card.generators),
        ("Captioner", card.captioners),
    ):
        if not entries:
            lines.append(f"- {label}: {NOT_RECORDED}")
        for entry in entries:
            lines.append(f"- {label}: {entry}")
    return lines


def _plots(card: DataCard) -> list[str]:
    if not card.plots:
        return []
    lines = ["", "## Plots", ""]
    for caption, name in card.plots.items():
        lines += [f"![{caption}]({name})", "", f"*{caption}* (`{name}`)", ""]
    return lines[:-1]


def _sampling(card: DataCard) -> list[str]:
    if not card.sampling:
        return []
    rows = [
        (
            r["sampling"],
            _fmt(r["samples"]),
            _fmt(r["clusters_covered"]),
            _fmt(r["gini"], 3),
            _pct(r["max_share"]),
            _fmt(r["mean_syn_score"], 3),
        )
        for r in card.sampling
    ]
    return [
        "",
        "## Balanced vs random sampling (same size, same pool)",
        "",
        *_table(
            [
                "sampling",
                "samples",
                "clusters covered",
                "cluster-size Gini",
                "largest cluster",
                "mean image–syn_text cosine",
            ],
            rows,
        ),
        "",
        "Gini 0 means every covered cluster contributes equally; the candidate pool row is the "
        "distribution before any sampling. The random row draws the same number of samples "
        "uniformly from the pool (seeded), as in the paper's ablation of balance sampling.",
    ]


def _tokens(card: DataCard) -> list[str]:
    if not card.token_lengths:
        return []
    rows = []
    for r in card.token_lengths:
        if not r.get("texts"):
            rows.append((f"`{r['column']}`", "0", "", "", "", "", ""))
            continue
        rows.append(
            (
                f"`{r['column']}`",
                _fmt(r["texts"]),
                f"{r['mean']:.1f}",
                _fmt(r["p50"]),
                _fmt(r["p90"]),
                _fmt(r["max"]),
                _pct(r["truncated_share"]),
            )
        )
    return [
        "",
        "## Text lengths (CLIP BPE tokens)",
        "",
        *_table(
            [
                "column",
                "texts",
                "mean",
                "median",
                "p90",
                "max",
                f"> {CLIP_CONTEXT - 2} (truncated)",
            ],
            rows,
        ),
    ]


def _funnel(card: DataCard) -> list[str]:
    if not card.funnel:
        return []
    rows = [
        (
            str(r["step"]),
            _fmt(r.get("count")),
            _pct(r.get("fraction")),
            _pct(r.get("paper_fraction")) if r.get("paper_fraction") is not None else "",
        )
        for r in card.funnel
    ]
    return ["", "## Funnel", "", *_table(["step", "count", "kept", "paper"], rows)]


def _columns(card: DataCard) -> list[str]:
    rows = [(f"`{c}`", COLUMN_DESCRIPTIONS.get(c, "Extra column.")) for c in card.columns]
    return [
        "",
        "## Columns",
        "",
        *_table(["column", "meaning"], rows),
        "",
        "`text1`..`text3` are the retrieved realistic sentences ordered by similarity to the image "
        "(text1 most similar). Released-schema columns: "
        + ", ".join(f"`{c}`" for c in REALSYN_COLUMNS)
        + ".",
        "",
        "## Files",
        "",
        "- `train.parquet`, `eval.parquet`: one row per sample, in tar order.",
        "- `webdataset/train/NNNNN.tar`, `webdataset/eval/NNNNN.tar`: `<image_id>.jpg` (image "
        "bytes), `<image_id>.txt` (text1), `<image_id>.json` (text2, text3, syn_text, lineage "
        "and scores). open_clip_train reads them with `--dataset-type webdataset`.",
        *(
            [
                "",
                "Train with open_clip's own trainer from this folder: `python -m "
                "realsyn_assets.core.balance.openclip_trainer --dataset-type webdataset "
                f"--train-data '{card.train_data}' --train-num-samples {card.train_samples} "
                "--model realsyn-tiny` (any open_clip model name works; see docs/export.md).",
            ]
            if card.train_data
            else []
        ),
        "",
        "## Lineage",
        "",
        "Every sample keeps where its parts came from: `image_doc_id` + `image_position` for the "
        "image and `textK_doc_id` + `textK_position` + `textK_id` for each realistic text, with "
        "the similarity scores used to select them. Ids are content hashes, stable across reruns.",
    ]


def render_data_card(card: DataCard) -> str:
    """The markdown of one scale's card."""
    lines = [
        f"# RealSyn-style image–multi-text dataset — scale {card.scale}",
        "",
        "Built with `realsyn_assets`, an implementation of the RealSyn data paradigm "
        "(arXiv 2502.12513): images and sentences are mined from multimodal interleaved "
        "documents, each image gets its three most similar realistic sentences by hierarchical "
        "retrieval and one synthetic sentence, and the set is balanced by capping image "
        "clusters.",
        "",
        *_summary(card),
        *_provenance(card),
        *_sampling(card),
        *_plots(card),
        *_tokens(card),
        *_funnel(card),
        *_columns(card),
        "",
        "## License",
        "",
        "This card describes derived data. The images and sentences remain subject to the "
        "licenses and terms of their source documents and websites; check them before use or "
        "redistribution. The RealSyn release itself is MIT-licensed metadata (URLs and texts).",
        "",
    ]
    return "\n".join(lines)


def write_data_card(path: Path | str, card: DataCard) -> Path:
    """Write the card atomically (same card, same bytes)."""
    atomic_write_bytes(path, render_data_card(card).encode("utf-8"))
    return Path(path)
