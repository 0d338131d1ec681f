"""Readers: OBELICS (jsonl / parquet, paths / bytes / URLs), MMC4, malformed rows, fetching."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from realsyn_assets.core.ids import document_id
from realsyn_assets.core.ingest.documents import fetch_image_bytes, read_shard
from realsyn_assets.core.ingest.download import DownloadedImages, download_urls
from realsyn_assets.core.ingest.http_fetch import DownloadSettings


def _jpeg(color=(200, 10, 10), size=(120, 120)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def _write_jsonl(path, records, raw_lines=()):
    with open(path, "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
        for line in raw_lines:
            fh.write(line + "\n")


def test_obelics_jsonl_page_order_and_relative_paths(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(_jpeg())
    _write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                "id": "d1",
                "url": "https://x.org/1",
                "texts": ["Hello there.", None, "Bye now."],
                "images": [None, "img/a.jpg", None],
            },
        ],
    )
    tables = read_shard(tmp_path / "s.jsonl")
    rows = tables.items.to_pylist()
    assert [r["kind"] for r in rows] == ["text", "image", "text"]
    assert [r["position"] for r in rows] == [0, 1, 2]
    assert rows[1]["image_ref"] == "img/a.jpg"  # relative to the shard's folder
    assert rows[0]["doc_id"] == document_id("d1")
    assert tables.documents_kept == 1 and tables.rejections.num_rows == 0


def test_malformed_documents_become_rejections_naming_file_and_row(tmp_path):
    good = {"id": "ok", "texts": ["A fine sentence here."], "images": [None]}
    _write_jsonl(
        tmp_path / "s.jsonl",
        [
            good,
            {"id": "m1", "texts": ["a", "b"], "images": [None]},  # length mismatch
            {"id": "m2", "texts": ["a"], "images": ["x.jpg"]},  # both at one index
            {"id": "m3", "foo": 1},  # unknown layout
            {"id": "m4", "texts": [], "images": []},  # empty
            {"id": "m5", "texts": [5], "images": [None]},  # bad text type
            [1, 2, 3],  # not an object
            good,  # duplicate document
        ],
        raw_lines=["{not json"],
    )
    tables = read_shard(tmp_path / "s.jsonl")
    rejected = tables.rejections.to_pylist()
    reasons = [r["reason"] for r in rejected]
    assert reasons == [
        "length_mismatch",
        "both_text_and_image",
        "unknown_layout",
        "empty_document",
        "bad_text",
        "not_an_object",
        "duplicate_document",
        "invalid_json",
    ]
    assert [r["source_row"] for r in rejected] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(r["source_file"] == "s.jsonl" for r in rejected)
    assert tables.documents_read == 9 and tables.documents_kept == 1


def test_obelics_parquet_with_embedded_bytes_and_hf_dicts(tmp_path):
    data = _jpeg()
    table = pa.table(
        {
            "id": ["p1", "p2"],
            "texts": [["Caption text here.", None], [None, "After the image."]],
            "images": [[None, data], [data, None]],
        }
    )
    pq.write_table(table, tmp_path / "s.parquet")
    rows = read_shard(tmp_path / "s.parquet").items.to_pylist()
    images = [r for r in rows if r["kind"] == "image"]
    assert len(images) == 2 and all(r["image_bytes"] == data for r in images)


def test_gzipped_jsonl_and_urls(tmp_path):
    with gzip.open(tmp_path / "s.jsonl.gz", "wt") as fh:
        fh.write(
            json.dumps(
                {
                    "texts": [None, "Some words go here."],
                    "images": ["https://example.org/a.jpg", None],
                    "general_metadata": json.dumps({"url": "https://example.org/page"}),
                }
            )
            + "\n"
        )
    rows = read_shard(tmp_path / "s.jsonl.gz").items.to_pylist()
    assert rows[0]["image_ref"] == "https://example.org/a.jpg"
    assert rows[0]["url"] == "https://example.org/page"
    assert rows[0]["doc_id"] == document_id("https://example.org/page")


def test_mmc4_layout_interleaves_images_after_matched_text(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg())
    _write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "url": "https://m.org/1",
                "text_list": ["First.", "Second.", "Third."],
                "image_info": [
                    {
                        "image_name": "a.jpg",
                        "raw_url": "https://m.org/a.jpg",
                        "matched_text_index": 1,
                    },
                    {
                        "image_name": "missing.jpg",
                        "raw_url": "https://m.org/b.jpg",
                        "matched_text_index": 0,
                    },
                ],
            },
            {
                "url": "https://m.org/2",
                "text_list": ["Only."],
                "image_info": [{"image_name": "a.jpg", "matched_text_index": 7}],
            },
        ],
    )
    tables = read_shard(tmp_path / "m.jsonl")
    rows = [r for r in tables.items.to_pylist()]
    kinds = [(r["kind"], r["text"] or r["image_ref"]) for r in rows]
    assert kinds == [
        ("text", "First."),
        ("image", "https://m.org/b.jpg"),
        ("text", "Second."),
        ("image", "a.jpg"),  # relative to the shard's folder
        ("text", "Third."),
    ]
    assert tables.rejections.column("reason").to_pylist() == ["bad_matched_text_index"]


def test_unsupported_file_type_is_a_clear_error(tmp_path):
    (tmp_path / "s.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported shard file type"):
        read_shard(tmp_path / "s.csv")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/big.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(b"x" * 5000)
            return
        if self.path == "/a.jpg":
            body = _jpeg()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_local_embedded_and_download(tmp_path, http_server):
    data = _jpeg()
    (tmp_path / "a.jpg").write_bytes(data)
    assert fetch_image_bytes(str(tmp_path / "a.jpg"), None, base_dir=tmp_path)[0] == data
    assert fetch_image_bytes(None, data)[0] == data
    assert fetch_image_bytes("nope.jpg", None, base_dir=tmp_path)[1] == "missing_file"
    assert fetch_image_bytes(None, None)[1] == "missing_reference"
    assert fetch_image_bytes("ftp://host/a.jpg", None)[1] == "unsupported_scheme"
    url = f"{http_server}/a.jpg"
    assert fetch_image_bytes(url, None)[1] == "download_missing"  # never from the network
    urls = [url, f"{http_server}/404.jpg", f"{http_server}/big.jpg"]
    settings = DownloadSettings(
        threads=2, retries=0, max_bytes=4000, allow_addresses=("127.0.0.1",)
    )
    report = download_urls(urls, tmp_path / "store", settings)
    downloads = DownloadedImages(report.table, tmp_path / "store")
    got, reason, _ = fetch_image_bytes(url, None, downloads=downloads)
    assert got == data and reason is None
    assert fetch_image_bytes(urls[1], None, downloads=downloads)[1] == "download_http_error"
    assert fetch_image_bytes(urls[2], None, downloads=downloads)[1] == "download_too_large"
    big = tmp_path / "big.bin"
    big.write_bytes(b"0" * 2000)
    assert fetch_image_bytes(str(big), None, base_dir=tmp_path, max_bytes=1000)[1] == (
        "too_many_bytes"
    )
