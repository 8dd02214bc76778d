"""Print the backup figures: full and incremental backup time, size and freeze window,
replication throughput to the DR site, and restore RTO (restore start -> first successful query).
Printed, never asserted. Run as root: `python bench/backup.py`.
"""

from __future__ import annotations

import shutil
import time

LAB = "benchbk"


def main() -> None:
    from availlab.lab import providers as lab, state
    from availlab.scenarios import steps
    from availlab.events.backup import backup
    from availlab.progress import set_quiet
    from availlab.events.replicate import replicate
    from availlab.events.restore import restore
    from availlab.clients.sql import run_sql

    set_quiet(True)
    lab.down(LAB)
    try:
        the_lab = steps.ensure_lab(LAB, 2)
        steps.ensure_vm(the_lab, "sql1", "h1")
        st = state.require_up(LAB)
        run_sql(st, "sql1", "CREATE TABLE IF NOT EXISTS bench (id int, pad text)")
        full = backup(st, "sql1")
        run_sql(st, "sql1", "INSERT INTO bench SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g")
        inc = backup(st, "sql1", incremental=True)
        crash = backup(st, "sql1", incremental=True, consistent=False)
        rep = replicate(st, crash.id)
        t0 = time.monotonic()
        res = restore(st, crash.id, "h2", name="sql1r")
        wall = time.monotonic() - t0
        rows = run_sql(state.require_up(LAB), "sql1r", "SELECT count(*) FROM bench")[0][0]
        out = [
            ("full backup (application-consistent)", f"{full.size_bytes / 2**20:.0f} MiB in {full.duration_s:.2f} s, frozen {full.freeze_ms} ms"),
            ("incremental backup (50k rows written)", f"{inc.size_bytes / 2**20:.1f} MiB in {inc.duration_s:.2f} s, frozen {inc.freeze_ms} ms"),
            ("incremental backup (crash-consistent)", f"{crash.size_bytes / 2**20:.1f} MiB in {crash.duration_s:.2f} s, no freeze"),
            ("replication to the DR site", f"{rep.bytes_copied / 2**20:.0f} MiB in {rep.seconds:.1f} s = {rep.mib_s:.0f} MiB/s (verified)"),
            ("restore RTO (start -> first query)", f"{res.rto_s:.1f} s (call returned after {wall:.1f} s)"),
            ("rows restored", f"{rows} of 50000"),
        ]
        w = max(len(k) for k, _ in out)
        for k, v in out:
            print(f"{k:<{w}}  {v}")
    finally:
        lab.down(LAB)
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)  # the DR site outlives down


if __name__ == "__main__":
    main()
