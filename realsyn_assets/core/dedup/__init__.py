"""Redundancy filter (paper §3.1): exact, perceptual, MinHash and embedding duplicates.

`incremental` decides one shard against every earlier shard; `union_find` holds the pair
searches (pHash Hamming, embedding cosine) and the grouping; `minhash` the near-duplicate text
signatures.
"""
