"""Prometheus metrics from a run's evidence: the live endpoint (scraped here over loopback and
parsed with prometheus_client's own parser) and results.json's `metrics` section agree, and the
names follow Prometheus' conventions. The integration test scrapes a real run."""

import json
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from availlab.errors import UsageError
from availlab.metrics import RunMetrics, Tail, metrics_section, serve

from ..ports import free_port

MS = 1_000_000


def ok(client, n, t_ms):
    return {"type": "ok", "client": client, "op": n, "f": "write", "t": t_ms * MS, "t0": (t_ms - 5) * MS}


HISTORY = ([ok(0, n, 100 + 20 * n) for n in range(10)] + [ok(0, 10, 700), ok(0, 11, 720)]
           + [{"type": "fail", "client": 1, "op": 1, "f": "read", "t": 300 * MS},
              {"type": "probe", "t": 5 * MS, "ok": True}, {"type": "probe", "t": 9 * MS, "ok": False}])
EVENTS = [{"type": "migration", "ok": True, "t0": 250 * MS, "t1": 400 * MS, "downtime_ms": 80, "source": "h1",
           "target": "h2"},
          {"type": "migration", "ok": False, "t0": 800 * MS, "t1": 900 * MS, "downtime_ms": None, "source": "h2",
           "target": "h1"},
          {"type": "backup", "t": 1000 * MS, "duration_s": 4.2, "freeze_ms": 150.0},
          {"type": "backup-failed", "t": 1100 * MS},
          {"type": "tip", "t": 1, "id": "t1"}, {"type": "tip-applied", "t": 2, "tip": "t1", "ok": True}]


def test_the_section_counts_what_the_evidence_shows():
    m = metrics_section(HISTORY, EVENTS)
    assert m['availlab_client_operations_total{outcome="ok"}'] == 12
    assert m['availlab_client_operations_total{outcome="fail"}'] == 1
    assert m['availlab_probe_statements_total{outcome="fail"}'] == 1
    assert m['availlab_migrations_total{outcome="ok",source="h1",target="h2"}'] == 1
    assert m['availlab_migrations_total{outcome="failed",source="h2",target="h1"}'] == 1
    assert m["availlab_migration_downtime_seconds_sum"] == pytest.approx(0.08)
    # ok completions at 280 ms then 700 ms: the gap over the migration (250-400 ms) is 420 ms
    assert m["availlab_client_blackout_seconds_count"] == 1
    assert m["availlab_client_blackout_seconds_sum"] == pytest.approx(0.42)
    assert m['availlab_backups_total{outcome="ok"}'] == 1 and m['availlab_backups_total{outcome="failed"}'] == 1
    assert m["availlab_backup_freeze_seconds_sum"] == pytest.approx(0.15)
    assert m['availlab_tips_total{state="raised"}'] == 1 and m['availlab_tips_total{state="applied"}'] == 1
    json.dumps(m)  # results.json takes it as it is


def test_names_follow_prometheus_conventions():
    names = {f.name: f.type for f in RunMetrics().registry.collect()}
    for name, kind in names.items():
        assert name.startswith("availlab_") and name == name.lower()
        if kind == "histogram":
            assert name.endswith("_seconds"), name  # base unit
    samples = RunMetrics().feed_all(HISTORY + EVENTS).samples()
    assert all(k.split("{")[0].endswith(("_total", "_bucket", "_sum", "_count")) for k in samples)


def test_a_migration_blackout_waits_for_a_completion_after_the_migration():
    m = RunMetrics()
    for r in [ok(0, 1, 100), EVENTS[0]]:
        m.feed(r)
    assert m.samples()["availlab_client_blackout_seconds_count"] == 0
    m.feed(ok(0, 2, 500))
    assert m.samples()["availlab_client_blackout_seconds_sum"] == pytest.approx(0.4)


def test_tail_reads_only_complete_lines_appended_since_the_last_read(tmp_path):
    p = tmp_path / "history.jsonl"
    t = Tail(p)
    assert list(t.new_records()) == []  # not there yet
    p.write_text('{"type": "ok", "t": 1}\n{"type": "o')
    assert [r["t"] for r in t.new_records()] == [1]
    with open(p, "a") as fh:
        fh.write('k", "t": 2}\nnot json\n')
    assert [r["t"] for r in t.new_records()] == [2]
    assert list(t.new_records()) == []


def test_the_endpoint_serves_what_the_run_appended_on_loopback(tmp_path):
    port = free_port()
    server = serve(tmp_path, port)
    try:
        assert server.server_address[0] == "127.0.0.1"
        (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HISTORY))
        (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EVENTS))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        text = opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
        assert got[("availlab_client_operations_total", (("outcome", "ok"),))] == 12
        assert fams["availlab_migration_downtime_seconds"].type == "histogram"
        live = {k: v for k, v in got.items() if not k[0].endswith("_created")}
        assert len(live) == len(metrics_section(HISTORY, EVENTS))
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_is_a_usage_error_before_any_run_folder(tmp_path):
    from availlab.scenarios.runbook import run

    nb = tmp_path / "x.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UsageError, match=f"--metrics-port {port}: cannot listen"):
            run(nb, {}, runs_root=tmp_path / "runs", metrics_port=port)
    with pytest.raises(UsageError, match="not a TCP port"):
        run(nb, {}, runs_root=tmp_path / "runs", metrics_port=70000)
    assert not (tmp_path / "runs").exists()


def test_the_grafana_dashboard_queries_only_metrics_availlab_exports():
    import re
    from pathlib import Path

    dash = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-availlab.json").read_text())
    exported = set(metrics_section(HISTORY, EVENTS)) | {f.name for f in RunMetrics().registry.collect()}
    bases = {k.split("{")[0] for k in exported}
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]  # migrations, backups marked
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"availlab_[a-z_]+", e)}
    assert used and used <= bases, used - bases
    assert {p["id"] for p in dash["panels"]} == set(range(1, len(dash["panels"]) + 1))
    # every label a query selects or groups by is one availlab's samples carry (instance and le:
    # Prometheus' and the histogram's own), and every series is filtered by the dashboard's variables
    ended_labels = {"lab", "runbook", "vm", "database", "outcome", "state", "source", "target"}
    named = {n for e in exprs for group in re.findall(r"(?:by \(|\{)([^)}]*)", e)
             for n in re.findall(r"([a-z_]+)\s*(?:=~|,|$)", group)}
    assert named <= ended_labels | {"instance", "le"}, named - ended_labels
    for e in exprs[: len(exprs) - 3]:  # the variables' own queries are the filters
        assert all('{lab=~"$lab",instance=~"$instance",vm=~"$vm"}' in m for m in re.findall(r"availlab_\w+\{[^}]*\}", e))
        assert "_bucket" not in e or "increase(" in e  # a quantile of recent observations, not since start
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "lab", "instance", "vm"}


def test_concurrent_scrapes_count_each_record_once(tmp_path):
    """The HTTP server answers each scrape in its own thread: the tail and the counters are shared."""
    import threading

    from availlab.metrics import LiveRun

    (tmp_path / "history.jsonl").write_text("".join(json.dumps(ok(0, n, n)) + "\n" for n in range(20000)))
    live = LiveRun(tmp_path)
    threads = [threading.Thread(target=lambda: list(live.collect())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert live.metrics.samples()['availlab_client_operations_total{outcome="ok"}'] == 20000


def _ended_run(tmp_path):
    run = tmp_path / "10-live-migration" / "20261206T120000"
    run.mkdir(parents=True)
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HISTORY))
    (run / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EVENTS))
    (run / "results.json").write_text(json.dumps({
        "runbook": "10-live-migration", "verdict": "PASS", "finished_at": "2026-12-06T12:00:00Z",
        "slo": {"max_blackout_ms": 1000.0, "max_failed_ops": 0}, "parameters": {"lab": "demo", "vm": "sql1"},
        "figures": {"database": "postgresql"}}))
    return run


def test_an_ended_run_goes_to_the_textfile_and_to_a_pushgateway_labelled_with_its_verdict_and_slos(tmp_path):
    """A short run ends before any scrape: `--metrics-textfile` (node_exporter) and `--metrics-push`
    (a Pushgateway's API, served here by the test) carry its figures, verdict and SLOs, each
    sample labelled lab/runbook/vm/database; both parsed with prometheus_client's own parser."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from availlab.metrics import export

    run, got = _ended_run(tmp_path), {}

    class Pushgateway(BaseHTTPRequestHandler):
        def do_PUT(self):  # what push_to_gateway sends: the whole group, replaced
            got["path"] = self.path
            got["body"] = self.rfile.read(int(self.headers["Content-Length"])).decode()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    gw = HTTPServer(("127.0.0.1", 0), Pushgateway)
    threading.Thread(target=gw.serve_forever, daemon=True).start()
    try:
        said = export(run, str(tmp_path / "not-yet" / "availlab.prom"), f"http://127.0.0.1:{gw.server_port}")
    finally:
        gw.shutdown()
        gw.server_close()
    assert len(said) == 2 and said[1].startswith("metrics: pushed"), said
    assert got["path"] == "/metrics/job/availlab/lab/demo/runbook/10-live-migration/vm/sql1"
    where = {"lab": "demo", "runbook": "10-live-migration", "vm": "sql1", "database": "postgresql"}
    for text in (got["body"], (tmp_path / "not-yet" / "availlab.prom").read_text()):  # its folder made
        samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in where))): (s.value, s.labels)
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert all(labels.items() >= where.items() for _, labels in samples.values())
        assert samples[("availlab_run_passed", ())][0] == 1.0
        assert samples[("availlab_run_verdict", (("verdict", "PASS"),))][0] == 1.0
        assert samples[("availlab_slo", (("slo", "max_blackout_seconds"),))][0] == 1.0
        assert samples[("availlab_client_operations_total", (("outcome", "ok"),))][0] == 12
        assert samples[("availlab_client_operation_latency_seconds_count", ())][0] == 12
        assert samples[("availlab_run_finished_timestamp_seconds", ())][0] == 1796558400.0
        assert not any(name.endswith("_created") for name, _ in samples)


def test_a_collector_that_is_not_there_is_said_and_the_run_stands(tmp_path):
    from availlab.metrics import export

    port = free_port()  # a port nothing listens on any more
    (tmp_path / "a-file").write_text("")  # a folder that cannot be made: a file is in the way
    said = export(_ended_run(tmp_path), str(tmp_path / "a-file" / "x.prom"), f"http://127.0.0.1:{port}")
    assert said[0].startswith("metrics: could not write") and said[1].startswith("metrics: could not push"), said


def test_a_run_of_several_vms_counts_each_vms_evidence_under_its_own_labels(tmp_path):
    """Runbook 60 keeps each VM's evidence in a folder of its own: exported per VM (vm, database
    labels), the verdict once for the run (no vm label: it is the whole rollout's)."""
    from availlab.metrics import export

    run = tmp_path / "60-rolling-maintenance" / "t"
    for vm in ("sql1", "sql3"):
        (run / vm).mkdir(parents=True)
        (run / vm / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HISTORY))
    (run / "results.json").write_text(json.dumps({
        "runbook": "60-rolling-maintenance", "verdict": "FAIL", "slo": {}, "parameters": {"lab": "demo", "vm": "sql1"},
        "figures": {"vms": {"sql1": {"database": "postgresql"}, "sql3": {"database": "mariadb"}}}}))
    export(run, str(tmp_path / "m.prom"))
    samples = [s for f in text_string_to_metric_families((tmp_path / "m.prom").read_text()) for s in f.samples]
    ok = {s.labels["vm"]: (s.labels["database"], s.value) for s in samples
          if s.name == "availlab_client_operations_total" and s.labels["outcome"] == "ok"}
    assert ok == {"sql1": ("postgresql", 12), "sql3": ("mariadb", 12)}
    (passed,) = [s for s in samples if s.name == "availlab_run_passed"]
    assert passed.value == 0.0 and "vm" not in passed.labels and passed.labels["lab"] == "demo"


def test_the_live_endpoint_labels_its_samples_as_the_ended_run_does(tmp_path):
    """Issue 32: lab, runbook and vm on every sample, live as after the run; a `-p` value wins
    over the notebook's default, and a run of several VMs names none of them."""
    from availlab.metrics import LiveRun
    from availlab.scenarios.runbook import _metric_labels, declared_parameters, resolve

    nb = resolve("10-live-migration")
    labels = _metric_labels(nb, {"lab": "night"}, declared_parameters(nb))
    assert labels == {"lab": "night", "runbook": "10-live-migration", "vm": "sql1"}
    nb60 = resolve("60-rolling-maintenance")
    assert "vm" not in _metric_labels(nb60, {}, declared_parameters(nb60))
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    samples = [s for f in LiveRun(tmp_path, labels).collect() for s in f.samples]
    assert samples and all(s.labels.items() >= labels.items() for s in samples)
    assert any(s.name == "availlab_migrations_total" and s.labels["source"] == "h1" for s in samples)
