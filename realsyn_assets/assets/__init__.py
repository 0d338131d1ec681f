"""One module per asset group: its assets (orchestration only: read, call core, write, record
metadata) and, below them, the checks of those assets."""

import dagster as dg

from realsyn_assets.assets import (
    balance,
    bootstrap,
    caption,
    dedup,
    download,
    embed,
    evaluate,
    export,
    extract,
    filter,
    ingest,
    quality,
    retrieve,
    synthesize,
    train,
)

GROUP_MODULES = [
    ingest,
    download,
    extract,
    bootstrap,
    embed,
    filter,
    dedup,
    retrieve,
    caption,
    synthesize,
    balance,
    export,
    train,
    evaluate,
    quality,
]

ALL_ASSETS = dg.load_assets_from_modules(GROUP_MODULES)
ALL_CHECKS = dg.load_asset_checks_from_modules(GROUP_MODULES)
