"""Image extraction (paper §3.1): decode, size and aspect filters, pHash."""
