"""Soak: N live migrations ping-pong plus M backups under 4 clients; prints the counts.
Default 50 migrations and 5 backups (the issue's soak); `python bench/soak.py 50 5`."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

LAB = "benchsoak"


def main(migrations: int, backups: int) -> None:
    from availlab.clients.workload import workload_spec
    from availlab.lab import providers as lab
    from availlab.lab import state
    from availlab.progress import set_quiet
    from availlab.scenarios import steps
    from availlab.scenarios.soak import SOAK_SLO, check, soak

    set_quiet("-v" not in sys.argv)
    lab.down(LAB)
    try:
        the_lab = steps.ensure_lab(LAB, 2)
        steps.ensure_vm(the_lab, "sql1", "h1")
        run = steps.open_run("soak", Path(tempfile.mkdtemp(prefix="availlab-soak-")), {})
        done = soak(run, the_lab, "sql1", migrations, backups, workload_spec(clients=4))
        r = check(run, SOAK_SLO)
        f = r.figures
        for k, v in [("migrations ok / run", f"{done['migrations_ok']} / {done['migrations']}"),
                     ("backups", done["backups"]), ("client ops", f["ops"]), ("failed ops", f["failed_ops"]),
                     ("indeterminate ops", f["info_ops"]), ("lost writes", f["lost_writes"]),
                     ("max blackout", f"{f['longest_blackout_ms']} ms (SLO {SOAK_SLO.max_blackout_ms:g} ms)"),
                     ("verdict", f"{r.verdict} (outcomes {r.verdict_by_kind['outcome']}, "
                                 f"timings {r.verdict_by_kind['timing']})")]:
            print(f"{k:<22} {v}")
    finally:
        lab.down(LAB)
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    main(int(args[0]) if args else 50, int(args[1]) if len(args) > 1 else 5)
