"""A rolling maintenance's documents: each VM's own run folder gets runbook 10's documents (its
results.json, junit.xml, report.html with its timeline), and the run's folder gets the rollout's:
results.json and junit.xml with every check (the rollout's and each VM's, named by VM), and a
report whose first picture is the swimlanes: one lane per VM, coloured by the host it ran on,
each host's maintenance shaded, each migration marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import paths
from ..checks import Results
from ..records import Rec
from . import Artifacts, write_results, write_run
from .page import render_html
from .plots import _finish, plot_histogram

HOST_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                "#17becf", "#d62728")


def plot_swimlanes(events: list[dict[str, Any]], vms: list[str]) -> str:
    """One lane per VM: which host it ran on over time; each host's turn (drain to resume) lightly
    shaded in its colour, its maintenance darker; each migration a tick where the lane changes colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rollout: dict[str, Any] = next((e for e in reversed(events) if e.get("type") == Rec.ROLLOUT), {})
    planned = rollout.get("planned") or {}
    hosts = sorted({*planned.values(), *(e.get("host") for e in events if e.get("type") == Rec.MAINTENANCE)} - {None})
    colour = {h: HOST_COLOURS[i % len(HOST_COLOURS)] for i, h in enumerate(hosts)}
    moves = [e for e in events if e.get("type") == Rec.MIGRATION and e.get("ok")]
    times = [int(e[k]) for e in events for k in ("t0", "t1", "t") if isinstance(e.get(k), int)]
    t_zero, t_end = (min(times), max(times)) if times else (0, 1)
    fig, ax = plt.subplots(figsize=(12, 0.7 * len(vms) + 1.8))
    resumed = {e["host"]: e for e in events if e.get("type") == Rec.HOST_RESUME}
    for d in (e for e in events if e.get("type") == Rec.HOST_DRAIN):  # the host's whole turn, lightly
        end = resumed.get(d["host"], {}).get("t1", d["t1"])
        ax.axvspan((d["t0"] - t_zero) / 1e9, (end - t_zero) / 1e9, color=colour.get(d["host"], "#999"), alpha=0.07)
    for w in (e for e in events if e.get("type") == Rec.MAINTENANCE):
        ax.axvspan((w["t0"] - t_zero) / 1e9, (w["t1"] - t_zero) / 1e9, color=colour.get(w["host"], "#999"), alpha=0.35,
                   label=f"maintenance of {w['host']} ({w.get('action')})")
    shown: set[str] = set()
    for lane, vm in enumerate(vms):
        at, since = planned.get(vm), t_zero
        for m in (m for m in moves if m.get("vm") == vm):
            if at:
                ax.broken_barh([((since - t_zero) / 1e9, (m["t1"] - since) / 1e9)], (lane - 0.3, 0.6),
                               color=colour.get(at, "#999"), label=None if at in shown else f"on {at}")
                shown.add(at)
            ax.plot([(m["t1"] - t_zero) / 1e9], [lane], marker="|", color="black", markersize=14)
            at, since = m.get("target"), m["t1"]
        if at:
            ax.broken_barh([((since - t_zero) / 1e9, (t_end - since) / 1e9)], (lane - 0.3, 0.6),
                           color=colour.get(at, "#999"), label=None if at in shown else f"on {at}")
            shown.add(at)
    ax.set_yticks(range(len(vms)), vms)
    ax.set_ylim(-0.7, len(vms) - 0.3)
    return _finish(fig, ax, "Where each VM ran (| a migration); each host's turn shaded, its maintenance darker",
                   "seconds since the run began", "VM")


def write_rollout(run_dir: Path, runbook: str, results: Results, per_vm: dict[str, tuple[Results, list, list]],
                  events: list[dict[str, Any]], parameters: dict[str, Any], started: float) -> Artifacts:
    """Each VM's documents in its folder, then the run's own (results.json first, as write_run)."""
    run_dir = Path(run_dir)
    for vm, (vm_results, hist, ev) in per_vm.items():
        write_run(run_dir / vm, f"{runbook}/{vm}", vm_results, hist, ev, {**parameters, "vm": vm}, started)
    histories = [r for _, hist, _ in per_vm.values() for r in hist]
    # what produced the run: the first VM's environment (each VM's own is in its folder)
    first = next(iter(per_vm.values()), (None, [], []))[1]
    doc, res, junit = write_results(run_dir, runbook, results, histories, [e for _, _, ev in per_vm.values() for e in ev],
                                    parameters, started, produced_by=first)
    files = sorted({*(p.name for p in run_dir.iterdir() if p.is_file()), "report.html",
                    *(f"{vm}/report.html" for vm in per_vm)})
    lanes = plot_swimlanes(events, list(per_vm))
    page = render_html(doc, lanes, plot_histogram(histories, []), files)
    rep = run_dir / "report.html"
    paths.write_atomic(rep, page)
    return Artifacts(res, junit, rep, doc["verdict"], lanes)
