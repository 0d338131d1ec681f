"""File names of the balance stage's outputs, shared by the assets that write and read them."""

# image_clusters: one row per candidate pair (in_window flag, cluster id).
ASSIGNMENTS = "assignments.parquet"
# balanced_subset/<scale>/: the subset rows (with a `split` column), how they were selected, and
# the cluster sizes before / after capping.
SUBSET_FILE = "realsyn.parquet"
SELECTION_FILE = "selection.json"
CLUSTER_SIZES_FILE = "cluster_sizes.npz"
