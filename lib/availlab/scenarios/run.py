"""A run of a scenario: its folder, its history and events files, and the steps between them.

plan -> act (workload + events) -> record (history.jsonl, events.jsonl) -> check -> report. The
runbook calls these one per cell; `migrate_under_load` keeps the workload's start and stop in one
call so no exception between them can leave client processes running, and its moves are nemeses
(events.ops) in the plan's order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .. import paths
from ..checks import Results
from ..clients.workload import WorkloadSpec, under_load
from ..errors import UsageError
from ..events.dirtier import MemoryDirtier
from ..events.drain import Moves
from ..events.drain import targets as drain_targets
from ..events.migration import MigrationRecord, MigrationTuning, bring_home
from ..events.nemesis import Nemeses, Stage
from ..history import JsonlWriter, clock_anchor, read_jsonl
from ..lab import providers
from ..lab.providers import provider
from ..records import RunFiles
from ..report import Artifacts, write_run
from .lab_view import Lab
from .plans import Move, Plan, make_plan


@dataclass
class Run:
    """One run's folder: everything it records goes here, so the folder is the evidence."""
    runbook: str
    directory: Path
    parameters: dict
    started: float = field(default_factory=time.time)

    @property
    def history_path(self) -> Path:
        return RunFiles(self.directory).history

    @property
    def events_path(self) -> Path:
        return RunFiles(self.directory).events

    def _repr_markdown_(self) -> str:
        return f"Run folder: `{self.directory}`"


def open_run(runbook: str, run_dir: str | Path | None, parameters: dict) -> Run:
    """Create the run folder and anchor its clock first, so every later record can be placed in
    wall time."""
    if run_dir:  # made by `availlab run` for this run, or named by the user
        d = Path(run_dir)
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = paths.new_run_dir(paths.runs_root() / runbook)
        paths.point_latest(d)
    run = Run(runbook, d, dict(parameters))
    with JsonlWriter(run.events_path) as ev:
        ev.write({**clock_anchor(), "runbook": runbook})
    return run


def plan_migrations(lab: Lab, vm: str, plan: str, migrations: int, target: str = "",
                    settle_s: float = 2.0, hold_s: float = 5.0) -> list[Move]:
    """The moves of a plan, checked against the lab as it is now; a drain that would also move a VM
    the lab does not own is refused."""
    st = lab.st
    hosts = list(st.hosts)
    if plan == "drain":  # the host drain's: a drain that left someone's VM on the host would prove nothing
        here = providers.host_of(st, vm)
        others = provider(st).foreign_vms({here})
        if others:
            raise UsageError(f"plan: drain of {here} refused: it also runs {', '.join(others)}, "
                             f"which lab {lab.name!r} does not declare and availlab never moves")
        hosts = [here, *drain_targets(st, here)]
        if len(hosts) < 2:
            raise UsageError(f"plan: drain of {here}: no other host of its site that is up and not drained "
                             "can take its VMs")
    return make_plan(plan, providers.running_vms(st), hosts, vm, migrations=migrations,
                     target=target or None, settle_s=settle_s, hold_s=hold_s)


@dataclass
class LoadRun:
    """What happened under load, for the notebook to show before the checks judge it."""
    migrations: list[MigrationRecord]
    client_ops: int

    def _repr_markdown_(self) -> str:
        rows = "\n".join(
            f"| {i + 1} | {m.vm} | {m.source} → {m.target} | {'ok' if m.ok else 'FAILED: ' + m.error} "
            f"| {m.downtime_ms if m.downtime_ms is not None else 'n/a'} | {m.total_ms} |"
            for i, m in enumerate(self.migrations))
        return ("| # | VM | move | result | hypervisor downtime (ms) | total (ms) |\n"
                "|---|---|---|---|---|---|\n" + rows + f"\n\n{self.client_ops} client operations recorded.")


def migrate_under_load(run: Run, lab: Lab, vm: str, moves: list[Move], spec: WorkloadSpec,
                       tuning: MigrationTuning, warmup_s: float = 3.0, cooldown_s: float = 3.0,
                       dirty_memory_mib: int = 0) -> LoadRun:
    """The clients (and the guest memory dirtier, if asked) under the plan's moves, one nemesis
    each: warm-up, the moves, cool-down, the final read. Migrations that fail are recorded and the
    plan goes on."""
    st = lab.st
    with JsonlWriter(run.history_path) as hist, JsonlWriter(run.events_path) as ev:
        hist.write(clock_anchor())
        plan = moves if isinstance(moves, Plan) else Plan(moves)
        nemeses = Nemeses(Stage(st=st, vm=vm, events=ev), [  # a dirtier is refused here, before any client starts
            *([MemoryDirtier(dirty_memory_mib)] if dirty_memory_mib else []), *plan.nemeses(tuning)])
        with under_load(st, vm, spec, hist, warmup_s=warmup_s, cooldown_s=cooldown_s, nemeses=nemeses):
            done = nemeses.invoke()
        records = [m for r in done for m in (r.records if isinstance(r, Moves) else [r])
                   if isinstance(m, MigrationRecord)]
        n = hist.count
    if tuning.copy_storage:  # after the evidence: the lab as the run found it, disk on shared storage
        bring_home(st, vm)
    return LoadRun(records, n)


class Judged(Protocol):
    """What a runbook's model offers (params.Runbook): its one judge of a run's evidence."""

    def judge(self, history: list[dict], events: list[dict]) -> Results: ...


def judge(run: Run, config: Judged) -> Results:
    """The run judged by its runbook's own checks (`config.judge`, the one judge each runbook
    model declares, also for a run cut short), over its evidence read once from disk: the
    history is saved before any checker runs."""
    return config.judge(read_jsonl(run.history_path), read_jsonl(run.events_path))


def write_report(run: Run, results: Results) -> Artifacts:
    """results.json, junit.xml and report.html from what is on disk, not from memory, with the
    SLO the results carry: the one they were judged against."""
    return write_run(run.directory, run.runbook, results, read_jsonl(run.history_path),
                     read_jsonl(run.events_path), run.parameters, run.started)


class VerdictError(AssertionError):
    """Raised by the last runbook cell so papermill marks the notebook failed."""


def require_pass(results: Results, artifacts: Artifacts | None = None) -> str:
    """The last cell: fails the notebook (and `availlab run`) unless the verdict is PASS, saying
    which checks and which kind failed."""
    where = f" (report: {artifacts.report})" if artifacts else ""
    if results.verdict != "PASS":
        why = "; ".join(f"{c.name} ({c.kind}): {c.message}" for c in results.checks if c.valid is not True)
        by = results.verdict_by_kind
        raise VerdictError(f"verdict {results.verdict} (outcomes {by['outcome']}, timings {by['timing']}): "
                           f"{why}{where}")
    return f"verdict PASS{where}"
