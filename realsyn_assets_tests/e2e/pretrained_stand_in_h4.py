"""A locally trained stand-in for a downloaded open_clip checkpoint (EVA02, ViT-B-32, ...).

A random open_clip model knows nothing, and the pipeline's blocking check
`bootstrap_beats_random` rightly stops a run configured with one. Training a whole ViT from
scratch is minutes of CPU per epoch, so the stand-in keeps open_clip's randomly initialised
towers (seeded) and trains their two output projections (`visual.proj`, `text_projection`) and
the logit scale with open_clip's own contrastive loss (`open_clip.loss.ClipLoss`) on the demo
corpus's labelled (image, describing sentence) pairs: a linear probe on frozen random features,
which is enough to align images with the sentences that describe them. The result is the full
state dict of the genuine architecture, saved with `torch.save` the way a downloaded checkpoint
is, and loaded by the encoder resource like one.
"""

from __future__ import annotations

import json
from pathlib import Path

STAND_IN_STEPS = 400
STAND_IN_LR = 1e-2


def describing_pairs(corpus_root: Path) -> list[tuple[Path, str]]:
    """(image file, sentence text) for every clean image of the demo corpus and every clean
    sentence its ground truth says describes it."""
    truth = json.loads((corpus_root / "ground_truth.json").read_text())
    images = {
        image_id: corpus_root / record["path"]
        for image_id, record in truth["images"].items()
        if record["noise"] is None
    }
    return [
        (images[record["image_id"]], record["text"])
        for record in truth["sentences"].values()
        if record["noise"] is None and record.get("image_id") in images
    ]


def _trunk_features(model, preprocess, tokenizer, pairs):
    """Image and text features before the projections (the frozen part), one row per pair."""
    import torch
    from PIL import Image

    visual_proj, text_proj = model.visual.proj, model.text_projection
    model.visual.proj, model.text_projection = None, None
    try:
        with torch.no_grad():
            unique = sorted({path for path, _ in pairs})
            pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in unique])
            by_path = dict(zip(unique, model.encode_image(pixels), strict=True))
            image_feats = torch.stack([by_path[path] for path, _ in pairs])
            text_feats = model.encode_text(tokenizer([text for _, text in pairs]))
    finally:
        model.visual.proj, model.text_projection = visual_proj, text_proj
    return image_feats, text_feats


def train_stand_in(corpus_root: Path, model_name: str, out: Path, seed: int = 0) -> Path:
    """Train the projections of `model_name` (an open_clip config) on the corpus's describing
    pairs and save the model's state dict to `out`."""
    import open_clip
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    pairs = describing_pairs(corpus_root)
    image_feats, text_feats = _trunk_features(model, preprocess, tokenizer, pairs)
    params = [model.visual.proj, model.text_projection, model.logit_scale]
    optimizer = torch.optim.Adam(params, lr=STAND_IN_LR)
    loss_fn = open_clip.loss.ClipLoss()
    for _ in range(STAND_IN_STEPS):
        optimizer.zero_grad()
        image = F.normalize(image_feats @ model.visual.proj, dim=-1)
        text = F.normalize(text_feats @ model.text_projection, dim=-1)
        loss = loss_fn(image, text, model.logit_scale.exp().clamp(max=100.0))
        loss.backward()
        optimizer.step()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return out
