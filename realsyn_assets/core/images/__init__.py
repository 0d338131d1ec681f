"""Image extraction (paper §3.1): decode, size and aspect filters, pHash.

`extract` filters and normalises one image (or many, in a process pool); `shard` reads one
shard's image slots and assembles its kept and rejected tables.
"""
