"""Sentence extraction (paper §3.1): Punkt split, rule filters, CAT complexity + action.

`sentences` splits and applies the rule filters, `cat` the CAT caption filter (word lists in
`wordlists/`, built into a tag lexicon by `lexicon`), `shard` runs both over one shard.
"""
