"""Dagster resources: the home folder, storage, DuckDB metrics, LanceDB vectors, encoder, generator."""

from realsyn_assets.resources.captioner import CaptionerResource
from realsyn_assets.resources.encoder import EncoderResource
from realsyn_assets.resources.engine import EngineResource
from realsyn_assets.resources.generator import GeneratorResource
from realsyn_assets.resources.home_resource import HomeResource
from realsyn_assets.resources.metrics import MetricsResource
from realsyn_assets.resources.storage import StorageResource
from realsyn_assets.resources.vectors import VectorStoreResource

__all__ = [
    "CaptionerResource",
    "EncoderResource",
    "EngineResource",
    "GeneratorResource",
    "HomeResource",
    "MetricsResource",
    "StorageResource",
    "VectorStoreResource",
]
