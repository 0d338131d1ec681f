"""Reading interleaved documents (OBELICS / MMC4 layout) into normalised items."""
