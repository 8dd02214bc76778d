"""The remote provider: a real cluster of existing libvirt hosts, reached by URI.

`lab up` on a remote topology creates nothing. It checks what a migration will need and records
what it found: every host answers (libvirt and hypervisor versions); no two hosts are one
(distinct host UUIDs: libvirt refuses to migrate to "itself"); the shared storage pool is active
on every host at the same path; every declared VM runs on exactly one host, its CPU can be given
by every host's hypervisor (compareHypervisorCPU), and each of its disks is visible from all
hosts through the pool (without a pool and without allow_unsafe_migration that last one is left
to libvirt at migration time, and recorded as not checked). Host CPUs compared with each other
(compareCPU) are recorded, not judged: hosts may differ as long as every VM's CPU fits all.
`lab down` forgets the lab's state and touches nothing on the hosts.
"""

from __future__ import annotations

import os
import time
from itertools import permutations
from pathlib import Path

from ..errors import AvailLabError, LabError, UsageError, VMError
from ..progress import step
from . import identity, state
from .hypervisor import shared_uuid
from .provider_api import Provider
from .state import HostState, LabState, VMState
from .topology import RemoteTopology
from .virt import Hypervisor


def _connect_all(topo: RemoteTopology) -> dict[str, Hypervisor]:
    conns: dict[str, Hypervisor] = {}
    try:
        for h in topo.hosts:
            try:
                conns[h.name] = Hypervisor(h.name, h.uri, guard=_look_only)
            except AvailLabError as exc:
                raise LabError(f"host {h.name}: cannot reach libvirt at {h.uri}: {exc}") from None
    except BaseException:
        for c in conns.values():
            c.close()
        raise
    return conns


def _look_only(domain: str, action: str) -> None:
    """`lab up` on a remote cluster checks and records: any change to a domain is a bug, refused."""
    raise UsageError(f"{action} {domain!r}: `lab up` on a remote cluster changes nothing")


def _check_uuids(topo: RemoteTopology, uuids: dict[str, str]) -> None:
    twins = shared_uuid((h.name, uuids[h.name]) for h in topo.hosts)
    if twins:
        a, b = topo.host(twins[0]), topo.host(twins[1])
        raise LabError(f"hosts {a.name} ({a.uri}) and {b.name} ({b.uri}) report the same host "
                       f"UUID {twins[2]}: they are one host under two names, or clones that share a UUID "
                       "(set host_uuid in libvirtd.conf on one of them); libvirt cannot migrate "
                       "between them")


def _host_cpus(conns: dict[str, Hypervisor]) -> dict[str, str]:
    """Each host's CPU compared on every other (compareCPU): recorded, not judged. Hosts may
    differ; what must hold is that every VM's CPU is available everywhere (_check_vm_cpus)."""
    cpus = {name: hv.host_cpu_xml() for name, hv in conns.items()}
    return {f"{a} -> {b}": conns[b].compare_cpu(cpus[a]) for a, b in permutations(conns, 2) if cpus[a]}


def _check_vm_cpus(conns: dict[str, Hypervisor], vms: dict[str, VMState]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for name, v in vms.items():
        xml = conns[v.host].domain_xml(name)
        found[name] = {h: hv.compare_vm_cpu(xml) for h, hv in conns.items()}
        bad = sorted(h for h, verdict in found[name].items() if verdict == "incompatible")
        if bad:
            raise LabError(f"vms.{name}: its CPU model is not available on {', '.join(bad)}, so it could not "
                           "migrate there; give it a CPU model every host has (virsh cpu-baseline)")
    return found


def _check_storage(topo: RemoteTopology, conns: dict[str, Hypervisor]) -> dict:
    pool = topo.storage.pool
    if not pool:
        return {}
    targets = {name: hv.pool_target(pool) for name, hv in conns.items()}
    missing = sorted(n for n, t in targets.items() if t is None)
    if missing:
        raise LabError(f"storage.pool: {', '.join(missing)} have no active storage pool {pool!r}")
    if len(set(targets.values())) > 1:
        raise LabError(f"storage.pool: {pool!r} has different paths on the hosts: {targets}")
    return {"pool": pool, "path": next(iter(targets.values()))}


def check_password_file(name: str, path: Path) -> str:
    """A password file that exists and only its owner reads (option or field `name`, for the error)."""
    p = path.expanduser()
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise UsageError(f"{name}: cannot read {p}: {exc.strerror}") from None
    if mode & 0o077:
        raise UsageError(f"{name}: {p} is readable by others (mode {mode & 0o777:o}); chmod 600 {p}")
    return str(p)


def _find_vms(topo: RemoteTopology, conns: dict[str, Hypervisor]) -> tuple[dict[str, VMState], dict]:
    vms, disks = {}, {}
    running = {n: {d.name: d for d in hv.domains() if d.state == "running"} for n, hv in conns.items()}
    check_disks = bool(topo.vms) and bool(topo.storage.pool or topo.storage.allow_unsafe_migration)
    if check_disks:
        for hv in conns.values():
            hv.refresh_pools()
    for spec in topo.vms:
        pw = check_password_file(f"vms.{spec.name}.password_file", spec.password_file)
        where = [n for n in conns if spec.name in running[n]]
        if len(where) != 1:
            raise LabError(f"vms.{spec.name}: " + ("runs on no host" if not where else
                                                   f"runs on several hosts ({', '.join(where)})"))
        hv = conns[where[0]]
        paths_ = hv.disk_paths(spec.name)
        visible_from: list[str] | None = None  # None: not checked, libvirt judges at migration time
        if check_disks:
            blind = {n: [d for d in paths_ if not other.volume_visible(d)] for n, other in conns.items()}
            blind = {n: d for n, d in blind.items() if d}
            if blind:
                raise LabError(f"vms.{spec.name}: disks not visible from every host through a libvirt storage "
                               f"pool: {blind}; define the shared pool on every host"
                               + (" (allow_unsafe_migration needs this proof)"
                                  if topo.storage.allow_unsafe_migration else ""))
            visible_from = sorted(conns)
        uuid = running[where[0]][spec.name].uuid
        vms[spec.name] = VMState(name=spec.name, address=spec.server, host=where[0],
                                 disk=paths_[0] if paths_ else "", config_disk="", console_log="", uuid=uuid,
                                 created_at=time.time(), database=spec.database,
                                 endpoint={"port": spec.port, "driver": spec.driver, "odbc_dsn": spec.odbc_dsn,
                                           "user": spec.user, "dbname": spec.dbname, "password_file": pw})
        disks[spec.name] = {"host": where[0], "disks": paths_, "visible_from": visible_from}
    return vms, disks


def up(topo: RemoteTopology) -> LabState:
    t0 = time.monotonic()
    if topo.client_namespace and not Path(f"/run/netns/{topo.client_namespace}").exists():
        raise UsageError(f"client_namespace: no network namespace {topo.client_namespace!r}")
    conns = _connect_all(topo)
    try:
        versions = {n: hv.versions() for n, hv in conns.items()}
        uuids = {n: hv.host_uuid() for n, hv in conns.items()}
        step("hosts answer: " + ", ".join(f"{n} (libvirt {v['libvirt']}, hypervisor {v['hypervisor']})"
                                         for n, v in versions.items()))
        _check_uuids(topo, uuids)
        cpus = _host_cpus(conns)
        storage = _check_storage(topo, conns)
        vms, disks = _find_vms(topo, conns)
        vm_cpus = _check_vm_cpus(conns, vms)
    finally:
        for c in conns.values():
            c.close()
    identity.claim(topo.name)
    st = LabState(lab=topo.name, status="up", topology=topo.model_dump(mode="json"), provider="remote",
                  accel={"accel": "remote", "reason": "the hosts' own hypervisors"},
                  client_namespace=topo.client_namespace, vms=vms,
                  facts={"versions": versions, "host_uuids": uuids, "cpu_compare": cpus, "vm_cpu": vm_cpus,
                         "storage": storage,
                         "vm_disks": disks, "unsafe_migration": topo.storage.allow_unsafe_migration})
    for h in topo.hosts:
        st.hosts[h.name] = HostState(name=h.name, namespace="", directory="", address=h.migration_address or "",
                                     uri=h.uri, host_uuid=uuids[h.name], peer_uri=h.peer_uri or "")
    old = state.load(topo.name)  # a host drained for maintenance stays drained across `lab up`
    if old is not None:
        st.drained = {h: vms for h, vms in old.drained.items() if h in st.hosts}
    st.timings["lab_up_s"] = round(time.monotonic() - t0, 2)
    state.save(st)
    step(f"remote cluster {topo.name!r}: {len(st.hosts)} hosts checked, {len(vms)} VMs found; nothing created")
    return st


def down(lab: str) -> list[str]:
    """Forget the lab; the hosts, their VMs and storage are the cluster's, not ours."""
    removed = []
    if state.state_file(lab).exists():
        state.state_file(lab).unlink()
        removed.append(f"state {state.state_file(lab)} (the hosts were not touched)")
    identity.release(lab)
    return removed


def password(st: LabState, vm: str) -> str:
    """A declared VM's database password: from its 0600 file, or (a watch's `--password-env`) from
    the environment, read when needed and never written."""
    e = st.vms[vm].endpoint
    if e.get("password_env"):
        return os.environ.get(e["password_env"], "")
    return Path(e["password_file"]).read_text().strip()


_THEIRS = "use your cluster's tools"


class RemoteProvider(Provider):
    """Someone else's cluster: only declared VMs change, and only by migration (the guard's
    `actions`); nothing is created, deleted, stopped, restored or broken."""

    kind = "remote"
    noun = "remote cluster"
    down_means = "forgets it (touching nothing on its hosts)"
    unsafe_hint = (" -- libvirt does not recognise this storage as shared: put the disks on a shared filesystem "
                   "it knows (NFS, GFS2, OCFS2, CephFS...) or a network disk, or set "
                   "storage.allow_unsafe_migration in the topology if the storage IS shared")
    refusals = {
        "create_vm": (UsageError, "lab {lab!r} is a remote cluster: availlab creates no VMs there; declare the "
                                  "existing ones under vms: in its topology and run `availlab lab up` again"),
        "delete_vm": (UsageError, "lab {lab!r} is a remote cluster: availlab creates no VMs there and deletes "
                                  "none; " + _THEIRS),
        "revive_vm": (VMError, "VM {vm!r} does not run; availlab starts or resumes nothing on a remote cluster: "
                               + _THEIRS),
        "restore": (UsageError, "lab {lab!r} is a remote cluster: availlab restores nothing there; " + _THEIRS),
        "backup": (UsageError, "backup: host-level backups run on the local lab only for now (the set would be "
                               "written on the remote host's own filesystem); on a real cluster use your backup "
                               "product and check the VSS writer, see docs/real-cluster.md"),
        "backup_site": (UsageError, "lab {lab!r} is a remote cluster: availlab keeps no backups for it; "
                                    "use your cluster's backup tools"),
        "guest_process": (UsageError, "{what}: availlab runs no memory dirtier, CPU hog or other process inside "
                                      "{vm!r}, a VM of the remote cluster {lab!r}; drive load with the clients"),
        "fault": (UsageError, "faults: only on the local lab (they kill daemons and pull cables); "
                              "a real cluster's hosts are not ours to break"),
        "copy_storage": (UsageError, "copy_storage: not on a remote cluster (availlab does not create disks there)"),
        "rebuild": (LabError, "remote cluster {lab!r}: {problems}; fix it and run "
                              "`availlab lab up --config <its topology>` again"),
        "host_maintenance": (UsageError, "action {what}: a remote cluster's hosts are not availlab's to restart; "
                                         "a rollout there drains and resumes only (action none)"),
    }

    # a declared VM is someone's production VM too: it is migrated, never stopped or undefined
    actions = frozenset({"migrate", "set max downtime", "switch to post-copy", "abort job"})

    def owns(self, domain: str) -> bool:
        return domain in self.st.vms  # the allow-list: the topology's declared VMs

    def same_domain(self, domain: str, uuid: str) -> None:
        """A declared name is not enough: the domain must be the one `lab up` saw (its UUID), not
        one recreated under that name since (someone else's VM, or a copy)."""
        seen = self.st.vms[domain].uuid if domain in self.st.vms else ""
        if seen and uuid.lower() != seen.lower():
            raise UsageError(f"{domain!r} now has UUID {uuid}, not {seen} as `lab up` recorded: it was recreated "
                             f"or replaced since; availlab changes only the domain it checked. Run `availlab "
                             f"lab up --config <topology>` again if this one is the VM to use")

    def reachable(self, h: HostState) -> bool:
        return True  # a failure to connect is an error worth seeing, not a stopped daemon of ours

    def daemon(self, h: HostState) -> tuple[int | None, str]:
        return None, "remote"

    def health(self) -> list[str]:
        problems = []
        for h in self.st.hosts.values():
            try:
                with self.connect(h) as hv:
                    hv.host_uuid()
            except AvailLabError as exc:
                problems.append(f"host {h.name} unreachable: {exc}")
        return problems

    def unsafe_migration(self, vm: str, copy_storage: bool) -> bool:
        # libvirt itself decides whether the storage is shared (NFS, GFS2, CephFS...); UNSAFE only
        # where the user said so and `lab up` saw every disk from every host
        if copy_storage:
            self.require("copy_storage")
        return bool(self.st.facts.get("unsafe_migration"))

    def diagnostics(self, source: str, target: str) -> dict:
        return {"provider": "remote", "note": "see the hosts' own libvirtd logs"}

    def describe(self) -> str:
        st = self.st
        return (f"remote cluster {st.lab}: {len(st.hosts)} hosts ({', '.join(st.hosts)}) checked, "
                f"VMs {', '.join(st.vms) or 'none'}; facts recorded in {state.state_file(st.lab)}")

    up = staticmethod(up)
    down = staticmethod(down)
