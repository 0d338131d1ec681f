"""A bootstrap encoder from in-document co-occurrence, for users without pretrained CLIP weights.

Interleaved documents carry a weak pairing signal: an image and the text blocks right before and
after it usually talk about the same thing (MMC4 and OBELICS rely on this). Mining those pairs
and training a small CLIP on them contrastively gives an encoder whose retrieval means something,
where random weights give noise.

- :mod:`.pairs`: (image, candidate sentences) pairs: mined from page order, re-selected or
  retrieved with a model, subsampled;
- :mod:`.trainer`: :class:`~.trainer.BootstrapTrainer`, a small CLIP trained in memory on
  candidate sets with a multiple-instance contrastive loss;
- :mod:`.rounds`: training round after round, re-selecting the pairs between rounds;
- :mod:`.run`: the whole run for the ``bootstrap_encoder`` asset: pairs in, checkpoint and
  retrieval scores (trained vs random weights) out.

The defaults (one round of MIL-NCE over every nearby sentence, a frozen pretrained text tower, a
plain CNN image tower) and the measurements behind them are in docs/bootstrap-encoder.md.
"""
