"""The dashboard over real HTTP: pages, JSON, bad input, the access token, the live stream, the CLI."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from crystalloop.cli import app as cli_app
from crystalloop.dashboard import DashboardServer, access_token, is_loopback
from crystalloop.errors import ConfigError
from crystalloop.store import ExperimentStore


def get(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, str, dict]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode("utf-8", "replace"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), dict(e.headers)


def message(page: str) -> str:
    m = re.search(r'id="error-message">(.*?)</p>', page, re.S)
    return m.group(1) if m else ""


@pytest.fixture(scope="module")
def server(lab):
    with DashboardServer(lab["store"], port=0) as srv:
        yield srv


def test_pages_show_the_store(server, lab):
    st, page, _ = get(server.url + "/runs")
    assert st == 200
    for rid in [lab["run_id"], *lab["campaign_runs"]]:
        assert f'data-run-id="{rid}"' in page
    assert "C1-1" in page and "C1-2" in page and "campaign 1" in page
    st, page, _ = get(server.url + "/runs?kind=campaign")
    assert st == 200 and f'data-run-id="{lab["run_id"]}"' not in page and "C1-1" in page
    st, page, _ = get(server.url + "/runs?status=running")
    assert st == 200 and "no runs matching these filters" in page
    st, page, _ = get(server.url + f"/runs/{lab['run_id']}")
    assert st == 200 and "three-cycle" in page and 'id="chart-temperature"' in page and "run completed" in page
    st, page, _ = get(server.url + "/campaigns/1")
    assert st == 200 and "max D50_um" in page and "min DoA_pct" in page and "C1-2" in page
    st, body, h = get(server.url + "/static/plotly-basic.min.js")
    assert st == 200 and "plotly.js" in body[:300] and h["content-type"].startswith("text/javascript")


def test_json_api(server, lab):
    st, body, _ = get(server.url + f"/api/runs/{lab['run_id']}/series?points=100")
    s = json.loads(body)
    assert st == 200 and set(s["channels"]) >= {"T_reactor_c", "T_jacket_c", "T_set_c", "T_ref_c", "counts"}
    assert all(len(c["t"]) <= 100 and c["n"] > 700 for c in s["channels"].values())
    images = json.loads(get(server.url + f"/api/runs/{lab['run_id']}/images")[1])["images"]
    assert len(images) >= 10
    st, body, _ = get(server.url + f"/api/images/{images[-1]['image_id']}/psd")
    info = json.loads(body)
    assert st == 200 and info["psd"]["n_particles"] > 0
    assert info["psd"]["x10_um"] < info["psd"]["x50_um"] < info["psd"]["x90_um"]
    assert info["scale_bar_um"] in (50.0, 100.0, 200.0, 500.0) and 0.1 < info["scale_bar_fraction"] < 0.4
    st, jpg, h = get(server.url + f"/api/images/{images[-1]['image_id']}/overlay.jpg")
    assert st == 200 and h["content-type"] == "image/jpeg"
    c = json.loads(get(server.url + "/api/campaigns/1")[1])
    assert [o["direction"] for o in c["objectives"]] == ["max", "min"]
    assert [h["round"] for h in c["hypervolume"]] == [0, 1]
    assert c["hypervolume"][1]["hypervolume"] >= c["hypervolume"][0]["hypervolume"]
    assert {p["cqa"] for p in c["parity"]} >= {"D50_um", "DoA_pct"}
    assert [r["label"] for r in c["next_round"]["recipes"]] == ["C1-1", "C1-2"]


def test_bad_input_gives_a_clear_page_and_a_log_line(server, lab, caplog):
    caplog.set_level(logging.WARNING, logger="crystalloop.dashboard")
    st, page, _ = get(server.url + "/runs/9999")
    assert st == 404 and "Traceback" not in page
    assert re.fullmatch(r"Run 9999 not found in experiment store .*lab\.db \(it has runs 1\.\.\d+\)", message(page))
    assert any("Run 9999 not found" in r.getMessage() for r in caplog.records)
    st, page, _ = get(server.url + "/runs/abc")
    assert st == 404 and "run id &#39;abc&#39; is not a number" in message(page)
    st, page, _ = get(server.url + "/campaigns/7")
    assert st == 404 and "Campaign 7 not found" in message(page)
    st, body, _ = get(server.url + "/api/runs/9999")
    assert st == 404 and json.loads(body)["error"].startswith("Run 9999 not found")
    st, page, _ = get(server.url + "/runs", method="POST")
    assert st == 405 and "only shows the store (GET)" in message(page)
    st, page, _ = get(server.url + "/nope")
    assert st == 404 and "No page at /nope" in message(page)


@pytest.mark.parametrize("kind", ["foreign", "corrupt", "missing"])
def test_bad_store_gives_a_page_and_the_server_keeps_serving(tmp_path, kind, caplog):
    import sqlite3

    path = tmp_path / "s.db"
    with ExperimentStore(path) as db:
        rid = db.start_run({"name": "x"}, kind="track")
        db.log_samples(rid, [(float(t), "T_reactor_c", 20.0) for t in range(2000)])
        db.finish_run(rid)
    caplog.set_level(logging.ERROR, logger="crystalloop.dashboard")
    with DashboardServer(path, port=0) as srv:
        assert get(srv.url + "/runs")[0] == 200
        if kind == "foreign":
            path.unlink()
            c = sqlite3.connect(path)
            c.execute("CREATE TABLE invoices (id INTEGER)")
            c.commit()
            c.close()
            want = "is an SQLite database but not a crystalloop experiment store"
        elif kind == "corrupt":
            data = bytearray(path.read_bytes())
            data[100:4096 * 3] = b"\xa5" * (4096 * 3 - 100)  # schema and first pages overwritten
            path.write_bytes(bytes(data))
            want = "is corrupt|not a crystalloop experiment store"
        else:
            path.unlink()
            want = "No experiment store at"
        for url in ("/runs", f"/runs/{rid}", "/campaigns"):
            st, page, _ = get(srv.url + url)
            assert st == 503 and "Traceback" not in page, (url, page[:300])
            assert re.search(want, message(page)), message(page)
        st, body, _ = get(srv.url + f"/api/runs/{rid}/series")
        assert st == 503 and re.search(want, json.loads(body)["error"])
        assert any(re.search(want, r.getMessage()) for r in caplog.records)
        assert get(srv.url + "/static/dashboard.css")[0] == 200  # still serving


def test_access_token_on_every_request(lab):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    assert access_token("127.0.0.1", None) is None
    generated = access_token("0.0.0.0", None)
    assert generated and len(generated) >= 20 and generated != access_token("0.0.0.0", None)
    assert access_token("192.168.1.20", "lab-secret-42") == "lab-secret-42"
    with pytest.raises(ConfigError, match="token must be a printable string of at least 8 characters"):
        access_token("127.0.0.1", "short")
    with DashboardServer(lab["store"], port=0, token="lab-secret-42") as srv:
        for url in ("/runs", f"/runs/{lab['run_id']}", "/api/runs", "/static/plotly-basic.min.js",
                    f"/api/runs/{lab['run_id']}/stream"):
            st, page, _ = get(srv.url + url)
            assert st == 401, url
        st, page, _ = get(srv.url + "/runs?token=wrong-token-1")
        assert st == 401 and "requires its access token and the request had a wrong access token" in page
        st, page, h = get(srv.url + "/runs?token=lab-secret-42")
        assert st == 200 and "crystalloop_dashboard_token=lab-secret-42" in h["set-cookie"]
        assert "HttpOnly" in h["set-cookie"] and "SameSite=Strict" in h["set-cookie"]
        assert get(srv.url + "/api/runs", {"Cookie": "crystalloop_dashboard_token=lab-secret-42"})[0] == 200
        assert get(srv.url + "/api/runs", {"Authorization": "Bearer lab-secret-42"})[0] == 200
        assert get(srv.url + "/api/runs", {"Authorization": "Bearer lab-secret-43"})[0] == 401
        assert srv.open_url.endswith("/runs?token=lab-secret-42")


def test_live_stream_sends_a_new_sample_within_two_seconds(live_store):
    path, rid = live_store
    with DashboardServer(path, port=0, poll_s=0.1) as srv:
        after = json.loads(get(srv.url + f"/api/runs/{rid}/series")[1])["after"]
        got: list[tuple[float, dict]] = []
        resp = urllib.request.urlopen(srv.url + f"/api/runs/{rid}/stream?after={after}&status=running", timeout=20)

        def read():
            event = None
            for raw in resp:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "update":
                    got.append((time.perf_counter(), json.loads(line[5:])))
                    return

        th = threading.Thread(target=read, daemon=True)
        th.start()
        time.sleep(0.5)
        with ExperimentStore(path) as db:
            db.log_samples(rid, [(660.0, "T_reactor_c", 48.9), (660.0, "T_ref_c", 48.7)])
            db.log_event(rid, 660.0, "warning", "watchdog: 2 failed exchanges with 'julabo'")
            t_written = time.perf_counter()
        th.join(timeout=5)
        resp.close()
        assert got, "no update within 5 s"
        t_seen, upd = got[0]
        assert t_seen - t_written < 2.0
        assert upd["samples"]["T_reactor_c"] == {"t": [660.0], "y": [48.9]}
        assert upd["events"][0]["message"] == "watchdog: 2 failed exchanges with 'julabo'"


def test_cli_refuses_a_missing_store_and_bad_options(tmp_path):
    r = CliRunner().invoke(cli_app, ["dashboard", "--store", str(tmp_path / "nothere.db")])
    assert r.exit_code == 2
    assert "No experiment store at" in r.output and "nothere.db" in r.output
    db = tmp_path / "s.db"
    ExperimentStore(db).close()
    r = CliRunner().invoke(cli_app, ["dashboard", "--store", str(db), "--port", "70000"])
    assert r.exit_code == 2 and "port must be a whole number from 0 to 65535" in r.output
    r = CliRunner().invoke(cli_app, ["dashboard", "--store", str(db), "--token", "abc"])
    assert r.exit_code == 2 and "token must be a printable string of at least 8 characters" in r.output


def test_stream_of_a_run_the_runner_is_writing_loses_and_repeats_nothing(tmp_path):
    """The real runner writes a run on sim:// while the dashboard streams it: every stored
    sample arrives exactly once, in order, and the final status and CQAs follow."""
    from crystalloop.control import run

    path = tmp_path / "runner.db"
    ExperimentStore(path).close()
    recipe = tmp_path.parent / "linear.yaml"
    recipe.write_text("name: linear\nc0_mg_g: 45.0\nseed_loading: 0.1\nt_start_c: 50.0\n"
                      "segments:\n  - {target_c: 20.0, rate_c_min: 0.15}\n")
    with DashboardServer(path, port=0, poll_s=0.05) as srv:
        done = threading.Event()

        def writer():
            try:
                run(recipe, backend="sim://?seed=2", store=path, sample_interval_s=20.0)
            finally:
                done.set()

        th = threading.Thread(target=writer)
        th.start()
        rid = None
        for _ in range(400):
            runs = json.loads(get(srv.url + "/api/runs")[1])["runs"]
            if runs:
                rid = runs[0]["run_id"]
                break
            time.sleep(0.01)
        assert rid is not None, "the run never appeared"
        got: dict[str, list] = {}
        final: dict = {}
        with urllib.request.urlopen(srv.url + f"/api/runs/{rid}/stream?after=0&status=running", timeout=60) as resp:
            event = None
            for raw in resp:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "update":
                    upd = json.loads(line[5:])
                    for ch, d in upd.get("samples", {}).items():
                        got.setdefault(ch, []).extend(zip(d["t"], d["y"], strict=True))
                    if upd.get("status") and upd["status"] != "running":
                        final = upd
                        break
        th.join()
    assert final["status"] == "completed" and final["cqas"]["D50_um"] > 0
    with ExperimentStore(path, create=False) as db:
        for ch in db.channels(rid):
            s = db.samples(rid, ch)
            assert got[ch] == list(zip(s["time_s"], s["value"], strict=True)), ch
    assert len(got["T_reactor_c"]) > 50


def test_campaign_whose_folder_is_gone_still_shows_its_runs(tmp_path):
    path = tmp_path / "c.db"
    gone = tmp_path / "moved-away"
    with ExperimentStore(path) as db:
        for k, (d50, doa) in enumerate([(120.0, 8.0), (140.0, 12.0)], start=1):
            rid = db.start_run({"name": f"C1-{k}"}, kind="campaign",
                               meta={"campaign_round": 1, "campaign_run": f"C1-{k}", "campaign_dir": str(gone)})
            db.log_cqas(rid, {"D50_um": d50, "DoA_pct": doa})
            db.finish_run(rid)
    with DashboardServer(path, port=0) as srv:
        st, page, _ = get(srv.url + "/campaigns/1")
        assert st == 200 and f"no campaign.json in {gone}: objectives and hypervolume are unknown" in page
        c = json.loads(get(srv.url + "/api/campaigns/1")[1])
        assert [p["label"] for p in c["points"]] == ["C1-1", "C1-2"] and c["hypervolume"] == []
        assert c["next_round"] is None


@pytest.mark.slow
def test_dashboard_on_stores_made_by_the_simulate_and_campaign_commands(tmp_path):
    """Done-when of the dashboard issue: the three views on a store written by the CLI itself."""
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    db = tmp_path / "project.db"
    r = CliRunner().invoke(cli_app, ["simulate", str(root / "examples" / "recipes" / "three_cycle.yaml"),
                                     "--store", str(db), "--out", str(tmp_path / "sim"), "--image-interval-min", "120"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli_app, ["campaign", str(root / "examples" / "doe" / "doe.csv"), "--rounds", "2",
                                     "--batch", "2", "--out", str(tmp_path / "camp"), "--store", str(db),
                                     "--pop", "12", "--gens", "3", "--grid", "fast", "--splits", "5",
                                     "--frames", "3", "--backend", "sim://?n_classes=60"])
    assert r.exit_code == 0, r.output
    with ExperimentStore(db, create=False) as st:
        runs = st.runs()
    sim_id = int(runs.loc[runs["kind"] != "campaign", "run_id"].iloc[0])
    with DashboardServer(db, port=0) as srv:
        st_, page, _ = get(srv.url + "/runs")
        assert st_ == 200 and all(f'data-run-id="{i}"' in page for i in runs["run_id"])
        st_, page, _ = get(srv.url + f"/runs/{sim_id}")
        assert st_ == 200 and "three-cycle" in page
        series = json.loads(get(srv.url + f"/api/runs/{sim_id}/series")[1])
        assert series["channels"]["T_reactor_c"]["n"] > 500
        c = json.loads(get(srv.url + "/api/campaigns/1")[1])
        assert [h["round"] for h in c["hypervolume"]] == [0, 1, 2]
        assert sorted(p["label"] for p in c["points"] if p["round"] > 0) == ["C1-1", "C1-2", "C2-1", "C2-2"]
        assert c["next_round"]["round"] == 2 and c["next_round"]["complete"]


def test_local_server_refuses_foreign_host_names_and_sends_security_headers(server):
    st, page, h = get(server.url + "/runs")
    assert "default-src 'self'" in h["content-security-policy"] and h["referrer-policy"] == "no-referrer"
    st, page, _ = get(server.url + "/runs", {"Host": "attacker.example:8050"})  # DNS rebinding
    assert st == 400 and message(page).startswith("Host &#39;attacker.example:8050&#39; is not accepted")
    assert get(server.url + "/runs", {"Host": f"localhost:{server.port}"})[0] == 200
