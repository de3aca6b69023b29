"""The dashboard in headless Chromium: what a person checks on each page.

Skipped (with the reason) only where Debian's ``chromium``/``chromium-driver`` are absent;
``.ci/run`` installs them. With ``CRYSTALLOOP_DOCS_SCREENSHOTS=1`` the test run writes the
screenshots shown in ``docs/dashboard.md`` to ``docs/images/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import pytest
from dashboard_helpers import big_run

from crystalloop.dashboard import DashboardServer
from crystalloop.store import ExperimentStore

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SHOTS = os.environ.get("CRYSTALLOOP_DOCS_SCREENSHOTS") == "1"


def wait(drv, script: str, timeout: float = 20.0):
    """Poll a JavaScript expression until it is truthy; return its value."""
    t0 = time.monotonic()
    while True:
        v = drv.execute_script(f"return ({script});")
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            errors = drv.execute_script("return window.__dashboard ? window.__dashboard.errors : null;")
            raise AssertionError(f"timed out after {timeout} s waiting for {script!r} (page errors: {errors})")
        time.sleep(0.05)


def shot(drv, name: str) -> None:
    if SHOTS:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        size = drv.get_window_size()
        for _ in range(2):  # the whole page: resizing re-lays out the charts, so measure twice
            height = drv.execute_script("return document.querySelector('footer').getBoundingClientRect().bottom"
                                        " + window.scrollY + 16;")
            # the window is taller than the page's viewport by the browser's own bars
            chrome = drv.execute_script("return window.outerHeight - window.innerHeight;")
            drv.set_window_size(size["width"], max(400, min(int(height + chrome), 4000)))
            time.sleep(0.8)  # let Plotly re-lay out and finish its transitions
        drv.save_screenshot(str(DOCS_IMAGES / f"dashboard-{name}.png"))
        drv.set_window_size(size["width"], size["height"])


def trace(drv, div: str, name: str) -> dict:
    return drv.execute_script(
        "const d = document.getElementById(arguments[0]).data.find(t => t.name === arguments[1]);"
        "return d ? {x: Array.from(d.x), y: Array.from(d.y)} : null;", div, name)


@pytest.fixture(scope="module")
def server(lab):
    with DashboardServer(lab["store"], port=0) as srv:
        yield srv


def test_runs_page_lists_the_runs_and_filters(browser, server, lab):
    browser.get(server.url + "/runs")
    wait(browser, "window.__dashboard && window.__dashboard.ready")
    rows = browser.execute_script("return Array.from(document.querySelectorAll('#runs-table tbody tr'))"
                                  ".map(r => r.dataset.runId + ' ' + r.innerText);")
    ids = [int(r.split()[0]) for r in rows]
    assert sorted(ids) == sorted([lab["run_id"], *lab["campaign_runs"]])
    text = " ".join(rows)
    assert "three-cycle" in text and "completed" in text and "C1-1" in text and "D50_um" in text
    shot(browser, "runs")
    browser.execute_script("const s = document.getElementById('filter-kind'); s.value = 'campaign';"
                           "s.dispatchEvent(new Event('change'));")
    wait(browser, "location.search.includes('kind=campaign') && window.__dashboard && window.__dashboard.ready")
    ids = browser.execute_script("return Array.from(document.querySelectorAll('#runs-table tbody tr'))"
                                 ".map(r => Number(r.dataset.runId));")
    assert sorted(ids) == sorted(lab["campaign_runs"])


def test_run_page_draws_the_runs_points_and_its_image(browser, server, lab):
    rid = lab["run_id"]
    with ExperimentStore(lab["store"], create=False, recover=False) as db:
        reactor = db.samples(rid, "T_reactor_c")
        last_image = db.images(rid).iloc[-1]
        first_image_id = db.images(rid)["image_id"].iloc[0]
    browser.get(server.url + f"/runs/{rid}")
    wait(browser, "window.__dashboard && window.__dashboard.ready")
    tr = trace(browser, "chart-temperature", "reactor")
    assert len(tr["x"]) == len(reactor)  # a short run: every stored point is drawn
    assert tr["x"][-1] == pytest.approx(reactor["time_s"].iloc[-1] / 3600)
    assert tr["y"] == pytest.approx(reactor["value"].tolist())
    names = browser.execute_script("return document.getElementById('chart-temperature').data.map(t => t.name);")
    assert set(names) == {"recipe", "setpoint", "jacket", "reactor"}
    assert trace(browser, "chart-concentration", "concentration")["y"]
    assert len(trace(browser, "chart-concentration", "solubility")["y"]) == len(reactor)  # from the simulator
    assert not browser.find_element("id", "solubility-note").is_displayed()
    assert trace(browser, "chart-counts", "counts")["y"] and trace(browser, "chart-counts", "transmissivity (%)")["y"]
    assert "RMS" in browser.find_element("id", "tracking-summary").text
    # the latest probe image, loaded and decoded by the browser, at the stored image's size
    wait(browser, "document.getElementById('probe-image').complete && "
                  "document.getElementById('probe-image').naturalWidth > 0")
    width = browser.execute_script("return document.getElementById('probe-image').naturalWidth;")
    assert width == cv2.imread(last_image["path"], cv2.IMREAD_UNCHANGED).shape[1]
    assert browser.execute_script("return document.getElementById('probe-image').dataset.imageId;") == \
        str(last_image["image_id"])
    bar = browser.find_element("id", "scale-bar")
    assert bar.is_displayed() and bar.text.endswith("µm")
    assert "x50,3 =" in browser.find_element("id", "psd-stats").text
    assert browser.execute_script("return document.getElementById('chart-psd').data[0].y.slice(-1)[0];") == \
        pytest.approx(1.0)
    shot(browser, "run")
    # an older image chosen in the picker replaces the latest one
    first = browser.execute_script("const s = document.getElementById('image-select');"
                                   "return s.options[s.options.length - 1].value;")
    assert int(first) == int(first_image_id)
    browser.execute_script("const s = document.getElementById('image-select'); s.value = arguments[0];"
                           "s.dispatchEvent(new Event('change'));", first)
    wait(browser, f"document.getElementById('probe-image').dataset.imageId === '{first}'")
    assert "sample_interval_s=60.0" in browser.find_element("id", "facts").text
    # offline lab PCs: nothing is fetched from another host, no web font is loaded
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert fetched and all(u.startswith(server.url) for u in fetched), fetched
    assert browser.execute_script("return document.fonts.size;") == 0


def test_a_sample_written_during_the_test_appears_within_two_seconds(browser, live_store):
    path, rid = live_store
    with DashboardServer(path, port=0) as srv:
        browser.get(srv.url + f"/runs/{rid}")
        wait(browser, "window.__dashboard && window.__dashboard.ready")
        wait(browser, "document.getElementById('live').textContent === 'live'")
        before = len(trace(browser, "chart-temperature", "reactor")["x"])
        with ExperimentStore(path) as db:
            db.log_samples(rid, [(660.0, "T_reactor_c", 47.25), (660.0, "T_ref_c", 48.7)])
            db.log_event(rid, 660.0, "warning", "safe state: setpoint held at 48.7 °C")
            t_written = time.time()
        wait(browser, "window.__dashboard.updates.some(u => u.samples.T_reactor_c)", timeout=2.0)
        t_seen = browser.execute_script("return window.__dashboard.updates.find(u => u.samples.T_reactor_c).t;") / 1000
        tr = trace(browser, "chart-temperature", "reactor")
        assert len(tr["x"]) == before + 1 and tr["x"][-1] == pytest.approx(660 / 3600) and tr["y"][-1] == 47.25
        err = browser.execute_script("const d = document.getElementById('chart-error').data[0];"
                                     "return [d.x[d.x.length - 1], d.y[d.y.length - 1]];")
        assert err == pytest.approx([660 / 3600, 47.25 - 48.7])
        wait(browser, "document.querySelector('#events-table tr.alarm')", timeout=2.0)
        assert "safe state: setpoint held at 48.7 °C" in browser.find_element("id", "events-table").text
        assert t_seen - t_written < 2.0


def test_campaign_page_shows_rounds_front_hypervolume_and_parity(browser, server, lab):
    import pandas as pd

    doe = pd.read_csv(lab["campaign_dir"] / "doe.csv")
    browser.get(server.url + "/campaigns/1")
    wait(browser, "window.__dashboard && window.__dashboard.ready")
    data = browser.execute_script("return document.getElementById('chart-objectives').data"
                                  ".map(t => ({name: t.name, n: t.x.length}));")
    by = {d["name"]: d["n"] for d in data}
    n_doe = int((~doe["run_id"].astype(str).str.startswith("C")).sum())
    assert by["starting DoE"] == n_doe - int(doe.loc[~doe["run_id"].astype(str).str.startswith("C"),
                                                     ["D50_um", "DoA_pct"]].isna().any(axis=1).sum())
    assert by["round 1 runs"] == 2
    assert "front of the DoE" in by and "front after round 1" in by
    hv = browser.execute_script("const d = document.getElementById('chart-hv').data[0]; return [d.x, d.y];")
    assert hv[0] == [0, 1] and hv[1][1] >= hv[1][0] > 0
    assert browser.execute_script("return !!document.getElementById('chart-parity-D50_um').data;")
    rows = browser.find_element("id", "next-round").text
    assert "C1-1" in rows and "C1-2" in rows and "D50_um" in rows
    shot(browser, "campaign")
    # the live refresh redraws from the JSON API and rebuilds the plan table the same way
    browser.execute_script("window.__dashboard.updates = []; window.__dashboard.refreshCampaign();")
    wait(browser, "window.__dashboard.updates.length > 0")
    assert browser.find_element("id", "next-round").text == rows
    assert not browser.execute_script("return window.__dashboard.errors.length;")


def test_a_long_run_opens_downsampled_with_its_extremes(browser, tmp_path):
    path = tmp_path / "long.db"
    rid = big_run(path, 25_000, spike_at=16_234)  # 4 channels: 100,000 samples
    with DashboardServer(path, port=0) as srv:
        browser.get(srv.url + f"/runs/{rid}")
        wait(browser, "window.__dashboard && window.__dashboard.ready", timeout=30)
        raw = browser.execute_script("return window.__dashboard.raw;")
        assert sum(raw.values()) == 100_000 and raw["T_reactor_c"] == 25_000
        tr = trace(browser, "chart-temperature", "reactor")
        assert len(tr["x"]) <= 2000
        assert max(tr["y"]) == 99.0 and min(tr["y"]) == -20.0
        assert tr["x"][tr["y"].index(99.0)] == pytest.approx(16_234 / 3600)


def test_error_pages_in_the_browser(browser, server):
    browser.get(server.url + "/runs/9999")
    text = browser.find_element("id", "error-message").text
    assert text.startswith("Run 9999 not found in experiment store") and "it has runs 1.." in text
    assert "Traceback" not in browser.page_source
    shot(browser, "error")
