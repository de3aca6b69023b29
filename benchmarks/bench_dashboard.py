"""Benchmark: dashboard page load of long runs and live-update latency, in headless Chromium.

Stores are written through :class:`~crystalloop.store.ExperimentStore` (runs of 1 s samples):

* page load: time from navigation start until every chart of the run page is drawn
  (``window.__dashboard.ready``, the page's own mark after ``Plotly.newPlot``): the first open
  (series read from SQLite and downsampled to 2,000 points per channel), reopening (median of
  ``--repeat``; a finished run's series is cached) and, in the same run, the same page without
  downsampling (``?points=10000000``: every stored point sent and drawn) as the baseline; plus
  the series API alone (first read, 1,998 points so the page's cache entry is not used) against
  the store's own reader (``ExperimentStore.samples(wide=True)`` serialised to JSON), the naive
  way to feed a chart;
* update latency: a sample committed by a writer process until the open page has drawn it
  (``Date.now()`` in the page minus ``time.time()`` after the commit; one clock), over
  ``--updates`` writes, for the default poll (0.25 s) and a 1 s poll.

Usage::

    nice python benchmarks/bench_dashboard.py [--repeat 3] [--updates 20] [--out benchmarks/results/dashboard.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "dashboard"))

from dashboard_helpers import big_run  # noqa: E402

from crystalloop.dashboard import DashboardServer  # noqa: E402
from crystalloop.store import ExperimentStore  # noqa: E402

CHANNELS7 = ("T_ref_c", "T_set_c", "T_jacket_c", "T_reactor_c", "conc_kg_kg", "counts", "transmissivity_pct")
CHANNELS4 = CHANNELS7[:4]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1700"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    drv.set_page_load_timeout(300)
    drv.set_script_timeout(300)
    return drv


def wait(drv, script: str, timeout: float = 300.0):
    t0 = time.monotonic()
    while True:
        v = drv.execute_script(f"return ({script});")
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(script)
        time.sleep(0.01)


def page_load(drv, url: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        drv.get("about:blank")
        drv.get(url)
        times.append(wait(drv, "window.__dashboard && window.__dashboard.ready") / 1000.0)
    return statistics.median(times)


def api_time(url: str, repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=300) as r:
            size = len(r.read())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def store_reader_time(path: Path, rid: int, repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with ExperimentStore(path, create=False, recover=False) as db:
            w = db.samples(rid, wide=True)
        body = w.to_json(orient="columns").encode()
        size = len(body)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def latency(drv, path: Path, poll_s: float, n: int) -> list[float]:
    with ExperimentStore(path) as db:
        rid = db.start_run({"name": "latency"}, kind="track", meta={"controller": "track"})
        db.log_samples(rid, [(float(t), "T_reactor_c", 20.0) for t in range(100)])
    out = []
    with DashboardServer(path, port=0, poll_s=poll_s) as srv:
        drv.get(srv.url + f"/runs/{rid}")
        wait(drv, "window.__dashboard && window.__dashboard.ready")
        wait(drv, "document.getElementById('live').textContent === 'live'")
        with ExperimentStore(path) as db:
            for k in range(n):
                time.sleep(0.37)  # not in phase with the poll
                t = 100.0 + k
                db.log_samples(rid, [(t, "T_reactor_c", 30.0 + k)])
                written = time.time()
                seen = wait(drv, f"(window.__dashboard.updates.find(u => u.samples.T_reactor_c && "
                                 f"u.samples.T_reactor_c.t.includes({t})) || {{}}).t", timeout=30)
                out.append(seen / 1000.0 - written)
        db_ = ExperimentStore(path)
        db_.finish_run(rid)
        db_.close()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    cases = [("5,000 samples (1,250 s x 4 ch)", 1_250, CHANNELS4),
             ("100,000 samples (25,000 s x 4 ch)", 25_000, CHANNELS4),
             ("700,000 samples (100,000 s x 7 ch)", 100_000, CHANNELS7)]
    print(f"load average before: {os.getloadavg()}", flush=True)
    drv = browser()
    rows = []
    try:
        for label, n, chans in cases:
            path = tmp / f"run_{n}.db"
            rid = big_run(path, n, chans, spike_at=n // 3)
            base_api, base_bytes = store_reader_time(path, rid, args.repeat)  # also warms the OS file cache
            with DashboardServer(path, port=0) as srv:
                api, api_bytes = api_time(srv.url + f"/api/runs/{rid}/series?points=1998", 1)  # first read
                page_load(drv, srv.url + f"/runs/{rid}?points=4", 1)  # browser warm: Plotly.js cached and compiled
                load = page_load(drv, srv.url + f"/runs/{rid}", 1)  # first open: series read and downsampled
                reopen = page_load(drv, srv.url + f"/runs/{rid}", args.repeat)  # finished run: cached series
                raw_load = page_load(drv, srv.url + f"/runs/{rid}?points=10000000", 1)  # baseline, first open
            rows.append({"case": label, "samples": n * len(chans), "page_load_s": load, "page_reopen_s": reopen,
                         "page_load_raw_s": raw_load, "api_s": api, "api_bytes": api_bytes,
                         "store_reader_json_s": base_api, "store_reader_json_bytes": base_bytes,
                         "load": os.getloadavg()[0]})
            r = rows[-1]
            print(f"{label:36s} page {load:6.3f} s (reopen {reopen:5.3f} s) | every-point page {raw_load:7.3f} s "
                  f"({raw_load / load:5.1f}x) | API {api:6.3f} s {api_bytes / 1e3:7.0f} kB | store reader+JSON "
                  f"{base_api:6.3f} s {base_bytes / 1e6:6.1f} MB ({base_api / api:4.1f}x) | load {r['load']:.1f}",
                  flush=True)
        lat = {}
        for poll in (0.25, 1.0):
            v = latency(drv, tmp / f"latency_{poll}.db", poll, args.updates)
            lat[poll] = v
            print(f"update latency, poll {poll:4.2f} s: median {statistics.median(v):.3f} s, max {max(v):.3f} s "
                  f"over {len(v)} writes | load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        drv.quit()
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "page_load": rows,
              "latency": {str(k): {"median_s": statistics.median(v), "max_s": max(v), "n": len(v)} for k, v in lat.items()}}
    print("\n| run | page load (downsampled) | reopen | page load (every point) | ratio | series API | "
          "store reader + JSON | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['page_load_s']:.2f} s | {r['page_reopen_s']:.2f} s | {r['page_load_raw_s']:.2f} s | "
              f"{r['page_load_raw_s'] / r['page_load_s']:.1f}x | {r['api_s']:.3f} s ({r['api_bytes'] / 1e3:.0f} kB) | "
              f"{r['store_reader_json_s']:.3f} s ({r['store_reader_json_bytes'] / 1e6:.1f} MB) | "
              f"{r['store_reader_json_s'] / r['api_s']:.1f}x |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
