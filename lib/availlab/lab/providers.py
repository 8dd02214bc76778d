"""The providers by kind, and the lab verbs every other module calls: each asks the lab's own
provider, so no caller ever branches on which kind of lab it has.

This module sits above both providers (they import only the protocol in `provider_api.py`), which is
what keeps the lab package free of import cycles.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import AvailLabError, LabError, StateError, UsageError, VMError
from ..progress import step
from . import identity, ownership, state
from .local import LocalProvider, sweep_by_name
from .provider_api import Provider
from .remote import RemoteProvider
from .state import HostState, LabState
from .topology import RemoteTopology, Topology

REGISTRY: dict[str, type[Provider]] = {p.kind: p for p in (LocalProvider, RemoteProvider)}


def providers() -> dict[str, type[Provider]]:
    return REGISTRY


def provider(st: LabState) -> Provider:
    try:
        return REGISTRY[st.provider](st)
    except KeyError:
        raise UsageError(f"lab {st.lab!r}: unknown provider {st.provider!r} in its state "
                         f"(known: {', '.join(REGISTRY)})") from None


def up(topo: Topology | RemoteTopology) -> LabState:
    """Bring the lab up. A healthy lab is left alone; a lab that was up and lost its namespaces or
    daemons (a reboot, a kill) is rebuilt around its kept state, disks and backups kept, its VMs
    listed in `to_revive` for `vm.create.revive_pending`; only the leftovers of a `lab up` that
    never finished are cleaned first. Destroying a lab takes an explicit `lab down`."""
    kind = "remote" if isinstance(topo, RemoteTopology) else "local"
    with state.locked(topo.name):  # one `up`/`down`/`vm create` of a lab at a time
        identity.prove(topo.name, "lab up")  # before anything: `up` may clean leftovers in it
        existing = state.load(topo.name)
        if existing and existing.provider != kind:  # a cluster may not take a local lab's name, nor the reverse
            other = provider(existing)
            raise LabError(f"lab {topo.name!r} is a {other.noun} ({existing.status}); `availlab --lab {topo.name} "
                           f"lab down` {other.down_means}, or give this {kind} lab another name")
        return REGISTRY[kind].up(topo)


def down(lab: str) -> list[str]:
    """Remove everything of the lab; returns what was removed (also when nothing was up)."""
    with state.locked(lab):
        identity.prove(lab, "lab down")  # a directory that is not a lab's is refused, untouched
        try:
            st = state.load(lab)
        except StateError as exc:  # what the lab made is still found by its name
            step(f"{exc}: removing what is named after lab {lab!r}")
            left = ownership.recorded_elsewhere(lab)
            removed = sweep_by_name(lab)
            if left:  # an unreadable record is no warrant to delete outside the lab's own directory
                step(f"left in place, as the lab's state could not be read: {', '.join(left)} "
                     "(directories it recorded as its own outside its state directory; remove them by hand)")
            return removed
        return provider(st).down(lab) if st else sweep_by_name(lab)  # no state: sweep what is left


# the lookups every module uses, answered by the lab's provider ------------------------------
def health(st: LabState) -> list[str]:
    return provider(st).health()


def reachable(st: LabState, h: HostState) -> bool:
    return provider(st).reachable(h)


def require_all_hosts(st: LabState, what: str) -> None:
    provider(st).require_all_hosts(what)


def locate_vm(st: LabState, vm: str) -> tuple[str, str] | None:
    return provider(st).locate(vm)


def host_of(st: LabState, vm: str) -> str:
    """The host that defines the VM, whatever its state: an error if none does."""
    where = locate_vm(st, vm)
    if where is None:
        raise VMError(f"VM {vm} is defined on no host of lab {st.lab}")
    return where[0]


def running_host(st: LabState, vm: str) -> str:
    return provider(st).running_host(vm)


def running_vms(st: LabState, declared_only: bool = True) -> dict[str, str]:
    return provider(st).running(owned_only=declared_only)


def status(lab: str) -> dict:
    st = state.load(lab)
    if st is None:
        return {"lab": lab, "status": "down", "hosts": [], "vms": []}
    return provider(st).status()


def guest_boot_id(st: LabState, vm: str) -> str | None:
    """The guest kernel's boot id (/proc/sys/kernel/random/boot_id), read through its agent: a
    guest that crashed and rebooted has another, whatever its database says. None where it cannot
    be read: a VM the lab does not own, or an agent that does not answer (a figure missing, named
    by the check, never a failed run)."""
    p = provider(st)
    if not p.owns(vm):
        return None
    try:
        with p.connect(p.running_host(vm)) as hv:
            return hv.read_guest_file(vm, "/proc/sys/kernel/random/boot_id") or None
    except (AvailLabError, ValueError, TypeError):
        return None


# What a Linux guest prints on its console when its kernel failed: a panic, a BUG or an oops, list
# corruption (seen: `list_add corruption`, then a panic, in a MariaDB guest at a TCG migration), a
# soft lockup, a hung task, an RCU stall. Anchored on the kernel's own timestamp: a database's or
# init's line is never taken for one.
KERNEL_CRASH = re.compile(r"^\[\s*\d+\.\d+\] .*(?:Kernel panic|kernel BUG at|\bBUG: |\bOops\b|general protection fault"
                          r"|list_(?:add|del) corruption|rcu.*detected stalls?|INFO: task .* blocked for more than)")


def kernel_crash_lines(text: str, limit: int = 3) -> list[str]:
    """The first `limit` lines of a guest console that say its kernel failed (timestamps dropped)."""
    hits = [line.split("] ", 1)[1].strip() for line in text.splitlines() if KERNEL_CRASH.match(line)]
    return hits[:limit]


def guest_console(st: LabState, vm: str) -> Path | None:
    """The console log the lab keeps of its own VM (appended across migrations); None for a VM it
    does not own or a lab that keeps none (a remote cluster's console is not ours to read)."""
    v = st.vms.get(vm)
    if v is None or not v.console_log or not provider(st).owns(vm):
        return None
    return Path(v.console_log)
