"""Write a run's evidence: results.json, junit.xml and a self-contained report.html.

results.json is written first, so a rendering failure never loses the verdict. The HTML embeds
its plots as PNG data URIs (no network needed to view it) and renders every figure from
results.json, so the page and the file cannot disagree. A small inline script marks the page
once every plot has decoded (`<body data-plots-ok="N">`), which the tests read in Chromium.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .checks import Results, pair_ops

SCHEMA = "availlab.results/1"
PHASE_COLOURS = {"prepare": "#c6dbef", "initial copy": "#9ecae1", "dirty-page iterations": "#6baed6",
                 "paused": "#fd8d3c", "resumed on target": "#a1d99b", "announced": "#31a354",
                 "db checkpoint": "#dadaeb", "frozen": "#e6550d", "copy": "#bcbddc",
                 "restore (RTO)": "#fdd0a2", "fault: abort-migration": "#f4a582",
                 "fault: kill-dest-libvirtd": "#d6604d", "fault: kill-dest-qemu": "#b2182b",
                 "fault: cut-migration-link": "#92c5de"}


def _event_windows(events: list[dict]) -> list[tuple[int, int]]:
    """Intervals in which an event disturbed the guest: migrations, and backup freezes."""
    out = [(e["t0"], e["t1"]) for e in events if e.get("type") == "migration"]
    out += [(p["t0"], p["t1"]) for e in events if e.get("type") == "backup"
            for p in e.get("phases", []) if p["phase"] == "frozen"]
    return out
VERDICT_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "UNKNOWN": "#9a6700", "INCOMPLETE": "#9a6700"}


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
    return {"schema": SCHEMA, "runbook": runbook, **results.to_dict(), "slo": slo,
            "parameters": parameters, "started_at": _iso(started), "finished_at": _iso(finished)}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def write_junit(path: Path, runbook: str, doc: dict) -> None:
    checks = doc["checks"]
    suite = ET.Element("testsuite", name=f"availlab.{runbook}", tests=str(len(checks)),
                       failures=str(sum(c["valid"] is False for c in checks)),
                       errors=str(sum(c["valid"] not in (True, False) for c in checks)))
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"availlab.{runbook}", name=c["name"])
        ET.SubElement(ET.SubElement(case, "properties"), "property", name="kind", value=c.get("kind", "outcome"))
        if c["valid"] is False:
            ET.SubElement(case, "failure", message=c["message"]).text = json.dumps(c["figures"], default=str)
        elif c["valid"] is not True:
            ET.SubElement(case, "error", message=c["message"])
        else:
            ET.SubElement(case, "system-out").text = c["message"]
    ET.ElementTree(suite).write(path, encoding="unicode", xml_declaration=True)


def _finish(fig, ax, title: str, xlabel: str, ylabel: str, legend_outside: bool = True) -> str:
    """Common axis dressing, then the figure as a base64 PNG (and the figure closed)."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend_outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    else:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plot_timeline(history: list[dict], events: list[dict], doc: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = pair_ops(history)
    phased = [e for e in events if e.get("phases")]
    t_zero = min([o.t0 for o in ops] + [p["t0"] for e in phased for p in e["phases"]] or [0])
    fig, ax = plt.subplots(figsize=(12, 4.2))
    seen = set()
    for m in phased:
        for p in m.get("phases", []):
            a, b = (p["t0"] - t_zero) / 1e9, (p["t1"] - t_zero) / 1e9
            label = p["phase"] if p["phase"] not in seen else None
            seen.add(p["phase"])
            if b - a < 0.01:
                ax.axvline(a, color=PHASE_COLOURS.get(p["phase"], "#999"), lw=1.5, label=label)
            else:
                ax.axvspan(a, b, color=PHASE_COLOURS.get(p["phase"], "#ddd"), alpha=0.55, lw=0, label=label)
    for kind, colour, marker, size in (("ok", "#1f4e79", ".", 4), ("info", "#d97706", "^", 30),
                                       ("fail", "#cf222e", "x", 30)):
        pts = [((o.t0 - t_zero) / 1e9, o.latency_ms or 0.0) for o in ops if o.type == kind]
        if pts:
            ax.scatter(*zip(*pts), s=size, c=colour, marker=marker, label=f"{kind} ({len(pts)})", zorder=3)
    bl = next((c["figures"] for c in doc["checks"] if c["name"] == "blackout"), {})
    if bl.get("blackout_t0") is not None:
        a, b = (bl["blackout_t0"] - t_zero) / 1e9, (bl["blackout_t1"] - t_zero) / 1e9
        ax.axvspan(a, b, facecolor="none", edgecolor="#cf222e", hatch="////", lw=1,
                   label=f"longest blackout {bl['max_blackout_ms']} ms", zorder=4)
    ax.set_yscale("log")
    return _finish(fig, ax, "Every client operation, with the phases of each event",
                   "seconds since the workload started", "operation latency (ms, log)")


def plot_histogram(history: list[dict], events: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ops = [o for o in pair_ops(history) if o.type == "ok" and o.latency_ms]
    wins = _event_windows(events)
    inside = [o.latency_ms for o in ops if any(a <= o.t0 <= b for a, b in wins)]
    outside = [o.latency_ms for o in ops if not any(a <= o.t0 <= b for a, b in wins)]
    fig, ax = plt.subplots(figsize=(12, 3.2))
    values = inside + outside
    if values:
        bins = np.logspace(np.log10(max(min(values), 0.1)), np.log10(max(values) * 1.05), 40)
        ax.hist([outside, inside], bins=bins, stacked=True, color=["#1f4e79", "#fd8d3c"],
                label=[f"outside events ({len(outside)})", f"during migrations / freezes ({len(inside)})"])
        ax.set_xscale("log")
    return _finish(fig, ax, "Latency distribution", "latency of successful operations (ms, log)",
                   "operations", legend_outside=False)


def plot_host_cpu(events: list[dict], threshold: float | None) -> str:
    """Host CPU per host with the threshold, tips and migrations on the same time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [e for e in events if e.get("type") == "sample"]
    t_zero = samples[0]["t"] if samples else 0
    fig, ax = plt.subplots(figsize=(12, 3.6))
    for h in sorted({h for s in samples for h in s["hosts"]}):
        pts = [((s["t"] - t_zero) / 1e9, s["hosts"][h]["cpu"]) for s in samples if h in s["hosts"]]
        ax.plot(*zip(*pts), label=f"{h} CPU %", lw=1.6)
    if threshold is not None:
        ax.axhline(threshold, color="#cf222e", ls="--", lw=1, label=f"threshold {threshold:g}%")
    for e in events:
        x = (e.get("t", 0) - t_zero) / 1e9
        if e.get("type") == "tip":
            ax.axvline(x, color="#9a6700", lw=1.2, ls=":")
            ax.annotate(f"tip {e['id']}", (x, 102), fontsize=8, color="#9a6700")
        elif e.get("type") == "migration":
            ax.axvspan((e["t0"] - t_zero) / 1e9, (e["t1"] - t_zero) / 1e9, color="#a1d99b", alpha=0.5)
        elif e.get("type") == "overload-start":
            ax.annotate("noisy neighbour starts", (x, 92), fontsize=8)
            ax.axvline(x, color="#57606a", lw=1)
    ax.set_ylim(0, 110)
    return _finish(fig, ax, "Host load, tips (dotted) and migrations (green)",
                   "seconds since monitoring started", "host CPU (% of capacity)")


def _fmt(v: object) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:g}"
    return html.escape(str(v))


def _figure_rows(f: dict, keys: tuple[str, ...] | list[str]) -> str:
    """<tr> rows whose cells carry data-figure=KEY: the tests compare them with results.json."""
    return "".join(f"<tr><th>{k}</th><td data-figure='{k}'>{_fmt(f.get(k))}</td></tr>" for k in keys)


def render_html(doc: dict, timeline_png: str, histogram_png: str, files: list[str],
                hostcpu_png: str | None = None) -> str:
    f = doc["figures"]
    verdict = doc["verdict"]
    colour = VERDICT_COLOURS.get(verdict, "#57606a")
    headline = ["ops", "ok_ops", "failed_ops", "info_ops", "lost_writes", "max_blackout_ms",
                "p50_latency_ms", "p99_latency_ms"]
    rows_fig = _figure_rows(f, headline)
    rows_slo = "".join(f"<tr><th>{k}</th><td>{_fmt(v)}</td></tr>" for k, v in doc.get("slo", {}).items())
    mig_rows = "".join(
        f"<tr data-migration='{i}'><td>{i + 1}</td><td>{_fmt(m['vm'])}</td><td>{_fmt(m['source'])} → {_fmt(m['target'])}</td>"
        f"<td>{'ok' if m.get('ok') else 'FAILED'}</td><td data-col='downtime_ms'>{_fmt(m.get('downtime_ms'))}</td>"
        f"<td data-col='client_blackout_ms'>{_fmt(m.get('client_blackout_ms'))}</td><td>{_fmt(m.get('total_ms'))}</td>"
        f"<td>{_fmt(m.get('iterations'))}</td><td>{_fmt(m.get('transferred_mib'))}</td>"
        f"<td>{_fmt(' | '.join(m.get('flags', [])))}</td></tr>"
        for i, m in enumerate(f.get("migrations", [])))
    extra = ""
    if f.get("backups"):
        extra += ("<h2>Backups</h2><table id='backups'><tr><th>set</th><th>type</th><th>consistency</th>"
                  "<th>MiB</th><th>seconds</th><th>frozen (ms)</th><th>client blackout in freeze (ms)</th></tr>")
        gaps = f.get("freeze_blackout_ms") or []
        for i, b in enumerate(f["backups"]):
            extra += (f"<tr><td>{_fmt(b['set_id'])}</td><td>{_fmt(b['kind'])}</td><td>{_fmt(b['consistency'])}</td>"
                      f"<td>{_fmt(b['size_mib'])}</td><td>{_fmt(b['duration_s'])}</td><td>{_fmt(b['freeze_ms'])}</td>"
                      f"<td>{_fmt(gaps[i] if i < len(gaps) else None)}</td></tr>")
        extra += "</table>"
    if "tips" in f:
        extra += ("<h2>Latency before, during and after the overload</h2><table id='p95'>"
                  + _figure_rows(f, ("p95_before_ms", "p95_during_ms", "p95_after_ms")) + "</table>"
                  "<h2>Tips</h2><table id='tips'><tr><th>s</th><th>rule</th><th>host</th><th>VM</th><th>action</th>"
                  "<th>target</th><th>applied</th><th>why</th></tr>"
                  + "".join(f"<tr><td>{_fmt(t['time'])}</td><td>{_fmt(t['rule'])}</td><td>{_fmt(t['host'])}</td>"
                            f"<td>{_fmt(t['vm'])}</td><td>{_fmt(t['action'])}</td><td>{_fmt(t['target'])}</td>"
                            f"<td>{_fmt(t['applied'])}</td><td>{_fmt(t['reason'])}</td></tr>" for t in f["tips"])
                  + "</table>")
    if f.get("faults"):
        extra += ("<h2>Fault matrix</h2><table id='faults'><tr><th>fault</th><th>expected</th><th>what it hit</th>"
                  "<th>VM afterwards on</th><th>failed</th><th>indeterminate</th><th>lost writes</th>"
                  "<th>blackout (ms)</th><th>verdict</th></tr>"
                  + "".join(f"<tr data-fault='{_fmt(r['fault'])}'><td>{_fmt(r['fault'])}</td><td>{_fmt(r['expected'])}</td>"
                            f"<td>{_fmt(r.get('action'))}: {'completed' if r['completed'] else 'failed'}</td>"
                            f"<td>{_fmt(r['vm_host_after'])}</td><td>{_fmt(r['failed_ops'])}</td>"
                            f"<td>{_fmt(r['info_ops'])}</td><td>{_fmt(r['lost_writes'])}</td>"
                            f"<td>{_fmt(r['blackout_ms'])}</td><td>{_fmt(r['verdict'])}</td></tr>" for r in f["faults"])
                  + "</table>")
    if hostcpu_png:
        extra += ("<h2>Host load</h2><img id='hostcpu' class='plot' alt='host CPU with threshold' "
                  f"src='data:image/png;base64,{hostcpu_png}'>")
    if "rto_s" in f:
        extra += ("<h2>Disaster recovery</h2><table id='dr'>"
                  + _figure_rows(f, ("rto_s", "rpo_writes_missing", "replication_mib_s", "checksums_verified"))
                  + "</table>")
    check_rows = "".join(
        f"<tr data-check='{_fmt(c['name'])}'><td>{_fmt(c['name'])}</td><td>{_fmt(c.get('kind', 'outcome'))}</td>"
        f"<td class='v-{str(c['valid']).lower()}'>{_fmt(c['valid'])}</td>"
        f"<td>{_fmt(c['message'])}</td></tr>" for c in doc["checks"])
    by_kind = (doc.get("verdict_by_kind") or {}) if verdict != "INCOMPLETE" else {}  # a cut-off run has none
    kinds = (f"outcomes <b data-kind='outcome'>{_fmt(by_kind.get('outcome'))}</b> · timings "
             f"<b data-kind='timing'>{_fmt(by_kind.get('timing'))}</b> · " if by_kind else "")
    params = html.escape(json.dumps(doc.get("parameters", {}), indent=1, default=str))
    mig_table = ("" if not mig_rows else
                 "<h2>Migrations: hypervisor downtime vs what clients saw</h2><table id='migrations'><tr><th>#</th>"
                 "<th>VM</th><th>move</th><th>result</th><th>hypervisor downtime (ms)</th><th>client blackout (ms)</th>"
                 f"<th>total (ms)</th><th>iterations</th><th>memory sent (MiB)</th><th>flags</th></tr>{mig_rows}</table>")
    file_list = "".join(f"<li><a href='{html.escape(n)}'>{html.escape(n)}</a></li>" for n in files)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>availlab {html.escape(doc['runbook'])}: {verdict}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1f2328;max-width:1250px}}
.verdict{{background:{colour};color:#fff;padding:14px 20px;border-radius:6px;font-size:26px;font-weight:600}}
.verdict small{{font-size:15px;font-weight:400;display:block;margin-top:4px}}
table{{border-collapse:collapse;margin:10px 0 22px}} th,td{{border:1px solid #d0d7de;padding:4px 10px;text-align:left;font-size:14px}}
th{{background:#f6f8fa}} .v-true{{color:#1a7f37;font-weight:600}} .v-false{{color:#cf222e;font-weight:600}}
.v-unknown{{color:#9a6700;font-weight:600}} img{{max-width:100%;border:1px solid #d0d7de}} .cols{{display:flex;gap:40px;flex-wrap:wrap}}
pre{{background:#f6f8fa;padding:10px;font-size:12px}}
</style></head>
<body data-verdict="{verdict}" data-plots-ok="0">
<div class="verdict" id="verdict">{verdict}<small>{kinds}{html.escape(doc['runbook'])} · {doc.get('started_at', '')} → {doc.get('finished_at', '')}</small></div>
<div class="cols"><div><h2>Figures</h2><table id="figures">{rows_fig}</table></div>
<div><h2>SLO</h2><table id="slo">{rows_slo}</table></div></div>
{mig_table}{extra}
<h2>Timeline</h2><img id="timeline" class="plot" alt="timeline of every operation with migration phases" src="data:image/png;base64,{timeline_png}">
<h2>Latency</h2><img id="histogram" class="plot" alt="latency histogram" src="data:image/png;base64,{histogram_png}">
<h2>Checks</h2><p>An <i>outcome</i> holds or not whatever the host's speed (failed and lost operations, where the VM
runs, data intact); a <i>timing</i> check compares a duration with its SLO.</p>
<table id="checks"><tr><th>check</th><th>kind</th><th>valid</th><th>detail</th></tr>{check_rows}</table>
<h2>Evidence in this folder</h2><ul>{file_list}</ul>
<h2>Parameters</h2><pre>{params}</pre>
<script>
window.addEventListener("load", function () {{
  var ok = 0; document.querySelectorAll("img.plot").forEach(function (i) {{ if (i.complete && i.naturalWidth > 0) ok++; }});
  document.body.setAttribute("data-plots-ok", String(ok));
}});
</script>
</body></html>
"""


def write_run(run_dir: Path, runbook: str, results: Results, history: list[dict],
              events: list[dict], parameters: dict, slo: dict, started: float) -> Artifacts:
    run_dir = Path(run_dir)
    doc = results_document(runbook, results, parameters, slo, started, time.time())
    res = run_dir / "results.json"
    res.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    junit = run_dir / "junit.xml"
    write_junit(junit, runbook, doc)
    files = sorted(p.name for p in run_dir.iterdir() if p.is_file()) + ["report.html"]
    timeline = plot_timeline(history, events, doc)
    hostcpu = (plot_host_cpu(events, parameters.get("threshold"))
               if any(e.get("type") == "sample" for e in events) else None)
    page = render_html(doc, timeline, plot_histogram(history, events), sorted(set(files)), hostcpu)
    rep = run_dir / "report.html"
    rep.write_text(page)
    return Artifacts(res, junit, rep, doc["verdict"], timeline)
