"""Semantic filter (paper §3.1): information entropy and perplexity window.

`statistics` fits the corpus statistics (word counts, perplexity model and window) once;
`sentence_filter` applies the filter to one shard. The scores: `entropy` (Eq. 1), `perplexity`
(Eq. 2, the window), `ngram` (offline scorer), `gpt2` (the paper's scorer), `scores` (per-sentence
scores stored by the fit).
"""
