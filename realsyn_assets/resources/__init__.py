"""Dagster resources: storage root, DuckDB metrics, LanceDB vectors, encoder, text generator."""

from realsyn_assets.resources.encoder import EncoderResource
from realsyn_assets.resources.generator import GeneratorResource
from realsyn_assets.resources.metrics import MetricsResource
from realsyn_assets.resources.storage import StorageResource
from realsyn_assets.resources.vectors import VectorStoreResource

__all__ = [
    "EncoderResource",
    "GeneratorResource",
    "MetricsResource",
    "StorageResource",
    "VectorStoreResource",
]
