"""Backups against live migrations, in one run on one lab, under the default 4-client workload:
the freeze window (request -> thaw acknowledged) and its parts, and the longest client gap of
each full backup beside the same gap for each live migration. Push-mode and pull-mode full
backups alternate in the same run (push was availlab's only mode before pull; pull is the default).
Then the incremental, replication and restore figures. Printed as min / median / max, never
asserted. Run as root: `python bench/backup.py [ROUNDS]` (default 5: five full backups of each
mode, five migrations each followed by a backup).

The guest's own write stall (FIFREEZE -> FITHAW) lies between two figures the host sees: at least
"backupBegin" (freeze answered -> thaw sent: frozen throughout), at most the window. Backups right
after a migration are printed apart: under TCG the first freeze on a new QEMU is slower (its code
is translated again; idle 91-119 ms against 39-48 for the next ones).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

LAB = "benchbk"


def gaps_ms(history: list[dict], events: list[dict], windows: list[dict]) -> list[float]:
    """Each window's longest client gap, as the runbooks' blackout check measures it."""
    from availlab.checks import Context, slo
    from availlab.checks.client import blackout_checker

    check = blackout_checker(against_slo=False)(Context(history, events, slo(), windows=windows))
    return [g for g in check.figures.get("per_window_blackout_ms", []) if g is not None]


def outcome_counts(history: list[dict]) -> str:
    """ops / failed / indeterminate / lost: a bench whose operations failed must say so."""
    from availlab.checks import Context, slo
    from availlab.checks.client import lost_writes, outcomes

    ctx = Context(history, [], slo())
    o, lw = outcomes(ctx).figures, lost_writes(ctx).figures
    return f"{o['ops']} / {o['failed_ops']} / {o['info_ops']} / {lw.get('lost_writes', 'not read')}"


def _row(name: str, xs: list[float], unit: str = "ms") -> tuple[str, str]:
    if not xs:
        return name, "-"
    return name, f"{min(xs):.0f} / {statistics.median(xs):.0f} / {max(xs):.0f} {unit}"


def main(rounds: int) -> None:
    from availlab.clients.sql import run_sql
    from availlab.clients.workload import under_load, workload_spec
    from availlab.dialects import TABLE
    from availlab.events.backup import COPY_MIB_S, MODES
    from availlab.events.nemesis import Nemeses, Stage
    from availlab.events.ops import Backup, Migrate, Wait
    from availlab.events.replicate import replicate
    from availlab.events.restore import restore
    from availlab.history import JsonlWriter, read_jsonl
    from availlab.lab import providers as lab
    from availlab.lab import state
    from availlab.progress import set_quiet
    from availlab.scenarios import steps

    set_quiet(True)
    lab.down(LAB)
    work = Path(f"/tmp/availlab-bench-backup-{time.strftime('%Y%m%dT%H%M%S')}")
    work.mkdir()
    try:
        steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
        st = state.require_up(LAB)
        hist_path, ev_path = work / "history.jsonl", work / "events.jsonl"
        a = [op for _ in range(rounds) for mode in MODES for op in (Backup(mode=mode), Wait(2))]  # A: modes alternating
        b = [op for i in range(rounds) for op in (Migrate("h2" if i % 2 == 0 else "h1"), Wait(2), Backup(), Wait(2))]
        with JsonlWriter(hist_path) as hist, JsonlWriter(ev_path) as ev:  # B: each migration followed by a backup
            nemeses = Nemeses(Stage(st=st, vm="sql1", events=ev), [*a, *b, Backup(incremental=True), Wait(2)])
            with under_load(st, "sql1", workload_spec(clients=4, probe_interval_ms=0), hist, warmup_s=2.0,
                            nemeses=nemeses):  # no probe: figures comparable with earlier runs
                done = nemeses.invoke()
        backups_a = {m: [r.id for r, op in zip(done[:len(a)], a, strict=True) if isinstance(op, Backup) and op.mode == m]
                     for m in MODES}
        inc = done[-2]
        history, events = read_jsonl(hist_path), read_jsonl(ev_path)
        migs = [e for e in events if e.get("type") == "migration" and e.get("ok")]
        ms = lambda a, b: (b - a) / 1e6  # noqa: E731
        out = []
        in_a = {i for ids in backups_a.values() for i in ids}
        for label, fulls in (
                *((f"full backup, {m} mode", [e for e in events if e.get("type") == "backup" and e["set_id"] in ids])
                  for m, ids in backups_a.items()),
                (f"full backup ({MODES[0]}), 2 s after a migration", [
                    e for e in events if e.get("type") == "backup" and e["kind"] == "full" and e["set_id"] not in in_a])):
            frozen = [next(p for p in e["phases"] if p["phase"] == "frozen") for e in fulls]
            out += [
                _row(f"{label}: freeze window (request -> thaw answered)", [ms(p["t0"], p["t1"]) for p in frozen]),
                _row("  freeze answered by the agent", [ms(p["t0"], p["answered"]) for p in frozen]),
                _row("  backupBegin (the point in time)", [ms(p["answered"], p["begun"]) for p in frozen]),
                _row("  thaw answered by the agent", [ms(p["begun"], p["t1"]) for p in frozen]),
                _row(f"  copy ({COPY_MIB_S} MiB/s cap)", [ms(e["t_begin"], e["t1"]) / 1000 for e in fulls], "s"),
                _row(f"{label}: longest client gap", gaps_ms(history, events, fulls)),
            ]
        out += [
            _row("live migration: longest client gap", gaps_ms(history, events, migs)),
            _row("live migration: hypervisor downtime", [e["downtime_ms"] for e in migs if e.get("downtime_ms")]),
            ("clients: ops / failed / indeterminate / lost (whole run)", outcome_counts(history)),
            ("migrations failed (left out above)", str(sum(1 for e in events if e.get("type") == "migration"
                                                           and not e.get("ok")))),
        ]
        rep = replicate(st, inc.id)
        t0 = time.monotonic()
        res = restore(st, inc.id, "h2", name="sql1r")
        wall = time.monotonic() - t0
        rows = run_sql(state.require_up(LAB), "sql1r", "SELECT count(*) FROM " + TABLE)[0][0]
        out += [
            ("incremental backup (under load)", f"{inc.size_bytes / 2**20:.1f} MiB in {inc.duration_s:.2f} s, "
                                                f"frozen {inc.freeze_ms} ms"),
            ("replication to the DR site", f"{rep.bytes_copied / 2**20:.0f} MiB in {rep.seconds:.1f} s = "
                                           f"{rep.mib_s:.0f} MiB/s (verified)"),
            ("restore RTO (start -> first query)", f"{res.rto_s:.1f} s (call returned after {wall:.1f} s); "
                                                   f"{rows} rows"),
        ]
        print(f"{rounds} x (push full, pull full), then {len(migs)} live migrations each followed by a full backup; "
              "4 clients; min / median / max")
        w = max(len(k) for k, _ in out)
        for k, v in out:
            print(f"{k:<{w}}  {v}")
        print(f"(history and events kept in {work})")
    finally:
        lab.down(LAB)
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)  # the DR site outlives down


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
