"""Hierarchical retrieval (paper §3.2): sentence k-means, cluster state, top-k search (the
package's modules are listed in `search`)."""
