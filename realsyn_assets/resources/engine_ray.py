"""The Ray side of the engine, imported only when a cluster is configured (the `cluster` extra:
ray, dagster-ray): connecting through dagster-ray's `RayResource.connect`."""

from __future__ import annotations

import logging
from typing import Any

from dagster_ray import RayResource
from pydantic import Field

log = logging.getLogger(__name__)


class ExistingRayCluster(RayResource):
    """An existing cluster reached by address: dagster-ray's connect (`ray.init` with retries on
    connection errors, runtime-env handling), without creating or deleting anything."""

    address: str = Field("", description="The cluster's address, passed to ray.init.")

    @property
    def host(self) -> str:
        return self.address.removeprefix("ray://").rsplit(":", 1)[0]

    @property
    def name(self) -> str:
        return f"Ray cluster {self.address}"

    @property
    def ray_address(self) -> str:  # type: ignore[override]
        return self.address


class _LogContext:
    """What RayResource.connect reads of a Dagster context: a logger."""

    log = log


def connect(address: str, init_options: dict[str, Any]):
    """`ray.init(address=address, **init_options)` through dagster-ray; the Ray context."""
    return ExistingRayCluster(address=address, ray_init_options=init_options).connect(_LogContext())
