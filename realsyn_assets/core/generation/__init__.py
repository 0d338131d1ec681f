"""Image semantic augmented generation (paper §3.3): tags, captions, LLM fusion."""
