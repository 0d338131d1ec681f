"""The Dagster UI in a real, headless browser: `dg dev` (webserver + daemon) over a copy of the
materialized demo home, driven with Playwright through the system Chromium.

The test reads what a person would see, as text in the DOM: the global asset graph with every
group expanded shows the key assets; balanced_subset's page shows its description; its Checks tab
shows a check and its evaluation result. It then launches a backfill of balanced_subset over the
three scale partitions from the asset page's "Materialize…" dialog, watches the backfill's page
until it reports every partition done, and checks the outcome through GraphQL as well.

Screenshots of each step land in tmp_path and in `<repo>/.ci-artifacts/screenshots/` (git
ignored) so a person can look at them after CI. The browser is the system Chromium
(`apt-get install chromium`; no browser download): $REALSYN_CHROMIUM, else `chromium` on PATH.
Without it, or without the `playwright` package, the test skips, unless
$REALSYN_REQUIRE_BROWSER=1 (set by .ci/run), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from realsyn_assets.names import Asset, Group
from realsyn_assets.partitions import SCALES
from realsyn_assets_tests.conftest import REPO
from realsyn_assets_tests.e2e.dg_helpers import copy_home, dg_dev, graphql

ARTIFACTS = REPO / ".ci-artifacts" / "screenshots"
LOCATION = "realsyn_assets"  # [tool.dg.project] code_location_name in pyproject.toml
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Short names only: the zoomed-out graph shortens long labels ("extract…_sentences").
GRAPH_ASSETS = [
    Asset.RAW_DOCUMENTS,
    Asset.EXTRACTED_IMAGES,
    Asset.IMAGE_EMBEDDINGS,
    Asset.SENTENCE_CLUSTERS,
    Asset.RETRIEVED_TEXTS,
    Asset.SYNTHETIC_TEXTS,
    Asset.IMAGE_CLUSTERS,
    Asset.BALANCED_SUBSET,
]
UI_TIMEOUT_MS = 90_000  # one page element; the machine may be busy
BACKFILL_TIMEOUT_S = 900
DONE = "COMPLETED_SUCCESS"
GAVE_UP = {"COMPLETED_FAILED", "FAILED", "CANCELED", "CANCELING"}


def _require(reason: str):
    if os.environ.get("REALSYN_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _chromium() -> str:
    found = os.environ.get("REALSYN_CHROMIUM") or next(
        (path for path in map(shutil.which, BROWSERS) if path), None
    )
    if not found:
        _require("no system Chromium (apt-get install -y chromium)")
    return found


class Ui:
    """One browser page on the webserver at `port`, saving numbered screenshots in `shots`."""

    def __init__(self, page, port: int, shots: Path):
        self.page, self.port, self.shots = page, port, shots
        self.taken = 0

    def open(self, path: str) -> None:
        self.page.goto(f"http://127.0.0.1:{self.port}{path}", wait_until="domcontentloaded")

    def see(self, text: str, exact: bool = True):
        """The first element showing `text`, once it is visible."""
        found = self.page.get_by_text(text, exact=exact).first
        found.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        return found

    def shot(self, name: str) -> Path:
        self.taken += 1
        path = self.shots / f"{self.taken:02d}_{name}.png"
        self.page.screenshot(path=str(path))
        return path


def _asset_graph(ui: Ui) -> None:
    ui.open("/asset-groups")
    ui.see("Global asset lineage")
    ui.page.locator("#zoom-slider-container").get_by_role("button", name="settings").click()
    expand = ui.page.get_by_role("menuitem", name="Expand all groups")
    expand.wait_for(timeout=UI_TIMEOUT_MS)
    expand.click()
    ui.page.keyboard.press("Escape")
    for name in GRAPH_ASSETS:
        ui.see(name)
    ui.page.wait_for_timeout(1000)  # let the graph settle before the picture
    ui.shot("asset_graph")


def _balance_group(ui: Ui) -> None:
    """The balance group's graph: full nodes with their check summaries ("Asset checks")."""
    ui.open(f"/locations/{LOCATION}/asset-groups/{Group.BALANCE}/lineage")
    ui.see(Asset.BALANCED_SUBSET)
    ui.see(Asset.IMAGE_CLUSTERS)
    ui.see("Asset checks")
    summary = ui.page.locator(r"text=/^\d+ \/ \d+ (Passed|Failed)/").first  # e.g. "3 / 3 Passed"
    summary.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    ui.page.get_by_text("Loading").first.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
    ui.shot("balance_group")


def _asset_page(ui: Ui, description: str) -> None:
    ui.open(f"/assets/{Asset.BALANCED_SUBSET}")
    ui.see(description, exact=False)
    ui.see("Latest materialization")
    ui.shot("asset_page")


def _checks_tab(ui: Ui, checks: list[str]) -> None:
    ui.open(f"/assets/{Asset.BALANCED_SUBSET}?view=checks")
    for name in checks:
        ui.see(name)
    ui.see("Evaluation result")
    result = ui.page.locator("text=/^(Passed|Failed)$/").first
    result.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    ui.shot("checks_tab")


def _backfill_ids(port: int) -> set[str]:
    data = graphql(
        port,
        "{ partitionBackfillsOrError(limit: 50) { ... on PartitionBackfills { results { id } } } }",
    )
    return {b["id"] for b in data["partitionBackfillsOrError"]["results"]}


def _backfill(port: int, backfill_id: str) -> dict:
    data = graphql(
        port,
        f'{{ partitionBackfillOrError(backfillId: "{backfill_id}") {{ ... on PartitionBackfill '
        "{ id status partitionNames } } }",
    )
    return data["partitionBackfillOrError"]


def _launch_backfill(ui: Ui) -> str:
    """Materialize… → All (the three scales) → Launch backfill; returns the new backfill's id."""
    before = _backfill_ids(ui.port)
    ui.open(f"/assets/{Asset.BALANCED_SUBSET}")
    ui.page.get_by_role("button", name="Materialize…").click(timeout=UI_TIMEOUT_MS)
    dialog = ui.page.get_by_role("dialog")
    dialog.get_by_role("button", name="All", exact=True).click(timeout=UI_TIMEOUT_MS)
    dialog.get_by_text(f"{len(SCALES)} partitions").wait_for(timeout=UI_TIMEOUT_MS)
    ui.shot("backfill_dialog")
    dialog.get_by_role("button", name="Launch backfill").click(timeout=UI_TIMEOUT_MS)
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while not (new := _backfill_ids(ui.port) - before):
        assert time.monotonic() < deadline, "the dialog launched no backfill"
        time.sleep(1)
    (backfill_id,) = new
    return backfill_id


def _watch_backfill(ui: Ui, backfill_id: str) -> dict:
    """Reload the backfill's page until it shows every partition done; its final record."""
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while True:
        record = _backfill(ui.port, backfill_id)
        ui.open(f"/runs/b/{backfill_id}")
        ui.see(Asset.BALANCED_SUBSET)
        if record["status"] == DONE or record["status"] in GAVE_UP:
            break
        assert time.monotonic() < deadline, f"backfill still {record['status']}"
        ui.page.wait_for_timeout(10_000)
    assert record["status"] == DONE, record
    ui.see("100% completed")
    ui.see("Succeeded")
    ui.shot("backfill_done")
    ui.open(f"/assets/{Asset.BALANCED_SUBSET}?view=partitions")
    ui.see(f"Materialized ({len(SCALES)})")
    ui.shot("partitions_materialized")
    return record


def _balanced_subset_facts(port: int) -> tuple[str, list[str]]:
    """balanced_subset's description (its opening words, before any markdown) and check names,
    as the webserver serves them: what the pages must show."""
    data = graphql(
        port,
        f'{{ assetNodes(assetKeys: [{{path: ["{Asset.BALANCED_SUBSET}"]}}]) {{ description '
        "assetChecksOrError { ... on AssetChecks { checks { name } } } } }",
    )
    (node,) = data["assetNodes"]
    opening = re.split(r"[`*_\[(\n]", node["description"] or "")[0][:40].strip()
    return opening, sorted(c["name"] for c in node["assetChecksOrError"]["checks"])


def _publish(shots: Path) -> None:
    """Copy the screenshots where a person (or CI's artifact upload) finds them."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    for png in sorted(shots.glob("*.png")):
        shutil.copy2(png, ARTIFACTS / png.name)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the session's demo home may be built first (minutes)
def test_browser_shows_graph_checks_and_a_completed_backfill(demo_home: Path, tmp_path: Path):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("playwright is not installed (dev extra)")
    home = copy_home(demo_home, tmp_path / "home")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with dg_dev(home) as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        context = browser.new_context(viewport={"width": 1920, "height": 1200})
        context.set_default_timeout(UI_TIMEOUT_MS)
        # The first visit opens a "join the community" dialog over the page: mark it as seen.
        context.add_init_script("localStorage.setItem('communityNux', JSON.stringify('1'))")
        ui = Ui(context.new_page(), port, shots)
        try:
            description, checks = _balanced_subset_facts(port)
            assert description and checks, "balanced_subset has no description or no checks"
            _asset_graph(ui)
            _balance_group(ui)
            _asset_page(ui, description)
            _checks_tab(ui, checks)
            backfill_id = _launch_backfill(ui)
            record = _watch_backfill(ui, backfill_id)
        except Exception:
            with contextlib.suppress(Exception):
                ui.shot("failure")
            raise
        finally:
            browser.close()
            _publish(shots)
    assert record["status"] == DONE, record
    assert sorted(record["partitionNames"]) == sorted(SCALES)
    assert len(list(shots.glob("*.png"))) >= 7
