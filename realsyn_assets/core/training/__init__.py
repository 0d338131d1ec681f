"""CLIP training on the balanced subsets (paper §4)."""
