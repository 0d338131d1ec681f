"""<home>/resources.yaml configures the resources of every run: CLI, UI and daemon alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from realsyn_assets.definitions import make_resources
from realsyn_assets.resources.settings import ResourceSettingsError


def test_without_a_file_every_resource_has_its_defaults(tmp_path):
    resources = make_resources(str(tmp_path))
    assert resources["encoder"].model_name == "realsyn-tiny"
    assert resources["encoder"].checkpoint == ""
    assert resources["generator"].backend == "offline"


def test_the_file_sets_fields_of_homed_and_plain_resources(tmp_path):
    (tmp_path / "resources.yaml").write_text(
        "encoder: {model_name: ViT-B-32, checkpoint: /models/vit.pt, batch_size: 256}\n"
        "generator: {backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1'}\n"
    )
    resources = make_resources(str(tmp_path))
    encoder = resources["encoder"]
    assert (encoder.model_name, encoder.checkpoint, encoder.batch_size) == (
        "ViT-B-32",
        "/models/vit.pt",
        256,
    )
    assert encoder.kind() == "checkpoint"
    assert resources["generator"].backend == "openai"
    assert resources["storage"].max_image_bytes > 0  # untouched resources keep their defaults


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("encoderr: {model_name: x}\n", "unknown resource(s) encoderr"),
        ("encoder: ViT-B-32\n", "`encoder` must be a mapping"),
        ("encoder: {home: /elsewhere}\n", "(not `home`)"),
        ("- encoder\n", "expected a mapping"),
        ("encoder: {batch_size: many}\n", "bad settings for `encoder`"),
        ("encoder: {model_name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_file_is_a_clear_error_naming_it(tmp_path, text, needle):
    (tmp_path / "resources.yaml").write_text(text)
    with pytest.raises(ResourceSettingsError) as info:
        make_resources(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "resources.yaml") in message and needle in message


def test_the_code_location_of_a_home_loads_its_settings(tmp_path):
    """What `dg dev`, the daemon and `realsyn run` load: Definitions built in a fresh process
    whose REALSYN_HOME holds the file."""
    (tmp_path / "resources.yaml").write_text("encoder: {model_name: ViT-B-32, device: cpu}\n")
    code = (
        "import json; from realsyn_assets.definitions import defs; "
        "e = defs.resources['encoder']; print(json.dumps([e.model_name, e.device]))"
    )
    env = {**os.environ, "REALSYN_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["ViT-B-32", "cpu"]


def _one_image_shard(folder):
    from PIL import Image

    Image.new("RGB", (200, 160), (200, 40, 40)).save(folder / "red.png")
    doc = {
        "id": "d0",
        "texts": ["A red square sits on the table.", None],
        "images": [None, "red.png"],
    }
    shard = folder / "a.jsonl"
    shard.write_text(json.dumps(doc) + "\n")
    return shard


def test_an_in_process_run_uses_the_settings_of_its_own_home(tmp_path, clean_env):
    """Definitions already imported (with another home's settings) do not hide this home's
    resources.yaml from `pipeline.run_stage`; run config still wins over the file."""
    import pyarrow.parquet as pq

    import realsyn_assets.definitions  # noqa: F401  (built before this home existed)
    from realsyn_assets import pipeline
    from realsyn_assets.core.ingest.confined import REJECT_TOO_MANY_BYTES
    from realsyn_assets.names import Asset, Job

    layout = pipeline.prepare_environment(tmp_path / "home")
    (layout.root / "resources.yaml").write_text("storage: {max_image_bytes: 64}\n")
    (key,) = pipeline.register(layout, [_one_image_shard(tmp_path)])

    def reasons() -> list[str]:
        path = layout.partition_file(Asset.EXTRACTED_IMAGES, key, ".rejected.parquet")
        return pq.read_table(path).column("reason").to_pylist()

    assert pipeline.run_stage(Job.SHARD_EXTRACT, key).success
    assert reasons() == [REJECT_TOO_MANY_BYTES]
    bigger = {"resources": {"storage": {"config": {"max_image_bytes": 1 << 20}}}}
    assert pipeline.run_stage(Job.SHARD_EXTRACT, key, bigger).success
    assert reasons() == []
