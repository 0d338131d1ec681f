"""Image semantic augmented generation (paper §4).

- Captions: `captioners` (the `Captioner` interface, `make_captioner`), `captioning_backends`
  (openai, vllm, transformers), `offline_captioner` (the small captioner trained on the corpus),
  `vllm_engine` (one vLLM engine per process and option set).
- Tags: `tags` (the vocabulary mined from the corpus), `tagging` (user list + mined words, the
  calibrated threshold).
- Fusion: `prompts` (what a generator sees, the versioned instruction, the `TextGenerator`
  interface), `clients` (`make_generator`, the per-item failure policy), `clients_openai`,
  `clients_vllm`, `offline` (the grounded rewrite on CPU), `cleaning` (raw output -> one line).
- `validation` (empty, echo, refusal, repetition, too long, garbage), `cache` (content keys),
  `synthesis` (the `synthetic_texts` step for one shard).
"""
