"""A run's figures as Prometheus metrics: served live by `availlab run --metrics-port N`, and
written into results.json's `metrics` section when the run ends.

KubeVirt exports its migration metrics to Prometheus so an operator sees them beside the rest of
the fleet; availlab does the same for what it measures. Both come from one place: `RunMetrics`
is fed the run's own evidence records (history.jsonl, events.jsonl), so the live endpoint and
the file count the same records the same way, and nothing is counted that the evidence does not
show (the file sorts the records by time first; live, they are taken as they were appended). Live, the
exporter reads the lines the runbook has appended since the last scrape (`Tail`), at scrape time:
no thread, and a scrape sees everything written before it. Names follow Prometheus' conventions:
base units (seconds), `_total` on counters, labels for outcomes.
"""

from __future__ import annotations

import bisect
import calendar
import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .history import Tail, read_jsonl
from .records import COMPLETIONS, Rec, RunFiles

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PAUSE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class RunMetrics:
    """Counters and histograms fed one evidence record at a time, in any interleaving of the two
    files (a migration's client blackout is observed once a completion after its end is seen)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.ops = Counter("availlab_client_operations", "Client operations by outcome: ok, fail "
                           "(certainly not done), info (outcome unknown)", ["outcome"], registry=r)
        self.latency = Histogram("availlab_client_operation_latency_seconds", "Latency of each client operation "
                                 "that completed ok, from its start to its completion", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.probes = Counter("availlab_probe_statements", "The blackout probe's statements by outcome",
                              ["outcome"], registry=r)
        self.migrations = Counter("availlab_migrations", "Live migrations by outcome, source and target host",
                                  ["outcome", "source", "target"], registry=r)
        self.downtime = Histogram("availlab_migration_downtime_seconds", "Pause of each completed migration: "
                                  "libvirt's downtime, or after post-copy its lifecycle events'",
                                  buckets=PAUSE_BUCKETS, registry=r)
        self.blackout = Histogram("availlab_client_blackout_seconds", "Longest gap in completed client "
                                  "operations overlapping each migration", buckets=PAUSE_BUCKETS, registry=r)
        self.backups = Counter("availlab_backups", "Backups by outcome", ["outcome"], registry=r)
        self.backup_duration = Histogram("availlab_backup_duration_seconds", "Duration of each completed backup",
                                         buckets=DURATION_BUCKETS, registry=r)
        self.freeze = Histogram("availlab_backup_freeze_seconds", "Freeze window of each application-consistent "
                                "backup (guest filesystems frozen)", buckets=PAUSE_BUCKETS, registry=r)
        self.tips = Counter("availlab_tips", "PRO tips raised, and applied (a move completed)", ["state"], registry=r)
        self._oks: list[int] = []  # completion times of ok client operations, sorted
        self._pending: list[tuple[int, int]] = []  # migration windows whose blackout is not final yet

    def feed(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type")
        if kind in COMPLETIONS and "client" in rec:
            self.ops.labels(outcome=kind).inc()
            if kind == Rec.OK:
                bisect.insort(self._oks, int(rec["t"]))
                if rec.get("t0") is not None:
                    self.latency.observe(max(0, int(rec["t"]) - int(rec["t0"])) / 1e9)
                self._settle()
        elif kind == Rec.PROBE:
            self.probes.labels(outcome="ok" if rec.get("ok") else "fail").inc()
        elif kind == Rec.MIGRATION:
            self.migrations.labels(outcome="ok" if rec.get("ok") else "failed", source=str(rec.get("source") or ""),
                                   target=str(rec.get("target") or "")).inc()
            if rec.get("ok") and rec.get("downtime_ms") is not None:
                self.downtime.observe(float(rec["downtime_ms"]) / 1000)
            if rec.get("ok"):
                self._pending.append((int(rec["t0"]), int(rec["t1"])))
                self._settle()
        elif kind in (Rec.BACKUP, Rec.BACKUP_FAILED):
            self.backups.labels(outcome="ok" if kind == Rec.BACKUP else "failed").inc()
            if kind == Rec.BACKUP:
                self.backup_duration.observe(float(rec.get("duration_s") or 0))
                if rec.get("freeze_ms") is not None:
                    self.freeze.observe(float(rec["freeze_ms"]) / 1000)
        elif kind == Rec.TIP:
            self.tips.labels(state="raised").inc()
        elif kind == Rec.TIP_APPLIED and rec.get("ok"):
            self.tips.labels(state="applied").inc()

    def _settle(self) -> None:
        """Observe the blackout of each migration window once an ok completion after it exists:
        the longest gap between completions that overlaps the window."""
        still = []
        for t0, t1 in self._pending:
            i = bisect.bisect_right(self._oks, t1)
            if i >= len(self._oks):
                still.append((t0, t1))
                continue
            j = max(1, bisect.bisect_left(self._oks, t0))
            gaps = [self._oks[k] - self._oks[k - 1] for k in range(j, i + 1)]
            self.blackout.observe(max(gaps, default=0) / 1e9)
        self._pending = still

    def feed_all(self, records: Iterable[dict[str, Any]]) -> RunMetrics:
        for rec in sorted(records, key=lambda r: int(r.get("t") or 0)):
            self.feed(rec)
        return self

    def samples(self) -> dict[str, float]:
        """Every sample as {name{labels}: value}: results.json's `metrics` section."""
        out: dict[str, float] = {}
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name.endswith("_created"):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
        return out


def metrics_section(history: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, float]:
    return RunMetrics().feed_all([*history, *events]).samples()


class LiveRun(Collector):
    """The collector the endpoint serves: reads what the run appended, then reports, each sample
    labelled with where it comes from (`labels`: lab, runbook, vm), as after the run (_Ended)."""

    def __init__(self, run_dir: Path, labels: dict[str, str] | None = None) -> None:
        self.metrics = RunMetrics()
        self.labels = labels or {}
        self.tails = [Tail(RunFiles(run_dir).history), Tail(RunFiles(run_dir).events)]
        self._lock = threading.Lock()  # the server answers each scrape in a thread of its own

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            for tail in self.tails:
                for rec in tail.new_records():
                    self.metrics.feed(rec)
            families = list(self.metrics.registry.collect())
        yield from _labelled([(self.labels, f) for f in families], keep_created=True)


def _labelled(families: Iterable[tuple[dict[str, str], Metric]], keep_created: bool = False) -> Iterator[Metric]:
    """Families of one name merged, each sample given its source's labels."""
    merged: dict[str, Metric] = {}
    for extra, fam in families:
        out = merged.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit))
        for s in fam.samples:
            if keep_created or not s.name.endswith("_created"):
                out.add_sample(s.name, {**extra, **s.labels}, s.value, s.timestamp, s.exemplar)
    yield from merged.values()


def serve(run_dir: Path, port: int, addr: str = "127.0.0.1", labels: dict[str, str] | None = None) -> Any:
    """Start the endpoint on addr:port (loopback unless told otherwise); returns the server, whose
    `shutdown()` stops it."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveRun(run_dir, labels))
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


class _Ended(Collector):
    """A run that has ended, for a collector that comes after it (a short run ends before any
    scrape): the evidence's counters and histograms, its verdict and its SLOs as gauges, every
    sample labelled with where it came from (lab, runbook, vm, database). A run of several VMs
    (runbook 60: figures.vms, each VM's evidence in a folder of its own) counts each VM's evidence
    under its own `vm` and `database` labels."""

    def __init__(self, run_dir: Path, doc: dict[str, Any]) -> None:
        self.doc, self.labels = doc, run_labels(run_dir, doc)
        vms = (self.doc.get("figures") or {}).get("vms") or {}
        dirs = [(run_dir / vm, {"vm": vm, **({"database": v["database"]} if v.get("database") else {})})
                for vm, v in vms.items()] if vms else [(run_dir, {})]
        self.sources = [(extra, RunMetrics().feed_all([*read_jsonl(RunFiles(d).history), *read_jsonl(RunFiles(d).events)]))
                        for d, extra in dirs]

    def collect(self) -> Iterator[Metric]:
        verdict = str(self.doc.get("verdict") or "NONE")
        passed = GaugeMetricFamily("availlab_run_passed", "1 when the run's verdict is PASS, else 0")
        passed.add_metric([], 1.0 if verdict == "PASS" else 0.0)
        said = GaugeMetricFamily("availlab_run_verdict", "The run's verdict, as a label (value 1)", labels=["verdict"])
        said.add_metric([verdict], 1.0)
        ended = GaugeMetricFamily("availlab_run_finished_timestamp_seconds", "When the run's verdict was written")
        finished = self.doc.get("finished_at")
        ended.add_metric([], float(calendar.timegm(time.strptime(finished, "%Y-%m-%dT%H:%M:%SZ")))
                         if finished else time.time())
        slo = GaugeMetricFamily("availlab_slo", "The run's SLOs (blackout in seconds, counts as counts)", labels=["slo"])
        for name, value in (self.doc.get("slo") or {}).items():
            if isinstance(value, int | float):
                slo.add_metric([name.replace("_ms", "_seconds")], value / 1000 if name.endswith("_ms") else value)
        families = [({**self.labels, **extra}, fam) for extra, m in self.sources for fam in m.registry.collect()]
        # not `_created`: when this process counted, not when the run did
        yield from _labelled([*families, *((self.labels, f) for f in (passed, said, ended, slo))])


def run_labels(run_dir: Path, doc: dict[str, Any]) -> dict[str, str]:
    """Where a run's metrics come from, from its results.json (`doc`): lab, runbook, vm and database."""
    params, figures = doc.get("parameters") or {}, doc.get("figures") or {}
    several = bool(figures.get("vms"))  # runbook 60: each VM's samples carry their own vm and database
    found = {"lab": params.get("lab"), "runbook": doc.get("runbook") or run_dir.parent.name,
             "vm": None if several else params.get("vm"),
             "database": None if several else figures.get("database") or params.get("database")}
    return {k: str(v) for k, v in found.items() if v}


def export(run_dir: Path, textfile: str | None = None, push_url: str | None = None) -> list[str]:
    """A run's metrics once it ended: into node_exporter's textfile collector (written whole, then
    renamed in) and/or to a Pushgateway (grouped by lab, runbook and vm, so each replaces its own
    last push). Returns what was done, one line each; a failure is said, not raised: the run's
    verdict stands whatever a collector does."""
    from prometheus_client import push_to_gateway, write_to_textfile

    results = RunFiles(run_dir).results
    ended = _Ended(run_dir, json.loads(results.read_text()) if results.is_file() else {})
    labels = ended.labels
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ended)
    said = []
    if textfile:
        try:
            Path(textfile).parent.mkdir(parents=True, exist_ok=True)  # as the JUnit copy's folder is made
            write_to_textfile(textfile, registry)
            said.append(f"metrics: written to {textfile}")
        except OSError as exc:
            said.append(f"metrics: could not write {textfile}: {exc.strerror or exc}")
    if push_url:
        key: dict[str, Any] = {k: labels[k] for k in ("lab", "runbook", "vm") if k in labels}
        try:
            push_to_gateway(push_url, job="availlab", registry=registry, grouping_key=key, timeout=10)
            said.append(f"metrics: pushed to {push_url} ({', '.join(f'{k}={v}' for k, v in key.items())})")
        except (OSError, ValueError) as exc:
            said.append(f"metrics: could not push to {push_url}: {exc}")
    return said


__all__ = ["LiveRun", "RunMetrics", "export", "metrics_section", "run_labels", "serve"]
