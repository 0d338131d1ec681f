"""Image semantic augmented generation (paper §3.2): `prompts` (what a generator sees, the fusion
prompt, the generator interface), `cleaning` (raw LLM output -> one caption), `offline` (rule-based
fusion on CPU), `clients` (OpenAI-compatible and vLLM backends, `make_generator`), `tags` (the
RAM++ stand-in) and `synthesis` (the `synthetic_texts` step for one shard)."""
