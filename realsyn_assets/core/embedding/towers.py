"""Small image towers for the bootstrap encoder, registered with timm so open_clip can build them.

Why a plain CNN: the bootstrap encoder learns from a few hundred images of small objects.
Towers with a stride-4 stem (open_clip's ModifiedResNet, timm's ResNets) blur the outline of a
10-pixel object before a feature can describe it; here the first convolutions see full
resolution, and the global max pool answers "is there such a shape anywhere", which does not
depend on how many objects there are or where they are. docs/bootstrap-encoder.md compares the
towers.

open_clip builds any timm model named in ``vision_cfg.timm_model_name`` (``TimmModel``), so
the tower is registered with timm's public ``register_model`` and the model config stays a
plain open_clip JSON file. Registration is idempotent.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

POOLS = ("max", "avg", "avgmax")
_lock = threading.Lock()
_registered = False


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class GlobalPool(nn.Module):
    """Global max / average / concatenated average+max pooling to a flat vector."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in POOLS:
            raise ValueError(f"pool {kind!r} not in {POOLS} (PlainConvNet always pools)")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return x.amax(dim=(-2, -1))
        if self.kind == "avg":
            return x.mean(dim=(-2, -1))
        return torch.cat([x.mean(dim=(-2, -1)), x.amax(dim=(-2, -1))], dim=1)


class PlainConvNet(nn.Module):
    """VGG-style stages of 3x3 conv-BN-ReLU at full input resolution, 2x2 max pool between.

    ``depths`` convolutions per stage; stage s has ``width * 2**s`` channels. Implements the
    part of timm's model interface that open_clip's ``TimmModel`` uses (``num_features``,
    ``default_cfg``, ``reset_classifier``, ``forward_features``).
    """

    def __init__(
        self,
        width: int = 16,
        depths: tuple[int, ...] = (2, 2, 2, 1),
        global_pool: str = "max",
        num_classes: int = 0,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_chans
        for stage, depth in enumerate(depths):
            if stage:
                layers.append(nn.MaxPool2d(2))
            c_out = width * 2**stage
            for _ in range(depth):
                layers += _conv_bn_relu(c_in, c_out)
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.channels = c_in
        self.default_cfg = {"pool_size": None, "num_classes": num_classes}
        self.pretrained_cfg = self.default_cfg
        self.drop = nn.Dropout(drop_rate)
        self.reset_classifier(num_classes, global_pool)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New head; ``global_pool`` None keeps the current pool. The tower always pools, so
        open_clip's attention pools (``timm_pool`` abs_attn / rot_attn, which ask for "") are
        refused with the pools it does offer."""
        if global_pool is not None:
            self.pool = GlobalPool(global_pool)
        self.num_features = self.channels * (2 if self.pool.kind == "avgmax" else 1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# name -> (width, depths); the pool is chosen by open_clip's ``timm_pool`` (default "max").
TOWERS: dict[str, tuple[int, tuple[int, ...]]] = {
    "realsyn_plaincnn_w16": (16, (2, 2, 2, 1)),
}


def _entrypoint(name: str, width: int, depths: tuple[int, ...]):
    def create(pretrained: bool = False, **kwargs) -> PlainConvNet:
        if pretrained:
            raise ValueError(f"{name} has no pretrained weights; train it (bootstrap_encoder)")
        for unused in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "drop_path_rate"):
            kwargs.pop(unused, None)
        return PlainConvNet(width=width, depths=depths, **kwargs)

    create.__name__ = name
    create.__module__ = __name__
    create.__doc__ = f"PlainConvNet width {width}, depths {depths}."
    return create


def register_timm_towers() -> None:
    """Make the towers in :data:`TOWERS` known to ``timm.create_model`` (once per process)."""
    global _registered
    with _lock:
        if _registered:
            return
        import timm
        from timm.models import register_model

        for name, (width, depths) in TOWERS.items():
            if not timm.is_model(name):
                register_model(_entrypoint(name, width, depths))
        _registered = True
