"""Patch Tuesday for a whole cluster (runbook 60, `availlab maintenance`): every host in turn
drained, really maintained, refilled, while several database VMs serve their own clients.

The seed's planned downtime, host after host as Cluster-Aware Updating does it: "move all the VMs
from the host that needs maintenance to another host, perform whatever maintenance the host
requires, then migrate the database server VMs back". Each VM's evidence is a run of its own in
`<run>/<vm>/` (its clients' history.jsonl, and its own migrations in events.jsonl, which its probe
follows), so runbook 10's checks judge each VM unchanged. The rollout's records (a host drained,
found empty, maintained, resumed; the plan and how far it got) and every migration go to the
run's own events.jsonl, for the rollout's checks and the swimlanes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks import SLO, Results
from ..checks.rolling import check_rolling
from ..clients.workload import WorkloadSpec, under_load
from ..errors import AvailLabError, UsageError
from ..events.drain import RESUMES, Moves, drain
from ..events.maintenance import Action
from ..events.maintenance import action as maintenance_action
from ..events.migration import MigrationTuning
from ..events.nemesis import Nemeses, Nemesis, Stage
from ..history import JsonlWriter, RecordSink, clock_anchor, now_ns, read_jsonl
from ..lab import providers
from ..lab.providers import provider
from ..lab.state import LabState
from ..progress import step
from ..records import Rec, RunFiles
from ..report import Artifacts
from ..report.rollout import write_rollout
from .lab_view import Lab
from .run import Run

ON_FAILURE = ("stop", "continue")


class _ToEachVm:
    """events.jsonl of the run, and each record about a VM also in that VM's own folder."""

    def __init__(self, top: JsonlWriter, own: dict[str, JsonlWriter]) -> None:
        self.top, self.own = top, own

    def write(self, rec: dict[str, Any]) -> None:
        self.top.write(rec)
        mine = self.own.get(str(rec.get("vm")))
        if mine is not None:
            mine.write(rec)


@dataclass
class HostRound:
    """One host's turn: what its drain moved, what still ran on it, its maintenance, its resume."""
    host: str
    drained: Moves | None = None
    still_running: list[str] = field(default_factory=list)
    maintenance: dict[str, Any] | None = None
    resumed: Moves | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Rollout:
    order: list[str]
    rounds: list[HostRound]
    not_done: list[str]
    planned: dict[str, str]  # where each VM ran before the rollout: where it must be after
    where: dict[str, str]

    def _repr_markdown_(self) -> str:
        def moves(m: Moves | None) -> str:
            return ", ".join(f"{r.vm}→{r.target}" + ("" if r.ok else " FAILED") for r in m.records) if m else "–"
        rows = "\n".join(f"| {r.host} | {moves(r.drained)} | {', '.join(r.still_running) or 'yes'} | "
                         f"{(r.maintenance or {}).get('done', '–')} | {moves(r.resumed)} | {r.error or 'ok'} |"
                         for r in self.rounds)
        return ("| host | drained (VM→host) | empty | maintenance | resumed | result |\n|---|---|---|---|---|---|\n"
                + rows + (f"\n\n**Not done:** {', '.join(self.not_done)}" if self.not_done else "")
                + "\n\nEach VM now runs on: " + ", ".join(f"{v} {h}" for v, h in sorted(self.where.items())))


def host_order(placed: dict[str, str], hosts: list[str], order: list[str]) -> list[str]:
    """The hosts in the order given, or, by default, fewest VMs first (the least to move first)."""
    if order:
        unknown = [h for h in order if h not in hosts]
        if unknown or len(set(order)) != len(order):
            raise UsageError(f"order: {order} must name each of the lab's hosts at most once (hosts: {', '.join(hosts)})")
        return list(order)
    return sorted(hosts, key=lambda h: (sum(1 for v in placed.values() if v == h), h))


def _window(ev: RecordSink, kind: str, t0: int, host: str, **fields: Any) -> None:
    t1 = now_ns()
    ev.write({"type": kind, "t": t1, "t0": t0, "t1": t1, "host": host, **fields})


@dataclass
class MaintainHost(Nemesis[Stage]):
    """One host's turn of a rollout, as a nemesis: drained, proven empty, maintained, resumed
    (maintain_host); a refusal before anything moved (a daemon down, no target) is its failure."""
    host: str
    act: Action
    tuning: MigrationTuning | None
    max_concurrent: int = 1
    resume: str = "back"
    label: str = "maintenance"

    def invoke(self, stage: Stage) -> HostRound:
        step(f"{self.label}: host {self.host} ({self.act.name})")
        assert stage.events is not None, "a rollout records every round"
        try:
            r = maintain_host(stage.st, self.host, self.act, self.tuning, stage.events, self.max_concurrent, self.resume)
        except AvailLabError as exc:
            r = HostRound(self.host, error=str(exc))
        if not r.ok:
            step(f"maintenance of {self.host} FAILED: {r.error}")
        return r


def maintain_host(st: LabState, host: str, act: Action, tuning: MigrationTuning | None, ev: RecordSink,
                  max_concurrent: int = 1, resume: str = "back") -> HostRound:
    """Drain `host`, prove it empty, maintain it, resume it; stops at the first step that fails
    (a host not proven empty is never maintained; a host not maintained is left drained)."""
    r = HostRound(host)
    r.drained = drain(st, host, tuning, ev, max_concurrent)  # each records its own window
    if not r.drained.ok:
        r.error = f"drain of {host} stopped: " + next(m.error for m in r.drained.records if not m.ok)
        return r
    with provider(st).connect(st.hosts[host]) as hv:
        r.still_running = sorted(f"{d.name} ({d.state})" for d in hv.domains() if d.state in ("running", "paused"))
    ev.write({"type": Rec.HOST_EMPTY, "t": now_ns(), "host": host, "running": r.still_running})
    if r.still_running:
        r.error = f"{host} is not empty after its drain ({', '.join(r.still_running)}): not maintained"
        return r
    t0 = now_ns()
    try:
        r.maintenance = act.perform(st, host)
    except AvailLabError as exc:
        r.maintenance, r.error = {"error": str(exc)}, f"maintenance of {host} failed: {exc}"
    _window(ev, Rec.MAINTENANCE, t0, host, action=act.name, ok=not r.error, **(r.maintenance or {}))
    if r.error:
        return r
    r.resumed = RESUMES[resume](st, host, tuning, ev, max_concurrent)
    if not r.resumed.ok:
        r.error = f"resume of {host} stopped: " + next(m.error for m in r.resumed.records if not m.ok)
    return r


def rolling_maintenance(run: Run, lab: Lab, vms: list[str], spec: WorkloadSpec, tuning: MigrationTuning | None,
                        *, order: list[str] | None = None, action: str = "restart-daemon",
                        on_failure: str = "stop", max_concurrent: int = 1, resume: str = "back",
                        warmup_s: float = 2.0, cooldown_s: float = 2.0) -> Rollout:
    """Clients on every VM of `vms`; then each host in turn maintained (maintain_host); then the
    clients' cool-down and each VM's final read. A round that fails stops the rollout
    (`on_failure` stop: no further host is drained) or is recorded and the next host goes on."""
    st = lab.st
    if on_failure not in ON_FAILURE:
        raise UsageError(f"on_failure: {on_failure!r} is not one of {', '.join(ON_FAILURE)}")
    if resume not in RESUMES:
        raise UsageError(f"resume: {resume!r} is not one of {', '.join(RESUMES)}")
    act = maintenance_action(action, st)  # refused before any client starts
    placed = providers.running_vms(st)
    missing = [v for v in vms if v not in placed]
    if missing:
        raise UsageError(f"vms: {', '.join(missing)} not running in lab {lab.name!r}")
    planned = {v: placed[v] for v in vms}
    hosts = host_order(placed, [h for h in st.hosts if h not in st.lost_hosts], order or [])
    with contextlib.ExitStack() as stack:
        top = stack.enter_context(JsonlWriter(run.events_path))
        own = {v: stack.enter_context(JsonlWriter(RunFiles(_vm_dir(run, v)).events)) for v in vms}
        hist = {v: stack.enter_context(JsonlWriter(RunFiles(_vm_dir(run, v)).history)) for v in vms}
        for v in vms:
            hist[v].write(clock_anchor())
            own[v].write(clock_anchor())
        ev = _ToEachVm(top, own)
        for v in vms:  # each VM's clients warm up in turn; the first ones run on meanwhile
            stack.enter_context(under_load(st, v, spec, hist[v], warmup_s=warmup_s, cooldown_s=cooldown_s))
        nemeses = stack.enter_context(Nemeses(Stage(st=st, vm="", events=ev), [  # hosts, not one VM
            MaintainHost(host, act, tuning, max_concurrent, resume, f"maintenance {i + 1}/{len(hosts)}")
            for i, host in enumerate(hosts)]))
        rounds = nemeses.invoke(stop=lambda r: not r.ok and on_failure == "stop")
        not_done = hosts[len(rounds):]
        where = {v: h for v, h in providers.running_vms(st).items() if v in planned}
        top.write({"type": Rec.ROLLOUT, "t": now_ns(), "order": hosts, "action": act.name, "on_failure": on_failure,
                   "max_concurrent": max_concurrent, "resume": resume,
                   "done": [r.host for r in rounds if r.ok], "failed": {r.host: r.error for r in rounds if not r.ok},
                   "not_done": not_done, "planned": planned, "where": where})
    step(f"rollout: {sum(r.ok for r in rounds)}/{len(hosts)} host(s) maintained"
         + (f"; not done: {', '.join(not_done)}" if not_done else ""))
    return Rollout(hosts, rounds, not_done, planned, where)


@dataclass
class Judged:
    """The run's verdict and each VM's own, with the evidence they were judged from."""
    results: Results
    per_vm: dict[str, tuple[Results, list[dict[str, Any]], list[dict[str, Any]]]]
    events: list[dict[str, Any]]  # the run's own (the rollout's records), as judged

    def _repr_markdown_(self) -> str:
        vms = "\n".join(f"| {vm} | **{r.verdict}** | {r.figures.get('ops')} | {r.figures.get('failed_ops')} | "
                        f"{r.figures.get('lost_writes')} | {r.figures.get('longest_blackout_ms')} |"
                        for vm, (r, _, _) in self.per_vm.items())
        return (self.results._repr_markdown_() + "\n\n| VM | verdict | ops | failed | lost | longest blackout (ms) |"
                "\n|---|---|---|---|---|---|\n" + vms)


def judge_rollout(run: Run, vms: list[str], slo: SLO) -> Judged:
    """Each VM judged over its own folder's evidence, the rollout over the run's events (read once
    from disk: the evidence is saved before any check runs)."""
    files = {vm: RunFiles(_vm_dir(run, vm)) for vm in vms}
    evidence = {vm: (read_jsonl(f.history), read_jsonl(f.events)) for vm, f in files.items()}
    events = read_jsonl(run.events_path)
    results, mine = check_rolling(events, evidence, slo)
    return Judged(results, {vm: (mine[vm], *evidence[vm]) for vm in vms}, events)


def write_rollout_report(run: Run, judged: Judged) -> Artifacts:
    return write_rollout(run.directory, run.runbook, judged.results, judged.per_vm, judged.events,
                         run.parameters, run.started)


def report_cut_short(run_dir: Path, config: Any) -> bool:  # a params_rolling.RollingMaintenance
    """A rollout cut short (Ctrl-C, a kernel that died): each VM judged over what its folder holds,
    the rollout over the run's events (its missing rollout record says it did not end), every
    verdict INCOMPLETE. False when no VM's clients had started: nothing to judge."""
    vms = [vm for vm in config.vms if RunFiles(run_dir / vm).history.exists()]
    if not vms:
        return False
    run = Run(config.NOTEBOOK, run_dir, {**config.parameters, "interrupted": True},
              started=RunFiles(run_dir / vms[0]).history.stat().st_mtime)
    judged = judge_rollout(run, vms, config.slo)
    for res in [judged.results, *(r for r, _, _ in judged.per_vm.values())]:
        res.verdict = "INCOMPLETE"
    write_rollout_report(run, judged)
    return True


def _vm_dir(run: Run, vm: str) -> Path:
    d = Path(run.directory) / vm
    d.mkdir(parents=True, exist_ok=True)
    return d
