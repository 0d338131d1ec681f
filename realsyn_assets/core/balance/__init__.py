"""Balance (paper §3.3, §4): cosine window, per-cluster caps, export of the subsets."""
