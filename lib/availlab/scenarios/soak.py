"""Soak: many live migrations and backups under one continuous workload, judged like any run.

Backups are full ones: a checkpoint is metadata of the host that took it, and the VM moves between
backups here (see docs/backup.md).
"""

from __future__ import annotations

from ..checks import SLO, Results, check_run
from ..clients.workload import WorkloadSpec, under_load
from ..events.catalog import list_sets
from ..events.migration import MigrationRecord
from ..events.nemesis import Nemeses, Nemesis, Stage
from ..events.ops import Backup, Migrate, Wait
from ..history import JsonlWriter, clock_anchor, read_jsonl
from .lab_view import Lab
from .params import BackupRestore, LiveMigration
from .run import Run


def soak(run: Run, lab: Lab, vm: str, migrations: int, backups: int, spec: WorkloadSpec,
         settle_s: float = 1.0) -> dict:
    """Many migrations and full backups under one continuous workload: what a short runbook cannot
    show."""
    st = lab.st
    every = max(1, migrations // max(1, backups)) if backups else 0
    plan: list[Nemesis] = []
    for i in range(migrations):  # each to another host; a full backup every `every` migrations
        plan.append(Migrate(label=f"soak: migration {i + 1}/{migrations}"))
        if every and (i + 1) % every == 0 and sum(isinstance(n, Backup) for n in plan) < backups:
            plan.append(Backup())
        plan.append(Wait(settle_s))
    with JsonlWriter(run.history_path) as hist, JsonlWriter(run.events_path) as ev:
        hist.write(clock_anchor())
        nemeses = Nemeses(Stage(st=st, vm=vm, events=ev), plan)
        with under_load(st, vm, spec, hist, warmup_s=2.0, nemeses=nemeses):
            done = nemeses.invoke()
    migrated = [r for r in done if isinstance(r, MigrationRecord)]
    return {"migrations": len(migrated), "migrations_ok": sum(r.ok for r in migrated),
            "backups": sum(isinstance(n, Backup) for n in plan),
            "backup_sets": len([b for b in list_sets(st, "primary") if b.vm == vm])}


# A soak's gaps are its migrations' and its backups': it is judged by the looser of the defaults of
# runbook 10 (migrations) and runbook 20 (backups), declared there (docs/slo.md).
SOAK_SLO = SLO(max_blackout_ms=max(LiveMigration.model_fields["max_blackout_ms"].default,
                                   BackupRestore.model_fields["max_blackout_ms"].default))


def check(run: Run, slo: SLO) -> Results:
    """Judged like runbook 10 (checks.migration), against SOAK_SLO by default."""
    return check_run(read_jsonl(run.history_path), read_jsonl(run.events_path), slo)
