"""Image and text embeddings (paper §3.2): the open_clip encoder and the bootstrap encoder.

- :mod:`.encoder`: :class:`~.encoder.Encoder`, L2-normalised vectors from any open_clip model;
- :mod:`.configs`: our own open_clip model configs (``model_configs/``) and their registration;
- :mod:`.towers`: the plain CNN image tower those configs can name (registered with timm);
- :mod:`.images`: image decoding and the DataLoader dataset the encoder reads through;
- :mod:`.runtime`: torch device, precision, threads and atomic checkpoint writes;
- :mod:`.bootstrap`: training a small encoder from in-document pairs when no weights are given.
"""
