"""Fixtures of the dashboard tests: a store with a simulated run and a short campaign, servers, a browser.

The store is made by the project's own code paths, not written by hand: one recipe run on the
virtual crystallizer by :func:`crystalloop.control.run` (with probe images) and one round of
:func:`crystalloop.campaign.run_campaign` (two recipes proposed by a twin, run, measured from
their images), both into the same file, once per test session.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from crystalloop.store import ExperimentStore

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> dict:
    """``{"store": path, "run_id": simulated run, "campaign_dir": folder, "campaign_runs": [ids]}``."""
    from crystalloop.campaign import run_campaign
    from crystalloop.control import run

    root = tmp_path_factory.mktemp("lab")
    db = ExperimentStore(root / "lab.db")
    try:
        res = run(ROOT / "examples" / "recipes" / "three_cycle.yaml", backend="sim://?seed=3", store=db,
                  image_interval_s=3600, image_root=root / "images")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # twin extrapolation warnings of a tiny, fast twin
            run_campaign(ROOT / "examples" / "doe" / "doe.csv", n_rounds=1, batch_size=2, out_dir=root / "camp",
                         store=db, pop_size=12, n_gen=3, n_frames=3, backend="sim://?n_classes=60", seed=1,
                         twin_model="ensemble",
                         twin_options={"families": ["rf"], "grid": "fast", "n_splits": 4, "cv": 2, "n_repeats": 1})
        camp = db.runs(kind="campaign")["run_id"].tolist()
    finally:
        db.close()
    return {"store": root / "lab.db", "run_id": res.run_id, "campaign_dir": root / "camp", "campaign_runs": camp,
            "root": root}


@pytest.fixture
def live_store(tmp_path) -> tuple[Path, int]:
    """A store with one ``running`` run (the test writes its samples) and some history."""
    path = tmp_path / "live.db"
    with ExperimentStore(path) as db:
        rid = db.start_run({"name": "live-test"}, backend="sim://", kind="track", meta={"controller": "pid"})
        t = np.arange(0, 600, 60.0)
        db.log_samples(rid, [(float(x), "T_reactor_c", 50.0 - x / 600) for x in t]
                       + [(float(x), "T_ref_c", 50.0 - x / 500) for x in t])
    return path, rid


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Selenium through /usr/bin/chromedriver (no download)."""
    if not (CHROMIUM.exists() or shutil.which("chromium")) or not (CHROMEDRIVER.exists() or shutil.which("chromedriver")):
        pytest.skip("Debian chromium and chromium-driver are not installed (.ci/run installs them: "
                    "apt-get install chromium chromium-driver)")
    selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    del selenium
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or browser
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1700",
              "--disable-extensions", "--no-first-run", "--hide-scrollbars"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver"))),
                           options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
