"""Semantic filter (paper §3.1): information entropy and perplexity window."""
