"""The live-migration runbook through `availlab run` (papermill) on the real lab."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from availlab import paths
from availlab.history import read_jsonl
from availlab.lab import providers as lab
from availlab.lab import state

from ..ports import free_port
from .conftest import assert_no_secret, assert_outcomes, chromium_dom, clean_lab, cli, residue_report, run_runbook

LAB = "ilm"
RUNBOOK = paths.project_root() / "runbooks" / "10-live-migration.ipynb"
FILES = ("10-live-migration.ipynb", "history.jsonl", "events.jsonl", "results.json", "report.html", "junit.xml")


RUNS: list[Path] = []  # this module's run folders, for the trends page


def run_lm(*params: str) -> tuple[subprocess.CompletedProcess, Path]:
    r, run_dir = run_runbook(LAB, RUNBOOK, *params)
    RUNS.append(run_dir)
    return r, run_dir


@pytest.fixture(scope="module")
def lab_for_runbook():
    with clean_lab(LAB):
        yield LAB


def test_runbook_keeps_every_query_through_two_migrations_with_four_clients(lab_for_runbook, tmp_path, figures):
    r, run_dir = run_lm("plan", "ping-pong", "migrations", "2", "clients", "4")
    for name in FILES:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    doc, timings = assert_outcomes(r, run_dir)
    f = doc["figures"]
    assert f"verdict: {doc['verdict']} (outcomes PASS, timings " in r.stdout
    assert doc["schema"] == "availlab.results/1"
    assert f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0
    assert f["ops"] == f["ok_ops"] > 100
    assert len(f["migrations"]) == 2
    assert [(m["source"], m["target"]) for m in f["migrations"]] == [("h1", "h2"), ("h2", "h1")]
    assert state.require_up(LAB).vms["sql1"].started_from.startswith("template ")  # a restored VM migrates
    for m in f["migrations"]:
        assert isinstance(m["downtime_ms"], (int, float)) and m["downtime_ms"] > 0
        assert isinstance(m["client_blackout_ms"], (int, float))
    # the probe: a resolution and a noise floor, and each pause's blackout cut in three
    assert isinstance(f["blackout_resolution_ms"], float) and isinstance(f["noise_floor_ms"], float)
    for m in f["migrations"]:
        e = m["blackout_explained"]
        assert e["source"] == "probe" and min(e["before_pause_ms"], e["paused_ms"], e["after_resume_ms"]) >= 0
        assert abs(e["before_pause_ms"] + e["paused_ms"] + e["after_resume_ms"] - e["blackout_ms"]) <= 0.2
        assert isinstance(e["tcp"]["retrans_segs"], int) and e["tcp"]["retrans_segs"] >= 0
    figures["runbook_10 probe"] = (
        f"resolution {f['blackout_resolution_ms']} ms, noise floor {f['noise_floor_ms']} ms, probe blackout "
        f"{[m['probe_blackout_ms'] for m in f['migrations']]} ms; before/paused/after resume "
        f"{[(m['blackout_explained']['before_pause_ms'], m['blackout_explained']['paused_ms'], m['blackout_explained']['after_resume_ms']) for m in f['migrations']]} ms; "
        f"TCP retransmissions {[m['blackout_explained']['tcp']['retrans_segs'] for m in f['migrations']]}")
    figures["runbook_10 (2 migrations, 4 clients)"] = (
        f"ops {f['ops']}, failed {f['failed_ops']}, lost {f['lost_writes']}, max blackout "
        f"{f['longest_blackout_ms']} ms, p99 {f['p99_latency_ms']} ms, downtime "
        f"{[m['downtime_ms'] for m in f['migrations']]} ms, client blackout "
        f"{[m['client_blackout_ms'] for m in f['migrations']]} ms; {timings}")

    # every operation of the history made it into the checked figures
    hist = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert sum(h["type"] in ("ok", "fail", "info") for h in hist) == f["ops"]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    migs = [e for e in events if e["type"] == "migration"]
    assert all({"prepare", "paused", "resumed on target"} <= {p["phase"] for p in m["phases"]} for m in migs)
    assert all(len(m["samples"]) >= 2 for m in migs), "job stats were polled during each migration"

    # the report shows exactly results.json's figures, and renders in Chromium with its plots
    page = (run_dir / "report.html").read_text()
    for key in ("ops", "failed_ops", "lost_writes", "longest_blackout_ms", "p99_latency_ms"):
        shown = re.search(rf"data-figure='{key}'>([^<]*)<", page).group(1)
        assert shown == format(f[key], "g") if isinstance(f[key], float) else shown == str(f[key]), key
    for i, m in enumerate(f["migrations"]):
        row = re.search(rf"<tr data-migration='{i}'>(.*?)</tr>", page).group(1)
        assert f"<td data-col='downtime_ms'>{m['downtime_ms']}</td>" in row
    assert "http://" not in page and "https://" not in page, "report must be self-contained"
    dom = chromium_dom(run_dir / "report.html", tmp_path)
    assert 'data-plots-ok="3"' in dom, "timeline, histogram and the explained blackouts decoded in Chromium"
    assert f'data-verdict="{doc["verdict"]}"' in dom
    assert "data-kind=\"outcome\">PASS<" in dom

    from availlab import paths as _paths

    kept_logs = _paths.state_root() / ".logs"
    searched = assert_no_secret(LAB, run_dir, *( [kept_logs] if kept_logs.exists() else []))
    assert searched >= len(FILES)

    suite = ET.parse(run_dir / "junit.xml").getroot()
    cases = suite.findall("testcase")
    kind = {c.get("name"): c.find("properties/property[@name='kind']").get("value") for c in cases}
    assert {n for n, k in kind.items() if k == "outcome"} >= {"outcomes", "lost-writes", "migrations", "server"}
    assert kind["blackout"] == "timing"
    assert not {"latency", "probe", "explained"} & set(kind), "a figure is no test case"
    assert {p.get("name") for p in suite.findall("properties/property")} >= {
        "figure:latency", "figure:probe", "figure:explained"}
    not_passed = {c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None}
    assert all(kind[n] == "timing" for n in not_passed), not_passed


def test_impossible_slo_fails_the_run_and_says_why(lab_for_runbook, tmp_path):
    """Also the drain plan: the host drain of `availlab host drain`, then its resume."""
    r, run_dir = run_lm("plan", "drain", "hold_s", "1.0", "settle_s", "0.5", "max_blackout_ms", "0",
                        "warmup_s", "1.0", "cooldown_s", "1.0")
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    events = read_jsonl(run_dir / "events.jsonl")
    turn = [(e["type"], e["host"], [(m["vm"], m["source"], m["target"], m["ok"]) for m in e["moves"]])
            for e in events if e["type"] in ("host-drain", "host-resume")]
    home = turn[0][1]
    other = "h2" if home == "h1" else "h1"
    assert turn == [("host-drain", home, [("sql1", home, other, True)]),
                    ("host-resume", home, [("sql1", other, home, True)])], turn
    assert state.load(LAB).drained == {} and lab.running_host(state.require_up(LAB), "sql1") == home
    assert "verdict: FAIL" in r.stdout
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["verdict"] == "FAIL" and doc["verdict_by_kind"] == {"outcome": "PASS", "timing": "FAIL"}
    assert "verdict: FAIL (outcomes PASS, timings FAIL)" in r.stdout
    assert next(c for c in doc["checks"] if c["name"] == "blackout")["valid"] is False
    nb = nbformat.read(run_dir / "10-live-migration.ipynb", as_version=4)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    err = [o for o in last.outputs if o.get("output_type") == "error"]
    assert err and err[0]["ename"] == "VerdictError"
    assert "verdict FAIL" in err[0]["evalue"] and "blackout" in err[0]["evalue"]
    assert 'data-verdict="FAIL"' in (run_dir / "report.html").read_text()


def test_metrics_are_scraped_while_the_run_runs(lab_for_runbook, figures, tmp_path):
    """`availlab run --metrics-port`: scraped over loopback during the run, parsed with
    prometheus_client's parser; the last scrape and results.json's `metrics` section agree."""
    import sys
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    import http.client

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    out_f, err_f = tmp_path / "run.out", tmp_path / "run.err"  # files: a pipe nobody reads can fill up
    with open(out_f, "w") as o, open(err_f, "w") as e:
        p = subprocess.Popen([sys.executable, "-m", "availlab.cli", "--lab", LAB, "run", str(RUNBOOK),
                              "--metrics-port", str(port), "-p", "plan", "single", "-p", "cooldown_s", "2.0",
                              "-p", "hosts", "2"],
                             stdout=o, stderr=e, text=True)
    scrapes: list[dict] = []
    try:
        while p.poll() is None:
            try:
                text = opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except (OSError, http.client.HTTPException):  # not listening yet, or shutting down
                time.sleep(0.5)
                continue
            fams = list(text_string_to_metric_families(text))
            scrapes.append({(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams for s in f.samples})
            time.sleep(0.5)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.terminate()  # our own child, by handle
            p.wait(timeout=120)
    out, err = out_f.read_text(), err_f.read_text()
    assert p.returncode == 0, out + err[-3000:]
    where = (("lab", LAB), ("runbook", "10-live-migration"), ("vm", "sql1"))  # as after the run
    ok = ("availlab_client_operations_total", tuple(sorted((("outcome", "ok"), *where))))
    during = [s for s in scrapes if s.get(ok)]
    assert len(during) >= 3, f"only {len(during)} scrapes saw operations"
    assert [s[ok] for s in during] == sorted(s[ok] for s in during), "a counter went down"
    migrated = [(dict(k), v) for s in scrapes for (n, k), v in s.items() if n == "availlab_migrations_total"]
    assert any(v == 1.0 and labels["outcome"] == "ok" and labels["source"] != labels["target"]
               and labels["vm"] == "sql1" for labels, v in migrated), "the migration was counted while the run lasted"
    names = {n for s in scrapes for n, _ in s}
    assert {"availlab_migration_downtime_seconds_count", "availlab_client_blackout_seconds_bucket"} <= names
    assert all(n.endswith(("_total", "_bucket", "_sum", "_count", "_created")) for n in names), names
    run_dir = Path(re.search(r"run folder: (\S+)", out).group(1))
    RUNS.append(run_dir)
    section = json.loads((run_dir / "results.json").read_text())["metrics"]
    final_ok = section['availlab_client_operations_total{outcome="ok"}']
    assert [v for k, v in section.items() if k.startswith('availlab_migrations_total{outcome="ok"')] == [1.0]
    assert final_ok >= during[-1][ok]
    figures["metrics endpoint"] = (f"{len(scrapes)} scrapes during the run, the last saw {int(during[-1][ok])} "
                                   f"ok ops; results.json {int(final_ok)}")


def test_bad_parameter_value_exits_2_before_the_lab_is_touched(tmp_path):
    """Refused by the runbook's model before papermill starts: no kernel, no run folder, no lab."""
    lab.down("neverlm")
    r = cli(LAB, "run", str(RUNBOOK), "-p", "lab", "neverlm", "-p", "plan", "warp")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "plan: Input should be 'single', 'ping-pong', 'round-robin' or 'drain'" in r.stderr
    assert "run folder:" not in r.stdout
    assert residue_report("neverlm") == {"namespaces": [], "cgroups": [], "processes": []}


def test_trends_over_this_modules_runs_render_in_chromium(lab_for_runbook, tmp_path, figures):
    """`availlab report` over at least 3 real runs: the page renders in headless Chromium with its
    plots decoded and no console message, and a screenshot is kept beside it."""
    while len(RUNS) < 3:  # when run alone: two tunings, as the page compares them
        run_lm("plan", "ping-pong" if len(RUNS) % 2 else "single", "warmup_s", "1.0", "cooldown_s", "1.0")
    out = tmp_path / "trends.html"
    r = cli(LAB, "report", *map(str, RUNS), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{out}: {len(RUNS)} runs" in r.stdout
    page = out.read_text()
    assert f'data-runs="{len(RUNS)}"' in page and "http://" not in page and "https://" not in page
    assert "plan=single" in page and "plan=ping-pong" in page, "runs grouped by the tuning that differs"
    exe = shutil.which("chromium")
    shot = tmp_path / "trends.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000", "--window-size=1300,2400"]
    s = subprocess.run([exe, *flags, f"--screenshot={shot}", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert s.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", s.stderr[-2000:]
    console = [ln for ln in s.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console
    dom = chromium_dom(out, tmp_path)
    assert 'data-plots-ok="3"' in dom, "every plot decoded in Chromium"
    kept = paths.project_root() / "runs" / "trends-screenshot.png"
    shutil.copy(shot, kept)
    figures["trends page"] = f"{len(RUNS)} runs, screenshot {kept} ({shot.stat().st_size // 1024} KiB), no console messages"
