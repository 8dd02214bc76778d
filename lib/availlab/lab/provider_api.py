"""Where a lab's VMs run and what availlab may change there: one protocol, two providers.

The local lab (`lab.LocalProvider`) is availlab's own: its namespaced hosts run nothing else, so
every domain on them is the lab's and every action is offered. A remote cluster
(`remote.RemoteProvider`) is someone else's, perhaps their production: availlab changes only the
VMs its topology declares, and creates, deletes, restores, breaks and runs inside guests nothing.

Callers never ask which provider a lab has. They ask the provider: `require("restore")` refuses
what it does not offer, with its own reason; `connect(host)` hands out a libvirt connection that
refuses to change any domain outside the allow-list, whoever asks (so a caller that forgot to
check cannot touch a production VM); `owns(domain)` says what listings may show.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import AvailLabError, LabError, UsageError
from .hypervisor import HypervisorAPI
from .state import HostState, LabState
from .virt import Hypervisor

# Everything a provider may decline. A caller names one of these; a new action that changes
# something gets a name here, and each provider decides.
CAPABILITIES = frozenset({
    "create_vm",      # define and boot a new VM (vm create, start-vm tips)
    "delete_vm",      # power off, undefine, remove its disk
    "revive_vm",      # start or resume a VM that does not run
    "restore",        # define a VM from a backup set
    "backup",         # host-level backup written by availlab
    "backup_site",    # keep backup sets and list them
    "guest_process",  # run a process of ours inside a guest (memory dirtier, CPU hog)
    "fault",          # kill daemons, pull cables, fill disks
    "copy_storage",   # migrate a disk by creating its copy on the target
    "rebuild",        # build the lab's hosts again after a reboot
    "host_maintenance",  # restart an emptied host's hypervisor daemon (a rolling maintenance's action)
})


class Provider:
    kind: ClassVar[str]
    noun: ClassVar[str]        # "local lab", "remote cluster": how messages name it
    down_means: ClassVar[str]  # what `lab down` does to it
    unsafe_hint: ClassVar[str] = ""  # added to libvirt's refusal of a migration without UNSAFE
    # capability -> (exception class, message); the message may use {lab} and the caller's fields
    refusals: ClassVar[dict[str, tuple[type[AvailLabError], str]]] = {}

    def __init__(self, st: LabState):
        self.st = st

    # its life: made from a topology, removed by name (static: no lab exists before up) ---------
    @staticmethod
    def up(topo: Any) -> LabState:
        """Bring the lab of `topo` up (a local lab: build it; a cluster: check and record it)."""
        raise NotImplementedError

    @staticmethod
    def down(lab: str) -> list[str]:
        """Remove (or forget) the lab; what was removed, one line each."""
        raise NotImplementedError

    # what it offers ---------------------------------------------------------------------------
    def offers(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")  # a programming error, not input
        return capability not in self.refusals

    def require(self, capability: str, **fields: object) -> None:
        """Refuse, before anything changes, an action this provider does not offer."""
        if not self.offers(capability):
            exc, message = self.refusals[capability]
            raise exc(message.format(lab=self.st.lab, **fields))

    # the allow-list ---------------------------------------------------------------------------
    def owns(self, domain: str) -> bool:
        """May availlab change this domain? Listings show only these."""
        raise NotImplementedError

    # what may be done to a domain it owns (None: anything)
    actions: ClassVar[frozenset[str] | None] = None

    def may_change(self, domain: str, action: str) -> None:
        """The connection's guard (virt.Hypervisor): asked before every change to a domain."""
        if not self.owns(domain):
            declared = ", ".join(sorted(self.st.vms)) or "none"
            raise UsageError(f"{action}: {domain!r} is not declared in {self.noun} {self.st.lab!r} "
                             f"(declared: {declared}); availlab changes only declared VMs")
        if self.actions is not None and action not in self.actions:
            raise UsageError(f"{action}: not done to {domain!r} on {self.noun} {self.st.lab!r}; availlab only "
                             f"{', '.join(sorted(self.actions))} there")

    def connect(self, host: HostState | str) -> HypervisorAPI:
        """A connection whose every change to a domain is checked against the allow-list."""
        h = self.st.hosts[host] if isinstance(host, str) else host
        return Hypervisor(h.name, h.uri, guard=self.may_change, identity=self.same_domain)

    def observe(self, host: HostState | str) -> HypervisorAPI:
        """A read-only connection (libvirt's own: the daemon refuses any change on it), for a
        watcher of what someone else's tool does (events/watchers.py)."""
        h = self.st.hosts[host] if isinstance(host, str) else host
        return Hypervisor(h.name, h.uri, read_only=True)

    def same_domain(self, domain: str, uuid: str) -> None:
        """The connection's identity check: asked with the UUID of a domain about to change."""

    # what runs where --------------------------------------------------------------------------
    def reachable(self, h: HostState) -> bool:
        """Worth connecting to (a local daemon of ours that runs; a remote host always)."""
        raise NotImplementedError

    def host_command(self, h: HostState) -> list[str]:
        """The argv prefix that runs a command where the host's libvirtd and QEMU see storage
        (a backup's reader writes the set from there)."""
        raise NotImplementedError

    def daemon(self, h: HostState) -> tuple[int | None, str]:
        """(pid, how it is) of the host's libvirtd, for `lab status`."""
        raise NotImplementedError

    def health(self) -> list[str]:
        """What is wrong with a lab that claims to be up (empty list = healthy)."""
        raise NotImplementedError

    def require_all_hosts(self, what: str) -> None:
        """Refuse when a host cannot be asked: it may still run a VM that a lookup through the
        others cannot see, and deleting or overwriting that VM's disk would corrupt it."""
        down = [h.name for h in self.st.hosts.values() if not self.reachable(h) and h.name not in self.st.lost_hosts]
        if down:
            raise LabError(f"{what}: the libvirtd of {', '.join(down)} is down, so what runs there is unknown; "
                           f"`availlab --lab {self.st.lab} lab up` repairs the lab")

    def locate(self, vm: str) -> tuple[str, str] | None:
        """(host, state) where libvirt has the VM defined, preferring where it runs."""
        found = None
        for h in self.st.hosts.values():
            if not self.reachable(h):
                continue
            with self.connect(h) as hv:
                for d in hv.domains():
                    if d.name == vm:
                        if d.state == "running":
                            return h.name, d.state
                        found = (h.name, d.state)
        return found

    def running_host(self, vm: str) -> str:
        """The host the VM runs on now; a usage error if it runs nowhere."""
        where = self.locate(vm)
        if where is None or where[1] != "running":
            raise UsageError(f"vm: {vm!r} is not running on any host of lab {self.st.lab!r}")
        return where[0]

    def running(self, owned_only: bool = True) -> dict[str, str]:
        """{vm: host} for every running VM, in one pass over the reachable hosts."""
        out: dict[str, str] = {}
        for h in self.st.hosts.values():
            if self.reachable(h):
                with self.connect(h) as hv:
                    out.update({d.name: h.name for d in hv.domains() if d.state == "running"})
        return {v: h for v, h in out.items() if self.owns(v)} if owned_only else out

    def foreign_vms(self, hosts: set[str]) -> list[str]:
        """Running VMs on these hosts that availlab may not change: a plan that would have to
        move them (a drain) proves nothing and is refused, naming them."""
        return sorted(v for v, h in self.running(owned_only=False).items() if h in hosts and not self.owns(v))

    def status(self) -> dict:
        """`lab status`: hosts, their daemons and the VMs listings may show."""
        st = self.st
        hosts, vms = [], []
        for h in st.hosts.values():
            pid, how = self.daemon(h)
            entry: dict[str, Any] = {"name": h.name, "address": h.address, "libvirtd_pid": pid, "daemon": how, "uri": h.uri, "vms": []}
            if self.reachable(h):
                try:
                    with self.connect(h) as hv:
                        for d in hv.domains():
                            if not self.owns(d.name):
                                continue  # a cluster's other VMs are not the lab's to show
                            entry["vms"].append(d.name)
                            vms.append({"name": d.name, "host": h.name, "state": d.state,
                                        "address": st.vms[d.name].address if d.name in st.vms else None})
                except AvailLabError as exc:
                    entry["daemon"] = f"unreachable: {exc}"
            hosts.append(entry)
        return {"lab": st.lab, "status": st.status, "accel": st.accel, "hosts": hosts, "vms": vms,
                "shared_dir": st.shared_dir, "dr_dir": st.dr_dir, "client_namespace": st.client_namespace,
                "problems": self.health() if st.status == "up" else []}

    # migrations -------------------------------------------------------------------------------
    def unsafe_migration(self, vm: str, copy_storage: bool) -> bool:
        """Whether to pass VIR_MIGRATE_UNSAFE (libvirt cannot see that the disks are shared)."""
        raise NotImplementedError

    def diagnostics(self, source: str, target: str) -> dict:
        """What the network and both daemons looked like right after a failed migration."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for `lab up`."""
        raise NotImplementedError
