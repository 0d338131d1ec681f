"""Redundancy filter (paper §3.1): exact, perceptual, MinHash and embedding duplicates."""
