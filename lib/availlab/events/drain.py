"""Planned maintenance of one host, the seed article's steps: drain it (live-migrate every VM it
runs to the other hosts), patch or reboot it, resume it (bring those VMs back).

What a drain moved is recorded in the lab's state (`drained`), so `resume` brings back exactly
those VMs, also from another process or after a failed step, and nothing else: a VM created on
another host meanwhile stays where it is. A drained host is no migration's target (live_migrate
refuses it, so no plan, tip or `vm migrate` moves a VM there) until it is resumed; `vm create` and
restores still may place a VM there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import AvailLabError, UsageError
from ..history import JsonlWriter, now_ns
from ..lab import state
from ..lab.providers import provider, running_vms
from ..lab.state import LabState
from ..progress import step
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


def _targets(st: LabState, host: str) -> list[str]:
    site = _site(st, host)
    return [h for h, hs in st.hosts.items() if h != host and _site(st, h) == site
            and h not in st.lost_hosts and h not in st.drained and provider(st).reachable(hs)]


def _move(st: LabState, vm: str, target: str, tuning: MigrationTuning | None, events: JsonlWriter | None,
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


def drain(st: LabState, host: str, tuning: MigrationTuning | None = None,
          events: JsonlWriter | None = None) -> Moves:
    """Move every declared VM off `host`, each to the other host of its site running the fewest."""
    _check_host(st, host)
    prov = provider(st)
    if not prov.reachable(st.hosts[host]):
        raise UsageError(f"host drain {host}: its libvirtd is down, so what runs there is unknown")
    foreign = prov.foreign_vms({host})
    if foreign:  # they would stay: the host would not be empty, and the drain would prove nothing
        raise UsageError(f"host drain {host}: it also runs VMs availlab may not move ({', '.join(foreign)})")
    with state.update(st.lab) as fresh:  # chosen and marked at once: two drains cannot swap VMs
        targets = _targets(fresh, host)
        if not targets:
            raise UsageError(f"host drain {host}: no other host of site {_site(fresh, host)!r} that is up and "
                             f"not drained can take its VMs")
        fresh.drained.setdefault(host, [])
        st.drained = fresh.drained
    moves = Moves(host)
    placed = running_vms(st)
    with prov.connect(st.hosts[host]) as hv:  # paused or shut-off VMs are not live-migrated: said
        moves.skipped = sorted(f"{d.name} ({d.state})" for d in hv.domains()
                               if d.state != "running" and prov.owns(d.name))
    for vm in sorted(v for v, h in placed.items() if h == host):
        now = [t for t in _targets(state.load(st.lab) or st, host) if t in targets]  # one drained meanwhile
        load = {t: sum(1 for h in placed.values() if h == t) for t in now}
        rec = _move(st, vm, min(now, key=lambda t: (load[t], t)), tuning, events) if now else \
            _not_started(st, vm, "?", "no host left to take it")
        moves.records.append(rec)
        if not rec.ok:  # stop: the operator decides; what moved so far is recorded for resume
            break
        placed[vm] = rec.target
        with state.update(st.lab) as fresh:
            fresh.drained.setdefault(host, [])
            if vm not in fresh.drained[host]:
                fresh.drained[host].append(vm)
            st.drained = fresh.drained
    step(f"host {host}: " + ("drained" if moves.ok else "drain STOPPED at a failed migration")
         + f"; moved {sum(r.ok for r in moves.records)} VM(s)"
         + (f"; not running, left there: {', '.join(moves.skipped)}" if moves.skipped else ""))
    return moves


def resume(st: LabState, host: str, tuning: MigrationTuning | None = None,
           events: JsonlWriter | None = None) -> Moves:
    """Bring back every VM the drain of `host` moved, then take the host into placement again.
    Not while a drain of the same host still runs (its VMs would be missed)."""
    _check_host(st, host)
    fresh = state.load(st.lab) or st
    if host not in fresh.drained:
        raise UsageError(f"host resume {host}: it is not drained (drained: {', '.join(fresh.drained) or 'none'})")
    provider(st).require_all_hosts(f"host resume {host}")  # a VM on a host we cannot ask is not "gone"
    moves = Moves(host)
    placed = running_vms(st)
    for vm in list(fresh.drained[host]):
        if vm not in fresh.vms:  # deleted meanwhile: nothing to bring back
            moves.skipped.append(f"{vm} (deleted)")
        elif vm not in placed:  # paused or shut off somewhere: not forgotten, the host stays drained
            moves.records.append(_not_started(st, vm, host, f"{vm} does not run; start it, then resume again"))
            break
        elif placed[vm] != host:
            rec = _move(st, vm, host, tuning, events, allow_drained=True)
            moves.records.append(rec)
            if not rec.ok:
                break
        with state.update(st.lab) as latest:
            latest.drained[host] = [v for v in latest.drained.get(host, []) if v != vm]
    if moves.ok:
        with state.update(st.lab) as latest:
            latest.drained.pop(host, None)
            st.drained = latest.drained
    step(f"host {host}: " + ("resumed" if moves.ok else "resume STOPPED; the host stays drained, run resume again")
         + f"; {sum(r.ok for r in moves.records)} VM(s) back"
         + (f"; {', '.join(moves.skipped)}" if moves.skipped else ""))
    return moves
