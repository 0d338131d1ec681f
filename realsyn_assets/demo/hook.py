"""The one optional hook through which production assets reach demo-only code.

A home made by `realsyn demo` holds the demo corpus's ground truth; there, assets add
ground-truth scores (retrieval precision, zero-shot concepts) to their metadata. On real data
`demo_scorer` returns None and nothing demo-specific runs. Assets import only this module from
`realsyn_assets.demo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from realsyn_assets.demo import scoring
from realsyn_assets.demo.corpus import GroundTruth, load_ground_truth
from realsyn_assets.demo.vocabulary import CONCEPTS
from realsyn_assets.resources.home import Home

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from realsyn_assets.core.embedding.bootstrap.run import BootstrapRun


@dataclass
class DemoScorer:
    """Ground-truth scoring for one demo home; one method per asset that reports such scores."""

    truth: GroundTruth

    def is_labelled(self, image_id: str) -> bool:
        """Whether the image has a ground-truth concept (only those are scored)."""
        return self.truth.image_concept(image_id) is not None

    def retrieval_scores(
        self,
        retrieved: pa.Table,
        image_vecs: np.ndarray,
        members: pa.Table,
        sentence_vecs: np.ndarray,
        k: int,
    ) -> dict[str, float]:
        """retrieved_texts: ground-truth precision of one shard's retrieved texts next to
        in-document assignment (`gt_*` metrics, see `scoring.retrieved_texts_precision`)."""
        return scoring.retrieved_texts_precision(
            retrieved, image_vecs, members, sentence_vecs, k, self.truth.describes, self.is_labelled
        )

    def retrieval_precision(
        self, image_ids: Sequence[str], retrieved: Sequence[Sequence[str | None]]
    ) -> dict[str, float]:
        """Share of retrieved sentence ids that describe their image, per rank and overall
        (`precision_text{j}`, `precision_all`, `images_scored`; labelled images only)."""
        return scoring.retrieval_precision(
            image_ids, retrieved, self.truth.describes, self.is_labelled
        )

    def bootstrap_baselines(self, run: BootstrapRun, images: pa.Table) -> dict[str, float]:
        """bootstrap_encoder: ground truth for in-document nearest text and for the texts each
        round trained on (see `scoring.bootstrap_baselines`)."""
        return scoring.bootstrap_baselines(self.truth, run, images)

    def image_concepts(self, image_ids: Sequence[str]) -> list[str | None]:
        """clip_evaluation: each image's ground-truth concept (None when unlabelled), the
        zero-shot label of that image."""
        return [self.truth.image_concept(i) for i in image_ids]

    def names_concept(
        self, image_ids: Sequence[str], texts: Sequence[str | None]
    ) -> list[bool | None]:
        """Captions and synthetic texts: per image, whether its text names the image's colour
        and shape (any synonym, whole words, any case); None for unlabelled images."""
        return [
            scoring.names_concept(self.truth.image_concept(i), t)
            for i, t in zip(image_ids, texts, strict=True)
        ]

    def class_names(self) -> list[str]:
        """clip_evaluation: the demo concepts ("<colour> <shape>"), the zero-shot classes."""
        return list(CONCEPTS)


def demo_scorer(home: Home) -> DemoScorer | None:
    """A scorer when `home` holds the demo corpus's ground truth, else None."""
    path = home.ground_truth
    return None if path is None else DemoScorer(load_ground_truth(path))
