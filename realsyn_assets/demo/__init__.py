"""The built-in demo corpus: generator, ground truth and demo-only scoring."""
