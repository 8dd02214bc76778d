"""Planned maintenance of one host, the seed article's steps: drain it (live-migrate every VM it
runs to the other hosts), patch or reboot it, resume it (bring those VMs back).

What a drain moved is recorded in the lab's state (`drained`), so `resume` brings back exactly
those VMs, also from another process or after a failed step, and nothing else: a VM created on
another host meanwhile stays where it is. A drained host receives no VM from a drain of another
host nor from a PRO tip (scenarios/tips.py) until it is resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import MigrationError, UsageError
from ..history import JsonlWriter
from ..lab import state
from ..lab.providers import provider, running_vms
from ..lab.state import LabState
from ..progress import step
from .migration import MigrationRecord, MigrationTuning, live_migrate


@dataclass
class Moves:
    host: str
    records: list[MigrationRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # VMs that no longer run anywhere (resume)

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


def drain(st: LabState, host: str, tuning: MigrationTuning | None = None,
          events: JsonlWriter | None = None) -> Moves:
    """Move every declared VM off `host`, each to the other host of its site running the fewest."""
    _check_host(st, host)
    foreign = provider(st).foreign_vms({host})
    if foreign:  # they would stay: the host would not be empty, and the drain would prove nothing
        raise UsageError(f"host drain {host}: it also runs VMs availlab may not move ({', '.join(foreign)})")
    targets = _targets(st, host)
    if not targets:
        raise UsageError(f"host drain {host}: no other host of site {_site(st, host)!r} that is up and not "
                         f"drained can take its VMs")
    with state.update(st.lab) as fresh:  # drained from now on: nothing is placed there meanwhile
        fresh.drained.setdefault(host, [])
        st.drained = fresh.drained
    moves = Moves(host)
    placed = running_vms(st)
    for vm in sorted(v for v, h in placed.items() if h == host):
        load = {t: sum(1 for h in placed.values() if h == t) for t in targets}
        target = min(targets, key=lambda t: (load[t], t))
        rec = live_migrate(st, vm, target, tuning, events=events)
        moves.records.append(rec)
        if not rec.ok:  # stop: the operator decides; what moved so far is recorded for resume
            break
        placed[vm] = target
        with state.update(st.lab) as fresh:
            fresh.drained.setdefault(host, [])
            if vm not in fresh.drained[host]:
                fresh.drained[host].append(vm)
            st.drained = fresh.drained
    step(f"host {host}: " + ("drained" if moves.ok else "drain STOPPED at a failed migration")
         + f"; moved {sum(r.ok for r in moves.records)} VM(s)")
    return moves


def resume(st: LabState, host: str, tuning: MigrationTuning | None = None,
           events: JsonlWriter | None = None) -> Moves:
    """Bring back every VM the drain of `host` moved, then take the host into placement again."""
    _check_host(st, host)
    if host not in st.drained:
        raise UsageError(f"host resume {host}: it is not drained (drained: {', '.join(st.drained) or 'none'})")
    moves = Moves(host)
    placed = running_vms(st)
    for vm in list(st.drained[host]):
        if vm not in placed:
            moves.skipped.append(vm)
        elif placed[vm] != host:
            rec = live_migrate(st, vm, host, tuning, events=events)
            moves.records.append(rec)
            if not rec.ok:
                raise MigrationError(f"host resume {host}: {vm} did not come back ({rec.error}); "
                                     f"the host stays drained, run resume again")
        with state.update(st.lab) as fresh:
            fresh.drained[host] = [v for v in fresh.drained.get(host, []) if v != vm]
    with state.update(st.lab) as fresh:
        fresh.drained.pop(host, None)
        st.drained = fresh.drained
    step(f"host {host}: resumed; {len(moves.records)} VM(s) back"
         + (f", {', '.join(moves.skipped)} no longer running" if moves.skipped else ""))
    return moves
