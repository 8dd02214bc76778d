"""The blackout probe's figures and its cost: ping-pong migrations under 4 clients, alternating
rounds with the probe at 5 ms and with no probe, so the hour's speed affects both alike.

Printed as min / median / max over the rounds, never asserted: the probe's resolution and noise
floor, its blackout per migration and how that splits into before the pause / paused / after
resume, the TCP retransmissions, and the clients' ops/s with and without the probe (what the probe
costs the workload on this 2-core TCG machine). Run as root: `python bench/probe.py [ROUNDS]`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

LAB = "benchprobe"


def spread(values: list[float], unit: str = "") -> str:
    vs = [v for v in values if v is not None]
    if not vs:
        return "n/a"
    return f"{min(vs):g} / {statistics.median(vs):g} / {max(vs):g}{unit}  (n={len(vs)})"


def main(rounds: int) -> None:
    from availlab.lab import providers as lab
    from availlab.progress import set_quiet
    from availlab.scenarios import params, steps

    set_quiet(True)
    lab.down(LAB)
    got: dict[str, dict[str, list[float]]] = {}
    tmp: Path | None = None
    try:
        the_lab = steps.ensure_lab(LAB, 2)
        steps.ensure_vm(the_lab, "sql1", "h1")
        tmp = Path(tempfile.mkdtemp(prefix="availlab-bench-"))
        for i in range(rounds):
            for interval in (5.0, 0.0):
                mode = f"probe {interval:g} ms" if interval else "no probe"
                cfg = params.LiveMigration.parse({"plan": "ping-pong", "migrations": 2,
                                                  "probe_interval_ms": interval})
                run = steps.open_run("bench-probe", tmp / f"{i}-{interval:g}", {})
                moves = steps.plan_migrations(the_lab, "sql1", "ping-pong", 2, "", 2.0, 0.0)
                t0 = time.monotonic()
                steps.migrate_under_load(run, the_lab, "sql1", moves, cfg.workload, cfg.tuning, 3.0, 3.0)
                wall = time.monotonic() - t0
                f = steps.check(run, cfg.slo).figures
                g = got.setdefault(mode, {})
                g.setdefault("client ops/s", []).append(round(f["ops"] / wall, 1))
                g.setdefault("failed + lost", []).append(sum(f.get(k) or 0 for k in ("failed_ops", "info_ops", "lost_writes")))
                g.setdefault("resolution ms", []).append(f.get("blackout_resolution_ms"))
                g.setdefault("noise floor ms", []).append(f.get("noise_floor_ms"))
                for m in f["migrations"]:
                    g.setdefault("client blackout ms", []).append(m.get("client_blackout_ms"))
                    g.setdefault("probe blackout ms", []).append(m.get("probe_blackout_ms"))
                    g.setdefault("libvirt downtime ms", []).append(m.get("downtime_ms"))
                    e = m.get("blackout_explained") or {}
                    for part in ("before_pause_ms", "paused_ms", "after_resume_ms"):
                        g.setdefault(part.replace("_ms", " ms").replace("_", " "), []).append(e.get(part))
                    g.setdefault("TCP retransmissions", []).append((e.get("tcp") or {}).get("retrans_segs"))
        for mode, g in got.items():
            print(f"== {mode}: min / median / max over {rounds} rounds of 2 migrations")
            width = max(len(k) for k in g)
            for k, vs in g.items():
                print(f"  {k:<{width}}  {spread(vs)}")
    finally:
        lab.down(LAB)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
