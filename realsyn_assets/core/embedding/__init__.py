"""Image and text embeddings (paper §3.2): the open_clip encoder and the bootstrap encoder."""
