"""Which weights the encoder resource loads: configured > bootstrap > random."""

from __future__ import annotations

import json

from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec, ensure_local_weights
from realsyn_assets.resources import EncoderResource, HomeResource
from realsyn_assets.resources.encoder import bootstrap_checkpoint
from realsyn_assets.resources.home import Home


def test_resolution_order(tmp_path):
    home = Home(tmp_path / "home")
    home_resource = HomeResource(path=str(home.root))
    resource = EncoderResource(home=home_resource)
    assert resource.kind() == "random"
    assert resource.get().source.startswith("local-random")

    # a bootstrap checkpoint appears: it is used when nothing is configured
    ckpt = bootstrap_checkpoint(home)
    ckpt.parent.mkdir(parents=True)
    ensure_local_weights("realsyn-tiny", ckpt, seed=7)
    (ckpt.parent / "encoder.json").write_text(json.dumps({"model_name": "realsyn-tiny"}))
    assert resource.kind() == "bootstrap"
    boot = resource.get()
    assert boot.source.startswith("checkpoint:") and str(ckpt) in boot.source

    # a configured checkpoint always wins over the bootstrap one
    other = tmp_path / "configured.pt"
    ensure_local_weights("realsyn-tiny", other, seed=11)
    configured = EncoderResource(home=home_resource, checkpoint=str(other))
    assert configured.kind() == "checkpoint"
    assert str(other) in configured.get().source
    assert configured.get().identity != boot.identity

    # and the bootstrap can be switched off
    assert EncoderResource(home=home_resource, use_bootstrap=False).kind() == "random"
    # a configured pretrained tag wins too (not loaded here: it would download)
    assert (
        EncoderResource(home=home_resource, pretrained="laion2b_s34b_b79k").kind() == "pretrained"
    )


def test_retrained_bootstrap_is_reloaded(tmp_path):
    home = Home(tmp_path / "home")
    ckpt = bootstrap_checkpoint(home)
    ckpt.parent.mkdir(parents=True)
    ensure_local_weights("realsyn-tiny", ckpt, seed=1)
    resource = EncoderResource(home=HomeResource(path=str(home.root)))
    first = resource.get().identity
    ckpt.unlink()
    ensure_local_weights("realsyn-tiny", ckpt, seed=2)
    assert resource.get().identity != first
    assert (
        resource.get().identity == Encoder(EncoderSpec(checkpoint=str(ckpt)), home.models).identity
    )
