"""Pure algorithms of the RealSyn pipeline: no Dagster imports here (see DESIGN.md §1)."""
