"""Run runbooks 10, 20, 30, 40 (and 60 when asked: --runbooks 60) N times each with their default parameters, as a user does
(`availlab run RUNBOOK`, papermill, the real lab), and print every timing figure as
min / median / max beside the SLO it is judged against, and the verdicts.

This is how a runbook's default SLO is chosen (docs/slo.md): a default that fails on the
reference machine is a bug, and this machine's timings vary 2-5x from one hour to the next.
The runbooks are interleaved (10, 20, 30, 40, 10, …) so a slow hour hits them all alike.

    python bench/defaults.py N [--lab NAME] [--runbooks 10,20] [--json PATH] [--keep]

Runs in a lab of its own (`bdefaults` unless --lab; a lab that exists is refused), removed
afterwards unless --keep.
Figures are printed, never asserted; the JSON keeps every run's values for later comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = {"10": "10-live-migration", "20": "20-backup-restore", "30": "30-dynamic-resources",
            "40": "40-fault-matrix", "60": "60-rolling-maintenance"}
HOSTS = {"60-rolling-maintenance": "3"}  # a lab this bench brings up: the runbook's own default


def _checks(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc.get("checks", [])}


def figures_10(doc: dict) -> dict[str, tuple[list[float], float | None]]:
    f, slo = doc["figures"], doc.get("slo", {})
    migs = f.get("migrations") or []
    return {"max_blackout_ms": ([f["longest_blackout_ms"]], slo.get("max_blackout_ms")),
            "client_blackout_ms (per migration)": ([m["client_blackout_ms"] for m in migs], None),
            "hypervisor downtime_ms (per migration)": ([m["downtime_ms"] for m in migs], None),
            "migration total_ms": ([m["total_ms"] for m in migs], None),
            "p99_latency_ms": ([f["p99_latency_ms"]], None)}


def figures_20(doc: dict) -> dict[str, tuple[list[float], float | None]]:
    f, slo = doc["figures"], doc.get("slo", {})
    return {"max_blackout_ms": ([f["longest_blackout_ms"]], slo.get("max_blackout_ms")),
            "freeze window_ms (per backup)": (f.get("freeze_windows_ms") or [], None),
            "client blackout in freeze_ms (per backup)": (f.get("freeze_blackout_ms") or [], None),
            "backup duration_s (per backup)": ([b["duration_s"] for b in f.get("backups") or []], None),
            "rto_s": ([f.get("rto_s")], None),
            "p99_latency_ms": ([f["p99_latency_ms"]], None)}


def figures_30(doc: dict) -> dict[str, tuple[list[float], float | None]]:
    f, p = doc["figures"], doc.get("parameters", {})
    lag = _checks(doc).get("tip-latency", {}).get("figures", {}).get("crossing_to_migration_s")
    allowed = float(p.get("sustained_s", 5.0)) + 2 * float(p.get("interval_s", 1.0))
    return {"crossing -> migration_s": ([lag], allowed),
            "p95_before_ms": ([f.get("p95_before_ms")], None),
            "p95_during_ms": ([f.get("p95_during_ms")], None),
            "p95_after_ms": ([f.get("p95_after_ms")], None)}


def figures_40(doc: dict) -> dict[str, tuple[list[float], float | None]]:
    return {f"blackout_ms {row['fault']}": ([row["blackout_ms"]], None) for row in doc["figures"].get("faults", [])}


def figures_60(doc: dict) -> dict[str, tuple[list[float], float | None]]:
    f, slo = doc["figures"], doc.get("slo", {})
    migs = f.get("migrations") or []
    return {**{f"max_blackout_ms {vm}": ([v["longest_blackout_ms"]], slo.get("max_blackout_ms"))
               for vm, v in (f.get("vms") or {}).items()},
            "client_blackout_ms (per migration)": ([m["client_blackout_ms"] for m in migs], None),
            "hypervisor downtime_ms (per migration)": ([m["downtime_ms"] for m in migs], None),
            "migrations": ([len(migs)], None), "rollout_s": ([f.get("rollout_s")], None),
            "host empty_s (per host)": ([h.get("empty_s") for h in f.get("hosts") or []], None)}


FIGURES: dict[str, Callable[[dict], dict]] = {"10-live-migration": figures_10, "20-backup-restore": figures_20,
                                              "30-dynamic-resources": figures_30, "40-fault-matrix": figures_40,
                                              "60-rolling-maintenance": figures_60}


def run_once(lab: str, runbook: str) -> dict:
    cmd = [sys.executable, "-m", "availlab.cli", "--lab", lab, "--quiet", "run",
           str(ROOT / "runbooks" / f"{runbook}.ipynb"), "-p", "hosts", HOSTS.get(runbook, "2")]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = round(time.monotonic() - t0, 1)
    m = re.search(r"run folder: (\S+)", r.stdout)
    doc: dict = {}
    if m and (Path(m.group(1)) / "results.json").exists():
        doc = json.loads((Path(m.group(1)) / "results.json").read_text())
    out = {"runbook": runbook, "exit": r.returncode, "wall_s": wall, "run_dir": m.group(1) if m else None,
           "verdict": doc.get("verdict", "none"), "verdict_by_kind": doc.get("verdict_by_kind", {}),
           "not_passed": [f"{c['name']} ({c.get('kind')}): {c['message']}" for c in doc.get("checks", [])
                          if c["valid"] is not True],
           "figures": {}}
    if not doc:
        out["error"] = (r.stderr or r.stdout)[-2000:]
        return out
    try:  # one odd results.json must not cost a bench of hours its summary
        out["figures"] = {k: {"values": v, "slo": s} for k, (v, s) in FIGURES[runbook](doc).items()}
    except (KeyError, TypeError, ValueError) as exc:
        out["error"] = f"figures unreadable: {type(exc).__name__}: {exc}"
    return out


def _num(values: list) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def summary(runs: list[dict]) -> str:
    lines = []
    for runbook in FIGURES:
        mine = [r for r in runs if r["runbook"] == runbook]
        if not mine:
            continue
        n = len(mine)
        count = lambda key, kind=None, mine=mine: sum((r["verdict_by_kind"].get(kind) if kind else r[key]) == "PASS"
                                                      for r in mine)
        walls = [r["wall_s"] for r in mine]
        lines.append(f"\n{runbook}: PASS {count('verdict')}/{n} (outcomes PASS {count('', 'outcome')}/{n}, "
                     f"timings PASS {count('', 'timing')}/{n}); wall {min(walls):.0f} / "
                     f"{statistics.median(walls):.0f} / {max(walls):.0f} s")
        lines.append(f"  {'figure':<44} {'n':>3} {'min':>9} {'median':>9} {'max':>9} {'SLO':>9} {'max/SLO':>8}")
        names = list(dict.fromkeys(k for r in mine for k in r["figures"]))
        for name in names:
            vals = _num([v for r in mine for v in r["figures"].get(name, {}).get("values", [])])
            slo = next((r["figures"][name]["slo"] for r in mine if name in r["figures"]), None)
            if not vals:
                lines.append(f"  {name:<44} {0:>3} {'n/a':>9}")
                continue
            ratio = f"{max(vals) / slo:8.2f}" if slo else f"{'':>8}"
            lines.append(f"  {name:<44} {len(vals):>3} {min(vals):>9.1f} {statistics.median(vals):>9.1f} "
                         f"{max(vals):>9.1f} {slo if slo is not None else '':>9} {ratio}")
        for r in mine:
            if r["verdict"] != "PASS":
                lines.append(f"  {r['verdict']} in {r['run_dir']}: {'; '.join(r['not_passed']) or r.get('error', '')}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=5, help="runs of each runbook (default 5)")
    ap.add_argument("--lab", default="bdefaults", help="lab to run in (default bdefaults, made and removed here)")
    ap.add_argument("--runbooks", default="10,20,30,40", help="which runbooks, by number (default 10,20,30,40)")
    ap.add_argument("--json", default=str(ROOT / "reports" / "bench-defaults.json"), help="where to keep every value")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    a = ap.parse_args()
    chosen = [RUNBOOKS[x.strip()] for x in a.runbooks.split(",") if x.strip()]
    if a.n < 1 or not chosen:
        ap.error("N must be at least 1 and --runbooks must name at least one of 10, 20, 30, 40")

    from availlab.lab import providers as _lab
    from availlab.lab import state
    from availlab.lab.topology import NAME_RE

    if not NAME_RE.fullmatch(a.lab):  # the name reaches `lab down`: a lab name, nothing else
        ap.error(f"--lab: {a.lab!r} is not a lab name (1-10 lower-case letters/digits starting with a letter)")
    if state.lab_root(a.lab).exists():  # the bench makes its own lab and removes it: never a user's
        ap.error(f"--lab: lab {a.lab!r} exists ({state.lab_root(a.lab)}); name one that does not")
    runs: list[dict] = []
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    try:
        for i in range(a.n):
            for runbook in chosen:
                r = run_once(a.lab, runbook)
                runs.append(r)
                by = r["verdict_by_kind"]
                kinds = f" (outcomes {by['outcome']}, timings {by['timing']})" if by else f": {r.get('error', '')[-300:]}"
                print(f"[{i + 1}/{a.n}] {runbook}: {r['verdict']}{kinds} in {r['wall_s']} s ({r['run_dir']})",
                      flush=True)
                out.write_text(json.dumps({"n": a.n, "lab": a.lab, "runs": runs}, indent=1, default=str) + "\n")
    finally:
        if not a.keep:
            _lab.down(a.lab)
            shutil.rmtree(state.lab_root(a.lab), ignore_errors=True)  # the DR site outlives down
    print(summary(runs))
    print(f"\n{len(runs)} runs in {(time.monotonic() - t_start) / 60:.1f} min; every value in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
