"""`image_downloads` + `extracted_images` through Dagster on a tiny shard whose images are URLs on
a local server: the downloads are counted, failures become `download_<kind>` rejections of the
image funnel, and `download_statuses_complete` fails when a status row or a stored file is
lost."""

from __future__ import annotations

import json

import dagster as dg
import pyarrow as pa

from realsyn_assets.assets import download as download_assets
from realsyn_assets.assets import extract, ingest
from realsyn_assets.bench._image_server import serving
from realsyn_assets.core.ingest import download as core_download
from realsyn_assets.core.ingest.http_fetch import OK, DownloadSettings
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.names import Asset, ImageDownloadsMetrics
from realsyn_assets.partitions import SHARDS
from realsyn_assets.resources.home import Home
from realsyn_assets_tests.assets.test_checks_fail_upstream_c import KEY
from realsyn_assets_tests.assets.test_checks_fail_upstream_c import Home as CheckHome
from realsyn_assets_tests.assets.tiny_home_c import home_resources

ERROR = dg.AssetCheckSeverity.ERROR
ALLOW = {"allow_addresses": ["127.0.0.1"], "retries": 1, "backoff_s": 0.01, "timeout_s": 5.0}


def _shard(folder, base: str) -> list[str]:
    """An OBELICS-layout shard of 4 documents with URL images; the URLs in slot order."""
    images = [
        [f"{base}/img/1.jpg", f"{base}/img/2.jpg"],
        [f"{base}/404/3", f"{base}/img/1.jpg"],  # a repeat of the first URL
        [f"{base}/tofile/4"],
        [f"{base}/chain/2/5"],
    ]
    lines = []
    for i, urls in enumerate(images):
        texts = [f"A photo of a dog running on the beach number {i}."] + [None] * len(urls)
        lines.append(json.dumps({"id": f"doc{i}", "texts": texts, "images": [None, *urls]}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shard.jsonl").write_text("\n".join(lines) + "\n")
    return [url for urls in images for url in urls]


def test_image_downloads_feed_extracted_images_and_failures_are_rejections(tmp_path):
    layout = Home(tmp_path / "home")
    instance = dg.DagsterInstance.ephemeral()
    with serving() as base:
        slots = _shard(tmp_path / "corpus", base)
        (entry,) = layout.register_shards([tmp_path / "corpus" / "shard.jsonl"])
        instance.add_dynamic_partitions(SHARDS, [entry.key])
        result = dg.materialize(
            [
                ingest.raw_documents,
                download_assets.image_downloads,
                download_assets.download_statuses_complete,
                extract.extracted_images,
                extract.image_funnel,
            ],
            partition_key=entry.key,
            instance=instance,
            resources=home_resources(layout.root),
            run_config={"ops": {Asset.IMAGE_DOWNLOADS: {"config": ALLOW}}},
        )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["download_statuses_complete"].passed
    (event,) = result.asset_materializations_for_node(Asset.IMAGE_DOWNLOADS)
    M = ImageDownloadsMetrics
    meta = {k: v.value if hasattr(v, "value") else v for k, v in event.metadata.items()}
    assert (meta[M.URLS], meta[M.OK], meta[M.FAILED], meta[M.REQUESTED]) == (5, 3, 2, 5)
    assert isinstance(meta[M.IMAGES_PER_S], float) and meta[M.IMAGES_PER_S] > 0
    assert meta["rejections"] == {"bad_redirect": 1, "http_error": 1}
    statuses = read_table(layout.partition_file(Asset.IMAGE_DOWNLOADS, entry.key))
    assert statuses.column("url").to_pylist() == list(dict.fromkeys(slots))
    kept = read_table(layout.partition_file(Asset.EXTRACTED_IMAGES, entry.key))
    rejected = read_table(
        layout.partition_file(Asset.EXTRACTED_IMAGES, entry.key, ".rejected.parquet")
    ).to_pylist()
    assert sorted(kept.column("source_ref").to_pylist()) == sorted(
        [f"{base}/img/1.jpg", f"{base}/img/2.jpg", f"{base}/chain/2/5"]
    )
    reasons = {row["source_ref"]: (row["reason"], row["detail"]) for row in rejected}
    assert reasons[f"{base}/404/3"] == ("download_http_error", f"404 Not Found {base}/404/3")
    assert reasons[f"{base}/tofile/4"][0] == "download_bad_redirect"
    assert len(rejected) == 3  # the two failures and the repeat of img/1 (same bytes)
    assert kept.num_rows + len(rejected) == len(slots)


def test_a_shard_without_urls_writes_an_empty_status_table(tmp_path):
    root = tmp_path / "home"
    docs = pa.table({"kind": ["text", "image"], "image_ref": [None, "a.jpg"]})
    assert (
        core_download.http_refs(
            docs.append_column("image_bytes", pa.array([None, None], pa.binary()))
        )
        == []
    )
    table = core_download.disabled_table([])
    assert table.num_rows == 0 and table.schema == core_download.STATUS_SCHEMA
    assert core_download.status_problems([], table, root) == []


def _check_home(tmp_path, base: str):
    """A check home whose shard has two downloaded URLs: (home, urls, store)."""
    home = CheckHome(tmp_path)
    layout = home.storage.layout
    urls = [f"{base}/img/7.jpg", f"{base}/img/8.jpg"]
    from realsyn_assets.core.ingest.documents import ITEM_SCHEMA

    rows = [
        {"doc_id": "d", "doc_index": 0, "position": i, "kind": "image", "image_ref": url}
        for i, url in enumerate(urls)
    ]
    write_table(
        pa.Table.from_pylist(rows, schema=ITEM_SCHEMA),
        layout.partition_file(Asset.RAW_DOCUMENTS, KEY),
    )
    store = core_download.shard_store(layout.root, KEY)
    settings = DownloadSettings(threads=2, allow_addresses=("127.0.0.1",))
    report = core_download.download_urls(urls, store, settings)
    write_table(report.table, layout.partition_file(Asset.IMAGE_DOWNLOADS, KEY))
    assert home.evaluate("download_statuses_complete").passed
    return home, report.table, store


def test_download_statuses_complete_fails_when_a_stored_file_is_gone(tmp_path):
    with serving() as base:
        home, table, store = _check_home(tmp_path, base)
    (store / table.column("file")[0].as_py()).unlink()
    evaluation = home.evaluate("download_statuses_complete")
    assert evaluation.passed is False and evaluation.severity == ERROR
    assert "stored file missing" in evaluation.description
    assert evaluation.metadata["value"].value == 1 and evaluation.metadata["threshold"].value == 0


def test_download_statuses_complete_fails_when_a_status_row_is_missing(tmp_path):
    with serving() as base:
        home, table, _ = _check_home(tmp_path, base)
    layout = home.storage.layout
    write_table(table.slice(1), layout.partition_file(Asset.IMAGE_DOWNLOADS, KEY))
    evaluation = home.evaluate("download_statuses_complete")
    assert evaluation.passed is False and evaluation.severity == ERROR
    assert "1 URLs without a status" in evaluation.description
    assert table.column("status").to_pylist() == [OK, OK]
