"""download: a shard's http(s) image URLs fetched into its download store (before extraction).

Real OBELICS and MMC4 shards name their images by URL. `image_downloads` fetches them in
parallel, bounded and resumably (`core.ingest.download`), so that `extracted_images` reads the
bytes from `<home>/downloads/<shard>/` and never touches the network.
"""

import dagster as dg
from pydantic import Field

from realsyn_assets.assets._checks import Result, check_result, shard_check
from realsyn_assets.assets._common import code_version, rejection_counts, stage_metadata
from realsyn_assets.core.ingest import download
from realsyn_assets.core.ingest.http_fetch import OK, DownloadSettings
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.names import Asset, Group, ImageDownloadsMetrics, Kind
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource

_DOCUMENT_COLUMNS = ["kind", "image_ref", "image_bytes"]
_DEFAULTS = DownloadSettings()


class DownloadConfig(dg.Config):
    enabled: bool = Field(
        True,
        description="Download the shard's http(s) image URLs; off = nothing is requested and "
        "every URL gets the status 'disabled' (extraction rejects it as download_disabled).",
    )
    processes: int = Field(
        _DEFAULTS.processes,
        description="Worker processes; 1 = threads only, in the asset's process.",
    )
    threads: int = Field(_DEFAULTS.threads, description="Threads per process (requests in flight).")
    timeout_s: float = Field(
        _DEFAULTS.timeout_s, description="Connect timeout and read timeout of one request, seconds."
    )
    retries: int = Field(
        _DEFAULTS.retries,
        description="Extra attempts after a connection error, timeout, 429 or 5xx.",
    )
    backoff_s: float = Field(
        _DEFAULTS.backoff_s,
        description="First wait before a retry, seconds; doubled per retry, plus up to 100% "
        "jitter; a numeric Retry-After (up to 30 s) waits longer.",
    )
    max_bytes: int = Field(
        _DEFAULTS.max_bytes,
        description="Largest image accepted (Content-Length and streamed), bytes: too_large.",
    )
    max_redirects: int = Field(
        _DEFAULTS.max_redirects,
        description="Redirect hops followed (each validated again): more is too_many_redirects.",
    )
    resize_max_side: int = Field(
        _DEFAULTS.resize_max_side,
        description="Re-encode downloads as JPEG with the longest side at most this; 0 = keep "
        "the bytes as served.",
    )
    allow_addresses: list[str] = Field(
        [],
        description="Addresses or networks (e.g. '127.0.0.1', '10.0.0.0/8') allowed although "
        "private, loopback, link-local, multicast or reserved; empty = public addresses only.",
    )
    user_agent: str = Field(_DEFAULTS.user_agent, description="User-Agent header of requests.")

    def settings(self) -> DownloadSettings:
        return DownloadSettings(
            processes=self.processes,
            threads=self.threads,
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
            max_bytes=self.max_bytes,
            max_redirects=self.max_redirects,
            resize_max_side=self.resize_max_side,
            allow_addresses=tuple(self.allow_addresses),
            user_agent=self.user_agent,
        )


@dg.asset(
    group_name=Group.EXTRACT,
    partitions_def=shard_partitions,
    deps=[Asset.RAW_DOCUMENTS],
    code_version=code_version("1", DownloadConfig, exclude=("processes", "threads")),
    kinds={Kind.PARQUET, Kind.PYTHON},
    description="The shard's http(s) image URLs downloaded in parallel (processes x threads), "
    "bounded (timeouts, retries with backoff, size cap, redirects checked, private and loopback "
    "addresses refused) into `downloads/<shard>/`, one status row per URL in "
    "`data/image_downloads/<shard>.parquet` (ok or an error kind). Resumable: URLs already in "
    "the store's journal are not requested again. A shard without URLs writes an empty table.",
)
def image_downloads(
    context: dg.AssetExecutionContext,
    config: DownloadConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    home = storage.layout
    key = context.partition_key
    docs = read_table(home.partition_file(Asset.RAW_DOCUMENTS, key), columns=_DOCUMENT_COLUMNS)
    urls = download.http_refs(docs)
    requested, seconds = 0, 0.0
    if not urls or not config.enabled:
        table = download.disabled_table(urls)
    else:
        settings = config.settings()
        context.log.info(
            f"{key}: {len(urls)} URLs, {settings.processes} processes x {settings.threads} threads"
        )
        report = download.download_urls(urls, download.shard_store(home.root, key), settings)
        table, requested, seconds = report.table, report.requested, report.seconds
    out = write_table(table, home.partition_file(Asset.IMAGE_DOWNLOADS, key))
    statuses = table.column("status").to_pylist()
    M = ImageDownloadsMetrics
    counts = {
        M.URLS: len(urls),
        M.OK: statuses.count(OK),
        M.FAILED: len(statuses) - statuses.count(OK),
        M.REQUESTED: requested,
        M.IMAGES_PER_S: float(requested / seconds) if seconds > 0 else 0.0,
    }
    reasons = rejection_counts([status for status in statuses if status != OK])
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, Asset.IMAGE_DOWNLOADS, key, counts, reasons, table, out)
    )


@shard_check(
    Asset.IMAGE_DOWNLOADS,
    "download_statuses_complete",
    "Every http(s) image slot of the shard has exactly one status row (and no row names another "
    "URL), and every 'ok' row's stored file exists with its sha256 (ERROR, blocking: "
    "extracted_images reads the images through this table).",
    blocking=True,
)
def download_statuses_complete(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    home = storage.layout
    key = context.partition_key
    docs = read_table(home.partition_file(Asset.RAW_DOCUMENTS, key), columns=_DOCUMENT_COLUMNS)
    urls = download.http_refs(docs)
    table = read_table(home.partition_file(Asset.IMAGE_DOWNLOADS, key))
    problems = download.status_problems(urls, table, download.shard_store(home.root, key))
    return check_result(
        not problems,
        "; ".join(problems[:5]) or f"{len(urls)} URLs, one status each, stored files intact",
        value=len(problems),
        threshold=0,
        urls=len(urls),
    )
