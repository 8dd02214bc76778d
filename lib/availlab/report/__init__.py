"""Write a run's evidence: results.json, junit.xml and a self-contained report.html.

results.json is written first, so a rendering failure never loses the verdict. The HTML embeds
its plots as PNG data URIs (no network needed to view it) and renders every figure from
results.json, so the page and the file cannot disagree. A small inline script marks the page
once every plot has decoded (`<body data-plots-ok="N">`), which the tests read in Chromium.
The page is a jinja2 template (templates/, autoescaped) with a section per kind of evidence,
registered in page.SECTIONS; plots are in plots.py.
"""

from __future__ import annotations

import calendar
import html
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..checks import Results
from ..checks.core import RENAMED_FIGURES
from ..metrics import metrics_section
from ..records import Rec
from .page import SECTIONS, Section, render_html
from .plots import plot_explained, plot_histogram, plot_host_cpu, plot_timeline
from .provenance import environment, flat

__all__ = ["SCHEMA", "SCHEMA_FILE", "SECTIONS", "Artifacts", "Section", "render_html", "results_document", "write_junit",
           "write_results", "write_run"]

SCHEMA = "availlab.results/1"
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")  # published: results.json is validated against it


@dataclass(frozen=True)
class Artifacts:
    results: Path
    junit: Path
    report: Path
    verdict: str = ""
    timeline_png: str = ""

    def _repr_html_(self) -> str:
        return (f"<p><b>Verdict {html.escape(self.verdict)}</b> — report: <code>{html.escape(str(self.report))}</code>, "
                f"results: <code>{html.escape(str(self.results))}</code></p>"
                f"<img style='max-width:100%' src='data:image/png;base64,{self.timeline_png}'>")


def results_document(runbook: str, results: Results, parameters: dict, slo: dict,
                     started: float, finished: float) -> dict:
    doc = {"schema": SCHEMA, "runbook": runbook, **results.to_dict(), "slo": slo,
           "parameters": parameters, "started_at": _iso(started), "finished_at": _iso(finished)}
    figures = doc["figures"] = dict(doc["figures"])  # the Results keep only the figure's own name
    figures.update({old: figures[new] for old, new in RENAMED_FIGURES.items() if new in figures})
    return doc


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _when(doc: dict) -> dict[str, str]:
    """JUnit's `timestamp` and `time` (seconds) of the run, from results.json's own times."""
    try:
        t0, t1 = (calendar.timegm(time.strptime(doc[k], "%Y-%m-%dT%H:%M:%SZ")) for k in ("started_at", "finished_at"))
    except (KeyError, TypeError, ValueError):
        return {}
    return {"timestamp": doc["started_at"].rstrip("Z"), "time": str(max(0, t1 - t0))}


def write_junit(path: Path, runbook: str, doc: dict) -> None:
    """One test case per judged check; figure-only checks (latency, the probe) are properties of
    the suite, so a CI never counts a figure as a passed test."""
    checks = [c for c in doc["checks"] if c.get("judged", True)]
    suite = ET.Element("testsuite", {"name": f"availlab.{runbook}", "tests": str(len(checks)),
                                     "failures": str(sum(c["valid"] is False for c in checks)),
                                     "errors": str(sum(c["valid"] not in (True, False) for c in checks)),
                                     **_when(doc)})  # CI shows when the run started and how long it took
    figures = [c for c in doc["checks"] if not c.get("judged", True)]
    props = ET.SubElement(suite, "properties")  # what produced the run, and the figures
    for name, value in flat(doc.get("environment") or {}):
        ET.SubElement(props, "property", name=f"environment:{name}", value=value)
    for c in figures:
        ET.SubElement(props, "property", name=f"figure:{c['name']}", value=c["message"])
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"availlab.{runbook}", name=c["name"])
        ET.SubElement(ET.SubElement(case, "properties"), "property", name="kind", value=c.get("kind", "outcome"))
        if c["valid"] is False:
            ET.SubElement(case, "failure", message=c["message"]).text = json.dumps(c["figures"], default=str)
        elif c["valid"] is not True:
            ET.SubElement(case, "error", message=c["message"])
        else:
            ET.SubElement(case, "system-out").text = c["message"]
    paths.write_atomic(path, "<?xml version='1.0' encoding='utf-8'?>\n" + ET.tostring(suite, encoding="unicode"))


def write_results(run_dir: Path, runbook: str, results: Results, history: list[dict], events: list[dict],
                  parameters: dict, started: float, produced_by: list[dict] | None = None) -> tuple[dict, Path, Path]:
    """results.json (with what produced the run and its metrics) and junit.xml: written before any
    page is rendered, so a rendering failure never loses the verdict. `produced_by`: the history
    whose environment records say what produced the run (default: `history`). Returns (document, paths)."""
    doc = results_document(runbook, results, parameters, results.slo, started, time.time())
    doc["environment"] = environment(history if produced_by is None else produced_by, doc["figures"])
    doc["metrics"] = metrics_section(history, events)  # what --metrics-port served, as of the end
    res = Path(run_dir) / "results.json"
    paths.write_atomic(res, json.dumps(doc, indent=2, default=str) + "\n")  # a crash leaves the old or the new
    junit = Path(run_dir) / "junit.xml"
    write_junit(junit, runbook, doc)
    return doc, res, junit


def write_run(run_dir: Path, runbook: str, results: Results, history: list[dict],
              events: list[dict], parameters: dict, started: float) -> Artifacts:
    """The run's documents, with the SLO the results were judged against (never another one)."""
    run_dir = Path(run_dir)
    doc, res, junit = write_results(run_dir, runbook, results, history, events, parameters, started)
    files = sorted(p.name for p in run_dir.iterdir() if p.is_file()) + ["report.html"]
    timeline = plot_timeline(history, events, doc)
    hostcpu = (plot_host_cpu(events, parameters.get("threshold"))
               if any(e.get("type") == Rec.SAMPLE for e in events) else None)
    explained = [m.get("blackout_explained") for m in doc["figures"].get("migrations") or []]
    page = render_html(doc, timeline, plot_histogram(history, events), sorted(set(files)), hostcpu,
                       plot_explained(explained) if any(explained) else None)
    rep = run_dir / "report.html"
    paths.write_atomic(rep, page)
    return Artifacts(res, junit, rep, doc["verdict"], timeline)
