"""The blackout probe's figures and its cost: ping-pong migrations under 4 clients, alternating
rounds with the probe at the runbooks' default period (or the periods given) and with no probe,
so the hour's speed affects both alike.

Printed as min / median / max over the rounds, never asserted: the probe's resolution and noise
floor, its blackout per migration and how that splits into before the pause / paused / after
resume, the TCP retransmissions, and the clients' ops/s with and without the probe (what the probe
costs the workload on this 2-core TCG machine: each round's ops/s against the no-probe rounds
beside it, whose median must be >= 0.95). Run as root:
`python bench/probe.py [ROUNDS] [PERIOD_MS,…]`.
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


def paired(order: list[tuple[str, float]], mode: str, base: str) -> list[float]:
    """Each `mode` value over the mean of the `base` values run just before and after it: the
    hour's speed changes slowly, so a neighbour is the fairest baseline."""
    out = []
    for i, (m, v) in enumerate(order):
        near = [w for j, (n, w) in enumerate(order) if n == base and abs(j - i) == 1]
        if m == mode and near:
            out.append(round(v / statistics.mean(near), 3))
    return out


def steady_cost(st, periods: list[float], rounds: int, seconds: float, tmp: Path) -> dict[str, list[float]]:
    """The probe's cost while it runs fast (inside an event it always does): 4 clients alone
    against 4 clients beside the probe held fast, `seconds` each, alternated. This is the load
    that could shift the downtime and blackout it measures."""
    from availlab.clients.workload import Workload, workload_spec
    from availlab.history import JsonlWriter, now_ns, read_jsonl

    order: list[tuple[str, float]] = []
    for _ in range(rounds):
        for period in [x for p in periods for x in (0.0, p)]:
            path = tmp / f"steady-{len(order)}.jsonl"
            with JsonlWriter(path) as h:
                wl = Workload(st, "sql1", workload_spec(clients=4, probe_interval_ms=period), h).start()
                try:
                    wl.wait_all_succeeded()
                    time.sleep(1)
                    if period:
                        wl.calibrate(seconds + 5)  # fast throughout, as inside a migration
                        time.sleep(0.5)
                    t0 = now_ns()
                    time.sleep(seconds)
                    t1 = now_ns()
                finally:
                    wl.stop()
            ok = sum(1 for r in read_jsonl(path) if r.get("type") == "ok" and t0 <= r["t"] <= t1)
            order.append((f"probe {period:g} ms" if period else "no probe", ok / seconds))
    return {f"probe {p:g} ms held fast: ops/s against the no-probe runs beside it": paired(order, f"probe {p:g} ms", "no probe")
            for p in periods}


def main(rounds: int, periods: list[float] | None = None) -> None:
    from availlab.lab import providers as lab
    from availlab.lab import state
    from availlab.progress import set_quiet
    from availlab.scenarios import params, steps

    set_quiet(True)
    periods = periods or [params.LiveMigration.model_fields["probe_interval_ms"].default]
    lab.down(LAB)
    order: list[tuple[str, float]] = []  # (mode, its ops/s) in the order run, for the paired ratios
    got: dict[str, dict[str, list[float]]] = {}
    tmp: Path | None = None
    try:
        the_lab = steps.ensure_lab(LAB, 2)
        steps.ensure_vm(the_lab, "sql1", "h1")
        tmp = Path(tempfile.mkdtemp(prefix="availlab-bench-"))
        for _ in range(rounds):
            for interval in [x for p in periods for x in (p, 0.0)]:
                mode = f"probe {interval:g} ms" if interval else "no probe"
                cfg = params.LiveMigration.parse({"plan": "ping-pong", "migrations": 2,
                                                  "probe_interval_ms": interval})
                run = steps.open_run("bench-probe", tmp / f"{len(order)}-{interval:g}", {})  # one folder per run
                moves = steps.plan_migrations(the_lab, "sql1", "ping-pong", 2, "", 2.0, 0.0)
                t0 = time.monotonic()
                steps.migrate_under_load(run, the_lab, "sql1", moves, cfg.workload, cfg.tuning, 3.0, 3.0)
                wall = time.monotonic() - t0
                f = steps.judge(run, cfg).figures
                g = got.setdefault(mode, {})
                g.setdefault("client ops/s", []).append(round(f["ops"] / wall, 1))
                order.append((mode, f["ops"] / wall))
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
        for mode in [m for m in got if m != "no probe"]:
            got[mode]["ops/s against the no-probe rounds beside it"] = paired(order, mode, "no probe")
        for mode, g in got.items():
            print(f"== {mode}: min / median / max over {rounds} rounds of 2 migrations")
            width = max(len(k) for k in g)
            for k, vs in g.items():
                print(f"  {k:<{width}}  {spread(vs)}")
        print(f"== the probe's cost while it runs fast: {rounds} alternations of 10 s")
        for k, vs in steady_cost(state.require_up(LAB), periods, rounds, 10.0, tmp).items():
            print(f"  {k}  {spread(vs)}")
    finally:
        lab.down(LAB)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3,
         [float(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else None)
