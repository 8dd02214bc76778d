"""Soak: many live migrations and backups under one continuous workload, judged like any run.

Backups are full ones: a checkpoint is metadata of the host that took it, and the VM moves between
backups here (see docs/backup.md).
"""

from __future__ import annotations

import time

from ..checks import SLO, Results, check_run
from ..clients.workload import WorkloadSpec, under_load
from ..events.backup import backup
from ..events.catalog import list_sets
from ..events.migration import live_migrate
from ..history import JsonlWriter, clock_anchor, read_jsonl
from ..lab.providers import host_of
from ..progress import step
from .handle import Lab
from .params import BackupRestore, LiveMigration
from .run import Run


def soak(run: Run, lab: Lab, vm: str, migrations: int, backups: int, spec: WorkloadSpec,
         settle_s: float = 1.0) -> dict:
    """Many migrations and full backups under one continuous workload: what a short runbook cannot
    show."""
    st = lab.st
    every = max(1, migrations // max(1, backups)) if backups else 0
    done = {"migrations": 0, "migrations_ok": 0, "backups": 0}
    with JsonlWriter(run.history_path) as hist, JsonlWriter(run.events_path) as ev:
        hist.write(clock_anchor())
        with under_load(st, vm, spec, hist, warmup_s=2.0):
            for i in range(migrations):
                here = host_of(st, vm)
                target = next(h for h in st.hosts if h != here)
                rec = live_migrate(st, vm, target, events=ev)
                done["migrations"] += 1
                done["migrations_ok"] += rec.ok
                if every and (i + 1) % every == 0 and done["backups"] < backups:
                    backup(st, vm, events=ev)
                    done["backups"] += 1
                time.sleep(settle_s)
                step(f"soak: {i + 1}/{migrations} migrations, {done['backups']} backups")
    done["backup_sets"] = len([b for b in list_sets(st, "primary") if b.vm == vm])
    return done


# A soak's gaps are its migrations' and its backups': it is judged by the looser of the defaults of
# runbook 10 (migrations) and runbook 20 (backups), declared there (docs/slo.md).
SOAK_SLO = SLO(max_blackout_ms=max(LiveMigration.model_fields["max_blackout_ms"].default,
                                   BackupRestore.model_fields["max_blackout_ms"].default))


def check(run: Run, slo: SLO) -> Results:
    """Judged like runbook 10 (checks.migration), against SOAK_SLO by default."""
    return check_run(read_jsonl(run.history_path), read_jsonl(run.events_path), slo)
