"""The image/text encoder (open_clip) as a resource; heavy imports happen on first use."""

from typing import Any

import dagster as dg

from realsyn_assets.resources.home import Home

# One loaded model per (spec, weights folder) per process: several assets in one run share it.
_LOADED: dict[tuple, Any] = {}


class EncoderResource(dg.ConfigurableResource):
    """open_clip encoder: any model name + pretrained tag, or a local checkpoint.

    With neither, the small `realsyn-tiny` config runs on weights created locally once (tests,
    the offline demo). Paper: EVA02-E-14-plus (model_name="EVA02-E-14-plus",
    pretrained="laion2b_s9b_b144k"), which downloads from the hub when asked.
    """

    home: str = ""
    model_name: str = "realsyn-tiny"
    pretrained: str = ""
    checkpoint: str = ""
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 64
    num_workers: int = 0

    def spec(self):
        from realsyn_assets.core.encoder import EncoderSpec

        return EncoderSpec(
            model_name=self.model_name,
            pretrained=self.pretrained or None,
            checkpoint=self.checkpoint or None,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )

    def get(self):
        """The core Encoder, created once per process for this configuration."""
        from realsyn_assets.core.encoder import Encoder

        spec = self.spec()
        weights_dir = Home(self.home or None).models
        key = (spec, str(weights_dir))
        if key not in _LOADED:
            _LOADED[key] = Encoder(spec, weights_dir)
        return _LOADED[key]
