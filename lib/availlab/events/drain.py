"""Planned maintenance of one host, the seed article's steps: drain it (live-migrate every VM it
runs to the other hosts), patch or reboot it, resume it (bring those VMs back), or rebalance it
(take it into placement again and move VMs from the busiest hosts of its site to it until no
host runs more than one VM more than it).

What a drain moved is recorded in the lab's state (`drained`), so `resume` brings back exactly
those VMs, also from another process or after a failed step, and nothing else: a VM created on
another host meanwhile stays where it is. A drained host is no migration's target (live_migrate
refuses it, so no plan, tip or `vm migrate` moves a VM there) until it is resumed; `vm create` and
restores still may place a VM there.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..errors import AvailLabError, UsageError
from ..history import RecordSink, now_ns
from ..lab import state
from ..lab.providers import provider, running_vms
from ..lab.state import LabState
from ..progress import step
from ..records import Rec
from .migration import MigrationRecord, MigrationTuning, live_migrate


@dataclass
class Moves:
    host: str
    records: list[MigrationRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # VMs not moved, and why (not running, deleted)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.records)


def _check_host(st: LabState, host: str) -> None:
    if host not in st.hosts:
        raise UsageError(f"host: unknown host {host!r} (hosts: {', '.join(st.hosts)})")
    if host in st.lost_hosts:
        raise UsageError(f"host: {host} was lost (a DR drill emptied it); nothing runs there")


def _site(st: LabState, host: str) -> str:
    """A VM is not drained to the DR site: that is a disaster's restore, not maintenance."""
    hosts = st.topology.get("hosts", []) if isinstance(st.topology, dict) else []
    return next((h.get("site", "primary") for h in hosts if isinstance(h, dict) and h.get("name") == host),
                "primary")


def targets(st: LabState, host: str) -> list[str]:
    """The hosts a drain of `host` may move its VMs to: its site's others that are up and not
    drained or lost (runbook 10's drain plan shows its moves from these too)."""
    site = _site(st, host)
    return [h for h, hs in st.hosts.items() if h != host and _site(st, h) == site
            and h not in st.lost_hosts and h not in st.drained and provider(st).reachable(hs)]


def least_loaded(placed: dict[str, str], candidates: list[str]) -> str:
    """Where a drain sends the next VM: the candidate running the fewest (`placed`: VM -> host,
    the VMs already sent counted where they go), the first by name on a tie."""
    return min(candidates, key=lambda t: (sum(1 for h in placed.values() if h == t), t))


def _recorded(events: RecordSink | None, kind: str, t0: int, moves: Moves) -> Moves:
    """The drain's (or resume's) own record: a window over its moves, for the rollout's checks and
    swimlanes and for anyone reading a `host drain --events` file."""
    if events is not None:
        t1 = now_ns()
        events.write({"type": kind, "t": t1, "t0": t0, "t1": t1, "host": moves.host, "ok": moves.ok,
                      "moves": [{"vm": r.vm, "source": r.source, "target": r.target, "ok": r.ok, "error": r.error}
                                for r in moves.records]})
    return moves


def _move(st: LabState, vm: str, target: str, tuning: MigrationTuning | None, events: RecordSink | None,
          allow_drained: bool = False) -> MigrationRecord:
    """One migration; one that could not even start is a failed record too, so what moved
    before it is still reported."""
    try:
        return live_migrate(st, vm, target, tuning, events=events, allow_drained=allow_drained)
    except AvailLabError as exc:
        return _not_started(st, vm, target, str(exc))


def _not_started(st: LabState, vm: str, target: str, why: str) -> MigrationRecord:
    """A migration that never began, recorded like a failed one (source: where the VM is now)."""
    where = provider(st).locate(vm)
    t = now_ns()
    return MigrationRecord(vm, where[0] if where else "?", target, t, t, False, error=why)


def bounded(vms: list[str], max_concurrent: int, start: Callable[[str], Callable[[], MigrationRecord]],
            done: Callable[[MigrationRecord], None]) -> list[MigrationRecord]:
    """Each VM's migration, at most `max_concurrent` at once (Nova's max_concurrent_live_migrations,
    Hyper-V's live migrations per host): `start(vm)` chooses in this thread (a target chosen for
    one in flight counts for the next) and returns the migration to run; `done(record)` is told
    here too, in the order they end. After a failed one no other starts (those in flight end, as
    the operator would see them end); the records come in the VMs' order."""
    if max_concurrent < 1:
        raise UsageError(f"max_concurrent: {max_concurrent} must be 1 or more")
    records: dict[str, MigrationRecord] = {}
    queue = list(vms)
    with ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="migrate") as pool:
        running: dict[Future[MigrationRecord], str] = {}
        while queue or running:
            while queue and len(running) < max_concurrent and all(r.ok for r in records.values()):
                vm = queue.pop(0)
                running[pool.submit(start(vm))] = vm
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                records[running.pop(f)] = rec = f.result()
                done(rec)
    return [records[v] for v in vms if v in records]


def drain(st: LabState, host: str, tuning: MigrationTuning | None = None,
          events: RecordSink | None = None, max_concurrent: int = 1) -> Moves:
    """Move every declared VM off `host`, each to the other host of its site running the fewest
    (VMs in flight counted where they go), at most `max_concurrent` at once."""
    _check_host(st, host)
    prov = provider(st)
    if not prov.reachable(st.hosts[host]):
        raise UsageError(f"host drain {host}: its libvirtd is down, so what runs there is unknown")
    foreign = prov.foreign_vms({host})
    if foreign:  # they would stay: the host would not be empty, and the drain would prove nothing
        raise UsageError(f"host drain {host}: it also runs VMs availlab may not move ({', '.join(foreign)})")
    with state.update(st.lab) as fresh:  # chosen and marked at once: two drains cannot swap VMs
        takers = targets(fresh, host)
        if not takers:
            raise UsageError(f"host drain {host}: no other host of site {_site(fresh, host)!r} that is up and "
                             f"not drained can take its VMs")
        fresh.drained.setdefault(host, [])
        st.drained = fresh.drained
    t0 = now_ns()
    moves = Moves(host)
    placed = running_vms(st)
    with prov.connect(st.hosts[host]) as hv:  # paused or shut-off VMs are not live-migrated: said
        moves.skipped = sorted(f"{d.name} ({d.state})" for d in hv.domains()
                               if d.state != "running" and prov.owns(d.name))

    def start(vm: str) -> Callable[[], MigrationRecord]:
        now = [t for t in targets(state.load(st.lab) or st, host) if t in takers]  # one drained meanwhile
        if not now:
            rec = _not_started(st, vm, "?", "no host left to take it")
            return lambda: rec
        target = placed[vm] = least_loaded(placed, now)
        return lambda: _move(st, vm, target, tuning, events)

    def moved(rec: MigrationRecord) -> None:
        if not rec.ok:  # what moved so far is recorded for resume; the operator decides the rest
            placed[rec.vm] = rec.source
            return
        with state.update(st.lab) as fresh:
            fresh.drained.setdefault(host, [])
            if rec.vm not in fresh.drained[host]:
                fresh.drained[host].append(rec.vm)
            st.drained = fresh.drained

    moves.records = bounded(sorted(v for v, h in placed.items() if h == host), max_concurrent, start, moved)
    step(f"host {host}: " + ("drained" if moves.ok else "drain STOPPED at a failed migration")
         + f"; moved {sum(r.ok for r in moves.records)} VM(s)"
         + (f"; not running, left there: {', '.join(moves.skipped)}" if moves.skipped else ""))
    return _recorded(events, Rec.HOST_DRAIN, t0, moves)


def _resumable(st: LabState, host: str) -> LabState:
    """The lab's current state, once `host` is known to be drained and every host answers (a VM on
    a host we cannot ask is not "gone"): what either way of resuming needs first."""
    _check_host(st, host)
    fresh = state.load(st.lab) or st
    if host not in fresh.drained:
        raise UsageError(f"host resume {host}: it is not drained (drained: {', '.join(fresh.drained) or 'none'})")
    provider(st).require_all_hosts(f"host resume {host}")
    return fresh


def resume(st: LabState, host: str, tuning: MigrationTuning | None = None,
           events: RecordSink | None = None, max_concurrent: int = 1) -> Moves:
    """Bring back every VM the drain of `host` moved (at most `max_concurrent` at once), then take
    the host into placement again. Not while a drain of the same host still runs (its VMs would
    be missed)."""
    fresh = _resumable(st, host)
    t0 = now_ns()
    moves = Moves(host)
    placed = running_vms(st)

    def forget(vm: str) -> None:
        with state.update(st.lab) as latest:
            latest.drained[host] = [v for v in latest.drained.get(host, []) if v != vm]

    def start(vm: str) -> Callable[[], MigrationRecord]:
        if vm not in placed:  # paused or shut off somewhere: not forgotten, the host stays drained
            rec = _not_started(st, vm, host, f"{vm} does not run; start it, then resume again")
            return lambda: rec
        return lambda: _move(st, vm, host, tuning, events, allow_drained=True)

    todo = []
    for vm in list(fresh.drained[host]):
        if vm not in fresh.vms:  # deleted meanwhile: nothing to bring back
            moves.skipped.append(f"{vm} (deleted)")
            forget(vm)
        elif placed.get(vm) == host:
            forget(vm)
        else:
            todo.append(vm)
    moves.records = bounded(todo, max_concurrent, start, lambda rec: forget(rec.vm) if rec.ok else None)
    if moves.ok:
        with state.update(st.lab) as latest:
            latest.drained.pop(host, None)
            st.drained = latest.drained
    step(f"host {host}: " + ("resumed" if moves.ok else "resume STOPPED; the host stays drained, run resume again")
         + f"; {sum(r.ok for r in moves.records)} VM(s) back"
         + (f"; {', '.join(moves.skipped)}" if moves.skipped else ""))
    return _recorded(events, Rec.HOST_RESUME, t0, moves)


def balance_plan(placed: dict[str, str], hosts: list[str], host: str) -> list[tuple[str, str]]:
    """(vm, from) moves that fill `host` from the busiest of `hosts` until no host runs more than
    one VM more than it; the busiest host first (by name on a tie), its VMs by name."""
    load = {h: sorted(v for v, at in placed.items() if at == h) for h in hosts}
    load.setdefault(host, [])
    moves: list[tuple[str, str]] = []
    while True:
        src = max(sorted(load), key=lambda h: len(load[h]))
        if len(load[src]) - len(load[host]) <= 1:
            return moves
        vm = load[src].pop(0)
        load[host].append(vm)
        moves.append((vm, src))


def rebalance(st: LabState, host: str, tuning: MigrationTuning | None = None,
              events: RecordSink | None = None, max_concurrent: int = 1) -> Moves:
    """Take a drained `host` into placement again and fill it from the busiest hosts of its site
    (balance_plan), at most `max_concurrent` migrations at once: the VMs its drain moved stay
    where they went unless the balance moves them."""
    _resumable(st, host)
    prov = provider(st)
    with state.update(st.lab) as latest:  # a target again: the balance moves VMs to it
        latest.drained.pop(host, None)
        st.drained = latest.drained
    peers = [host, *(t for t in targets(st, host))]
    placed = {v: h for v, h in running_vms(st).items() if h in peers and prov.owns(v)}
    plan = dict(balance_plan(placed, peers, host))
    t0 = now_ns()
    moves = Moves(host)
    moves.records = bounded(sorted(plan), max_concurrent, lambda vm: lambda: _move(st, vm, host, tuning, events),
                            lambda rec: None)
    step(f"host {host}: rebalanced; " + (f"{sum(r.ok for r in moves.records)} VM(s) moved to it"
                                         if moves.ok else "a migration FAILED; the host takes VMs again"))
    return _recorded(events, Rec.HOST_RESUME, t0, moves)


RESUMES = {"back": resume, "rebalance": rebalance}  # how a maintained host takes VMs again
