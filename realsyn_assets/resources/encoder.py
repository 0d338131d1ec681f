"""The image/text encoder (open_clip) as a resource; heavy imports happen on first use."""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from realsyn_assets.names import Asset
from realsyn_assets.resources.home import Home
from realsyn_assets.resources.home_resource import HomeBasedResource

# One loaded model per (spec, weights file state) per process: assets in one run share it, and a
# retrained bootstrap checkpoint (new mtime) is picked up.
_LOADED: dict[tuple, Any] = {}


def bootstrap_checkpoint(home: Home) -> Path:
    return home.asset_dir(Asset.BOOTSTRAP_ENCODER) / "checkpoint.pt"


def bootstrap_model_name(home: Home, default: str) -> str:
    """The open_clip config the bootstrap checkpoint was trained with (sidecar encoder.json)."""
    import json

    sidecar = home.asset_dir(Asset.BOOTSTRAP_ENCODER) / "encoder.json"
    return (
        json.loads(sidecar.read_text()).get("model_name", default) if sidecar.exists() else default
    )


class EncoderResource(HomeBasedResource):
    """open_clip encoder: any model name + pretrained tag, or a local checkpoint.

    Resolution order: `checkpoint` > `pretrained` (hub download, only when asked) > the
    `bootstrap_encoder` asset's checkpoint (when `use_bootstrap` and it exists) > `model_name`
    with random weights created locally once. Paper: EVA02-E-14-plus
    (model_name="EVA02-E-14-plus", pretrained="laion2b_s9b_b144k").
    """

    model_name: str = Field(
        "realsyn-tiny",
        description="open_clip model config: ours (realsyn-tiny, realsyn-conv-minilm, "
        "realsyn-plaincnn-minilm) or open_clip's (ViT-B-32, EVA02-E-14-plus, ...).",
    )
    pretrained: str = Field(
        "", description="open_clip pretrained tag, downloaded from the hub; empty = none."
    )
    checkpoint: str = Field(
        "", description="Local weights file; wins over every other source. Empty = none."
    )
    use_bootstrap: bool = Field(
        True,
        description="Use the bootstrap_encoder asset's checkpoint when it exists and neither "
        "checkpoint nor pretrained is set.",
    )
    device: str = Field(
        "auto",
        description='Torch device: "auto" (cuda if available, else cpu), "cpu", "cuda:0", ...',
    )
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="Autocast precision on CUDA; CPU always runs fp32."
    )
    batch_size: int = Field(64, description="Images or texts per forward pass.")
    num_workers: int = Field(
        0, description="DataLoader processes that read and preprocess images; 0 = in process."
    )

    def kind(self) -> str:
        """ "checkpoint" | "pretrained" | "bootstrap" | "random": which weights get() loads."""
        if self.checkpoint:
            return "checkpoint"
        if self.pretrained:
            return "pretrained"
        if self.use_bootstrap and bootstrap_checkpoint(self.layout).exists():
            return "bootstrap"
        return "random"

    def configured_weights(self) -> str:
        """The user's real weights: the checkpoint file, else the pretrained tag; empty when
        the weights are the bootstrap's or random (what choose_window's paper rule asks)."""
        return self.checkpoint or self.pretrained

    def spec(self):
        from realsyn_assets.core.embedding.encoder import EncoderSpec

        kind = self.kind()
        checkpoint = self.checkpoint or None
        model_name = self.model_name
        if kind == "bootstrap":
            home = self.layout
            checkpoint = str(bootstrap_checkpoint(home))
            model_name = bootstrap_model_name(home, model_name)
        return EncoderSpec(
            model_name=model_name,
            pretrained=self.pretrained or None,
            checkpoint=checkpoint,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )

    def get(self):
        """The core Encoder, created once per process for this configuration."""
        return load_encoder(self.spec(), self.layout.models)


def load_encoder(spec, weights_dir: Path | str):
    """The core Encoder for `spec`, created once per process (also in a Ray worker, which gets
    the picklable spec and weights folder, not the resource)."""
    from realsyn_assets.core.embedding.encoder import Encoder

    state = None
    if spec.checkpoint and Path(spec.checkpoint).exists():
        stat = Path(spec.checkpoint).stat()
        state = (stat.st_mtime_ns, stat.st_size)
    key = (spec, str(weights_dir), state)
    if key not in _LOADED:
        _LOADED[key] = Encoder(spec, weights_dir)
    return _LOADED[key]


def encode_with(spec, weights_dir: str, method: str, values: list, progress: bool = False):
    """`load_encoder(spec, weights_dir).<method>(values)`: the embedding steps' unit of work,
    plain values in, a float32 array out, so it can run as a Ray task."""
    return getattr(load_encoder(spec, weights_dir), method)(values, progress=progress)
