"""Sentence extraction (paper §3.1): Punkt split, rule filters, CAT complexity + action."""
