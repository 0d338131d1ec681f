"""Hierarchical retrieval (paper §3.2): sentence k-means, cluster state, top-k search."""
