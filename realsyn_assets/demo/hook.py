"""The one optional hook through which production assets reach demo-only code.

A home made by `realsyn demo` holds the demo corpus's ground truth; there, assets add
ground-truth scores (retrieval precision, zero-shot concepts) to their metadata. On real data
`demo_scorer` returns None and nothing demo-specific runs. Assets import only this module from
`realsyn_assets.demo`.
"""

from __future__ import annotations

from dataclasses import dataclass

from realsyn_assets.demo.corpus import GroundTruth, load_ground_truth
from realsyn_assets.resources.home import Home


@dataclass
class DemoScorer:
    """Ground-truth scoring for one demo home; one method per asset that reports such scores."""

    truth: GroundTruth

    def is_labelled(self, image_id: str) -> bool:
        """Whether the image has a ground-truth concept (only those are scored)."""
        return self.truth.image_concept(image_id) is not None


def demo_scorer(home: Home) -> DemoScorer | None:
    """A scorer when `home` holds the demo corpus's ground truth, else None."""
    path = home.ground_truth
    return None if path is None else DemoScorer(load_ground_truth(path))
