"""The nemeses a scenario lists (events.nemesis), each a small class over one event: a live
migration, a wait, a backup, a logical dump, a fault, a host's drain and its resume. A scenario is
an ordered list of them inside `under_load`:

    nemeses = Nemeses(Stage(st=st, vm="sql1", events=ev), [Migrate("h2"), Wait(5), Migrate("h1")])
    with under_load(st, "sql1", spec, hist, warmup_s=3, nemeses=nemeses):
        records = nemeses.invoke()

The guest processes (memory dirtier, noisy neighbour) are in events.dirtier.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..clients.dbdump import Dump
from ..clients.dbdump import dump as logical_dump
from ..lab.providers import host_of, provider
from ..lab.state import LabState
from ..progress import step
from ..records import Rec
from .backup import COPY_MIB_S, MODES, BackupSet, backup
from .drain import RESUMES, Moves, drain
from .faults import FaultRecord, inject
from .migration import MigrationRecord, MigrationTuning, live_migrate
from .nemesis import Nemesis, Stage


def another_host(st: LabState, vm: str) -> str:
    """The first host the VM does not run on: where a move with no target goes."""
    here = host_of(st, vm)
    return next(h for h in st.hosts if h != here)


@dataclass
class Migrate(Nemesis[Stage]):
    """A live migration of `vm` (the stage's if None) to `target` (another host if None), then
    `hold_s` there before the next nemesis (a maintenance window in a drain). `label` is its
    progress line ("move 1/4"); a failed migration is recorded and the list goes on."""
    target: str | None = None
    tuning: MigrationTuning | None = None
    vm: str | None = None
    hold_s: float = 0.0
    label: str = ""

    def invoke(self, stage: Stage) -> MigrationRecord:
        vm = self.vm or stage.vm
        target = self.target or another_host(stage.st, vm)
        if self.label:
            step(f"{self.label}: {vm} -> {target}")
        rec = live_migrate(stage.st, vm, target, self.tuning, stage.events)
        time.sleep(self.hold_s)
        return rec


@dataclass
class Wait(Nemesis[Stage]):
    """The clients run on, nothing else happens: more writes between two backups, a settle time."""
    seconds: float

    def invoke(self, stage: Stage) -> None:
        time.sleep(self.seconds)


@dataclass
class Backup(Nemesis[Stage]):
    """A backup of the stage's VM (events.backup), full unless `incremental` or `differential`."""
    incremental: bool = False
    differential: bool = False
    consistent: bool = True
    copy_mib_s: int = COPY_MIB_S
    mode: str = MODES[0]

    def invoke(self, stage: Stage) -> BackupSet:
        return backup(stage.st, stage.vm, incremental=self.incremental, differential=self.differential,
                      consistent=self.consistent, copy_mib_s=self.copy_mib_s, mode=self.mode, events=stage.events)


@dataclass
class LogicalDump(Nemesis[Stage]):
    """The database's own logical dump (pg_dump, mariadb-dump) into `directory`, recorded."""
    directory: Path

    def invoke(self, stage: Stage) -> Dump:
        d = logical_dump(stage.st, stage.vm, self.directory)
        if stage.events:
            stage.events.write({"type": Rec.DUMP, "tool": d.tool, "t": d.t1, "t0": d.t0, "t1": d.t1, "vm": stage.vm,
                                "size_bytes": d.size_bytes, "sha256": d.sha256})
        return d


@dataclass
class Strike(Nemesis[Stage]):
    """One fault of events.faults, in its family's frame; a migration fault's target is `target`
    (another host if None)."""
    fault: str
    target: str | None = None
    cut_s: float = 5.0

    def require(self, stage: Stage) -> None:
        provider(stage.st).require("fault")

    def invoke(self, stage: Stage) -> FaultRecord:
        return inject(stage.st, stage.vm, self.target or another_host(stage.st, stage.vm), self.fault,
                      stage.events, cut_s=self.cut_s)


@dataclass
class DrainHost(Nemesis[Stage]):
    """Planned maintenance's first step (events.drain): every VM off `host`, the host recorded as
    drained until a ResumeHost; its moves and its window are recorded."""
    host: str
    tuning: MigrationTuning | None = None
    max_concurrent: int = 1

    def invoke(self, stage: Stage) -> Moves:
        return drain(stage.st, self.host, self.tuning, stage.events, self.max_concurrent)


@dataclass
class ResumeHost(Nemesis[Stage]):
    """The drained `host` takes VMs again: its own back (`how` back) or the busiest hosts' (rebalance)."""
    host: str
    tuning: MigrationTuning | None = None
    how: str = "back"
    max_concurrent: int = 1

    def invoke(self, stage: Stage) -> Moves:
        return RESUMES[self.how](stage.st, self.host, self.tuning, stage.events, self.max_concurrent)
