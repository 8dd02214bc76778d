"""The local lab provider: bring a topology up as namespaced hosts, tear it down without residue.

`up` records intent in lab state before creating each thing and is idempotent: a healthy lab is
left alone, a damaged or half-built one is cleaned and rebuilt. `down` finds what to remove from
the state file, from names (namespaces, cgroups) and from namespace membership (processes), so it
works after a crash, a SIGKILL mid-`up`, or with the state file gone.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from . import catalog, cgroups, hostd, netns, ownership, paths, remote, state
from .accel import choose_accel
from .addressing import bridge_mac, plan_addresses
from .credentials import ensure_db_password
from .errors import AvailLabError, LabError, UsageError
from .image import ensure_image
from .progress import step
from .state import HostState, LabState
from .topology import RemoteTopology, Topology
from .virt import Hypervisor

OUR_COMMANDS = ("libvirtd", "qemu-system-x86", "qemu-system-x86_64")


def host_daemon(h: HostState) -> hostd.HostDaemon:
    return hostd.HostDaemon(h.name, h.namespace, Path(h.directory), h.address)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the local lab needs root (network namespaces, cgroups, libvirtd); "
                       "run as root or use a remote topology")


def health(st: LabState) -> list[str]:
    """What is wrong with a lab that claims to be up (empty list = healthy)."""
    if remote.is_remote(st):
        return remote.health(st)
    problems = []
    present = set(netns.list_lab_namespaces(st.lab))
    for ns in [st.switch_namespace, st.client_namespace] + [h.namespace for h in st.hosts.values()]:
        if ns not in present:
            problems.append(f"namespace {ns} missing")
    for h in st.hosts.values():
        if not host_daemon(h).pid():
            problems.append(f"libvirtd of {h.name} not running")
    return problems


def residue(lab: str) -> list[str]:
    """Anything of this lab that exists on the machine (namespaces, cgroups, state)."""
    found = [f"namespace {n}" for n in netns.list_lab_namespaces(lab)]
    found += [f"cgroup {d}" for d in cgroups.lab_cgroup_dirs(lab)]
    if state.state_file(lab).exists():
        found.append(f"state {state.state_file(lab)}")
    return found


def up(topo: Topology | RemoteTopology) -> LabState:
    """Bring the lab up. A healthy lab is left alone; a lab that was up and lost its namespaces or
    daemons (a reboot, a kill) is rebuilt around its kept state, VMs brought back, disks and
    backups kept; only the leftovers of a `lab up` that never finished are cleaned first.
    Destroying a lab takes an explicit `lab down`."""
    with state.locked(topo.name):  # one `up`/`down`/`vm create` of a lab at a time
        return _up(topo)


def _up(topo: Topology | RemoteTopology) -> LabState:
    if isinstance(topo, RemoteTopology):
        return remote.up(topo)
    _require_root()
    lab = topo.name
    t0 = time.monotonic()
    existing = state.load(lab)
    if remote.is_remote(existing):
        raise LabError(f"lab {lab!r} is a remote cluster; `availlab --lab {lab} lab down` forgets it "
                       "(touching nothing on its hosts), or give the local lab another name")
    if existing and existing.status == "up":
        problems = health(existing)
        if problems and all(p.startswith("libvirtd of ") for p in problems):
            restart_daemons(existing)  # namespaces intact: repair in place, keep the VMs
            problems = health(existing)
        if not problems:
            step(f"lab {lab!r} is up ({len(existing.hosts)} hosts); nothing to do")
            return existing
        return rebuild(existing, problems)
    if existing and (existing.vms or _holds_backups(existing)):
        raise LabError(f"lab {lab!r} is {existing.status!r} and holds VMs or backups; not deleting them to "
                       f"start again: `availlab --lab {lab} lab down` destroys the lab (nothing was changed)")
    shared = Path(topo.storage.shared or state.lab_root(lab) / "shared")
    dr = Path(topo.storage.dr_site or state.lab_root(lab) / "dr-site")
    a, b = shared.resolve(), dr.resolve()
    if a == b or a in b.parents or b in a.parents:  # defaults and symlinks: parse time cannot see them
        raise LabError(f"storage.dr_site {dr} must be apart from the shared storage {shared}, "
                       "neither inside the other: `lab down` removes the shared storage's VM disks")
    parts = ownership.refuse_foreign_storage(shared, state.lab_root(lab), existing.owned if existing else [])
    plan = plan_addresses(topo)
    image = ensure_image()
    choice = choose_accel(topo.accel, image)  # may refuse (kvm asked, kvm broken): still nothing changed
    step(f"accelerator: {choice.accel.upper()} ({choice.reason})")
    if residue(lab):
        step(f"lab {lab!r} has leftovers of an earlier, unfinished run: cleaning them first")
        down(lab)
    root = paths.private_dir(state.lab_root(lab))
    st = LabState(lab=lab, status="creating", topology=topo.model_dump(mode="json"),
                  accel=asdict(choice), shared_dir=str(shared),
                  dr_dir=str(dr),
                  switch_namespace=netns.ns_name(lab, "sw"),
                  client_namespace=netns.ns_name(lab, "client"))
    for h in topo.hosts:
        st.hosts[h.name] = HostState(
            name=h.name, namespace=netns.ns_name(lab, h.name),
            directory=str(root / "hosts" / h.name), address=str(plan.hosts[h.name]),
            uri=f"qemu+unix:///system?socket={root / 'hosts' / h.name / 'run' / 'libvirt-sock'}")
    state.save(st)  # intent first: down can clean whatever the next lines manage to create
    try:
        _build(st, topo, parts)
        st.timings["lab_up_s"] = round(time.monotonic() - t0, 2)
        state.save(st)
    except BaseException:
        st.status = "failed"
        state.save(st)
        raise
    step(f"lab {lab!r} is up in {st.timings['lab_up_s']:.1f} s")
    return st


def _holds_backups(st: LabState) -> bool:
    backups = catalog.primary_dir(st.lab)
    return backups.is_dir() and any(backups.iterdir())


def _build(st: LabState, topo: Topology, parts: list[Path]) -> None:
    """Network, storage, daemons: what `up` creates and `rebuild` creates again. Each step is
    safe over what an earlier build left (directories, host UUIDs and the DB password are kept)."""
    plan = plan_addresses(topo)
    step(f"network: switch, client {plan.client}, {len(topo.hosts)} hosts on {plan.network}")
    netns.create(st.switch_namespace)
    netns.ensure_bridge(st.switch_namespace, netns.SWITCH_BRIDGE)
    netns.create(st.client_namespace)
    netns.connect(st.switch_namespace, "p-client", st.client_namespace,
                  address=str(plan.client), prefixlen=plan.prefixlen)
    for h in st.hosts.values():
        netns.create(h.namespace)
        netns.connect(st.switch_namespace, f"p-{h.name}", h.namespace,
                      peer_bridge=netns.HOST_BRIDGE, address=h.address, prefixlen=plan.prefixlen,
                      bridge_mac=bridge_mac(plan.hosts[h.name]))
    for d in [Path(st.shared_dir), *parts, Path(st.dr_dir)]:
        ownership.claim_dir(st, d)
    ensure_db_password(st.lab)
    for spec in topo.hosts:
        h = st.hosts[spec.name]
        d = host_daemon(h)
        cg = cgroups.create_host_cgroup(st.lab, h.name, spec.cores)
        h.host_uuid = hostd.write_config(d)
        hostd.seed_capabilities(d)
        state.save(st)
        step(f"host {h.name}: libvirtd in {h.namespace}, {spec.cores:g} core(s), {h.address}")
        h.pid = hostd.start(d)
        cg.add_pid(h.pid)
        state.save(st)
    seen: dict[str, str] = {}
    for h in st.hosts.values():
        with Hypervisor(h.name, h.uri) as hv:
            u = hv.host_uuid()
        if u in seen:
            raise LabError(f"hosts {seen[u]} and {h.name} report the same host UUID {u}; "
                           "libvirt cannot migrate between them")
        seen[u] = h.name
    hostd.save_capabilities(host_daemon(next(iter(st.hosts.values()))))
    st.lost_hosts.clear()
    st.status = "up"
    state.save(st)


def rebuild(st: LabState, problems: list[str]) -> LabState:
    """A lab that was up lost its namespaces or daemons (a reboot empties /run/netns): stop what
    is left of its processes, build its network and daemons again from its recorded topology,
    then start each VM from its kept definition and disk. Files are never removed here; a failed
    rebuild leaves the lab marked up-but-damaged, so the next `lab up` tries again."""
    t0 = time.monotonic()
    step(f"lab {st.lab!r} is damaged ({'; '.join(problems)}): rebuilding its network and daemons; "
         "VMs, disks and backups are kept")
    topo = Topology.model_validate(st.topology)
    removed: list[str] = []
    _stop_processes(st.lab, st, removed)
    for ns in netns.list_lab_namespaces(st.lab):
        netns.remove(ns)
    cgroups.remove_lab_cgroups(st.lab)
    _build(st, topo, [Path(st.shared_dir) / p for p in ownership.SHARED_PARTS])
    from . import vm  # vm builds on this module

    failed = []
    for name in list(st.vms):  # each on its own: one that cannot come back must not keep the rest down
        try:
            vm.revive(st.lab, name)
        except AvailLabError as exc:
            failed.append(f"{name}: {exc}")
    with state.update(st.lab) as st:
        st.timings["lab_rebuild_s"] = round(time.monotonic() - t0, 2)
    step(f"lab {st.lab!r} rebuilt in {st.timings['lab_rebuild_s']:.1f} s "
         f"({len(st.vms) - len(failed)} of {len(st.vms)} VM(s) back)")
    if failed:
        raise LabError(f"lab {st.lab!r} is up again, but not every VM came back (disks kept): " + "; ".join(failed))
    return st


def restart_daemons(st: LabState) -> None:
    """Start each host's libvirtd that is not running; recorded in the lab's current state (not
    the caller's copy, which may be older), and in `st` too, for the caller."""
    with state.update(st.lab) as fresh:
        for h in fresh.hosts.values():
            d = host_daemon(h)
            if not d.pid():
                step(f"host {h.name}: libvirtd is not running; restarting it")
                h.pid = hostd.start(d)
                cgroups.host_cgroup(st.lab, h.name).add_pid(h.pid)
            st.hosts[h.name].pid = h.pid
        fresh.lost_hosts.clear()  # every host is back, and a lost one empty: ordinary hosts again
    st.lost_hosts = []


def _domains_down(st: LabState, removed: list[str]) -> None:
    for h in st.hosts.values():
        if not host_daemon(h).pid():
            continue
        try:
            with Hypervisor(h.name, h.uri) as hv:
                for dom in hv.domains():
                    if hv.destroy(dom.name):
                        removed.append(f"VM {dom.name} on {h.name} (powered off)")
                    hv.undefine(dom.name)
        except AvailLabError as exc:
            step(f"host {h.name}: could not clean VMs through libvirt ({exc}); killing by PID")


def _lab_pids(lab: str, st: LabState | None) -> set[int]:
    """Candidate processes of the lab, by every route: namespace membership, cgroup membership,
    pid files, and the lab's state path on the command line (every process availlab starts for
    a lab carries it: the `ip netns exec` wrapper chain, libvirtd's --config, QEMU's disks)."""
    pids: set[int] = set()
    for ns in netns.list_lab_namespaces(lab):
        pids.update(netns.pids_in(ns))
    for d in cgroups.lab_cgroup_dirs(lab):
        pids.update(cgroups.HostCgroup(lab, d.name, (d,), 1).pids())
    if st:
        for h in st.hosts.values():
            pid = host_daemon(h).pid()
            if pid:
                pids.add(pid)
    marker = f"{state.lab_root(lab)}/"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and marker in hostd.cmdline(int(entry.name)):
            pids.add(int(entry.name))
    pids.discard(os.getpid())
    return {p for p in pids if not hostd.exited(p)}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _ours(pid: int, lab: str) -> bool:
    comm = _comm(pid)
    cmd = hostd.cmdline(pid)
    return (comm in OUR_COMMANDS or comm.startswith("qemu-system") or f"{state.lab_root(lab)}/" in cmd
            or any(m in cmd for m in ("availlab.sqlrunner", "availlab.workload")))


def _stop_processes(lab: str, st: LabState | None, removed: list[str]) -> None:
    """Stop the lab's processes by PID, guests before daemons, until a sweep finds none.

    Repeated because a `lab up` killed mid-way can leave a daemon still starting: its wrapper is
    found (and stopped) in one sweep, or the daemon it forked in the next.
    """
    spared: set[int] = set()
    for _ in range(10):
        pids = sorted(_lab_pids(lab, st) - spared,
                      key=lambda p: 0 if _comm(p).startswith("qemu") else 1)
        if not pids:
            return
        for pid in pids:
            if not _ours(pid, lab):
                step(f"leaving pid {pid} ({_comm(pid)}) alone: not started by availlab")
                spared.add(pid)
                continue
            what = f"{_comm(pid)} pid {pid}"
            if hostd.stop_pid(pid, what):
                removed.append(f"process {what}")
        time.sleep(0.2)
    raise LabError(f"lab {lab}: processes keep appearing: {sorted(_lab_pids(lab, st) - spared)}")


def down(lab: str) -> list[str]:
    """Remove everything of the lab; returns what was removed (also when nothing was up)."""
    with state.locked(lab):
        return _down(lab)


def _down(lab: str) -> list[str]:
    st = state.load(lab)
    if remote.is_remote(st):
        return remote.down(lab)
    _require_root()
    removed: list[str] = []
    if st:
        _domains_down(st, removed)
    _stop_processes(lab, st, removed)
    for ns in netns.list_lab_namespaces(lab):
        netns.remove(ns)
        removed.append(f"namespace {ns} (with its bridges and veths)")
    removed += [f"cgroup {d}" for d in cgroups.remove_lab_cgroups(lab)]
    root = state.lab_root(lab)
    kept = _keep_logs(lab, root)
    if kept:
        step(f"kept the lab's daemon and console logs in {kept}")
    if root.exists():
        dr = Path(st.dr_dir) if st and st.dr_dir else root / "dr-site"
        for child in sorted(root.iterdir()):
            if child == dr and any(dr.iterdir()):
                step(f"keeping DR site {dr}: it holds backups, which outlive the lab")
                continue
            kind = "directory" if child.is_dir() else "file"
            shutil.rmtree(child) if kind == "directory" else child.unlink()
            removed.append(f"{kind} {child}")
        if not any(root.iterdir()):
            root.rmdir()
    if st:
        ownership.remove_owned(st, root, removed)
    return removed


LOGS_KEPT = 100  # a test run alone creates a dozen labs; logs are kilobytes


def _keep_logs(lab: str, root: Path) -> Path | None:
    """Copy libvirtd and console logs out of the lab before it is deleted (the last LOGS_KEPT
    labs' logs are kept): a failure found later must not have lost its evidence."""
    logs = sorted(root.glob("hosts/*/log/*.log")) + sorted(root.glob("shared/logs/*.log"))
    logs = [p for p in logs if p.stat().st_size]
    if not logs:
        return None
    dest = paths.state_root() / ".logs" / f"{lab}-{time.strftime('%Y%m%dT%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for p in logs:
        name = f"{p.parent.parent.name}-{p.name}" if p.parent.name == "log" else p.name
        shutil.copy2(p, dest / name)
    for old in sorted((paths.state_root() / ".logs").iterdir())[:-LOGS_KEPT]:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def reachable(st: LabState, h: HostState) -> bool:
    """Worth connecting to: a local host whose daemon runs; a remote host always (a failure to
    connect is then an error worth seeing, not a stopped daemon of ours)."""
    return remote.is_remote(st) or bool(host_daemon(h).pid())


def require_all_hosts(st: LabState, what: str) -> None:
    """Refuse when a local host's daemon is down: it may still run a VM that a lookup through
    the others cannot see, and deleting or overwriting that VM's disk would corrupt it."""
    down = [h.name for h in st.hosts.values() if not reachable(st, h) and h.name not in st.lost_hosts]
    if down:
        raise LabError(f"{what}: the libvirtd of {', '.join(down)} is down, so what runs there is unknown; "
                       f"`availlab --lab {st.lab} lab up` repairs the lab")


def locate_vm(st: LabState, vm: str) -> tuple[str, str] | None:
    """(host, state) of the host where libvirt says the VM is defined/running, preferring running."""
    found = None
    for h in st.hosts.values():
        if not reachable(st, h):
            continue
        with Hypervisor(h.name, h.uri) as hv:
            for d in hv.domains():
                if d.name == vm:
                    if d.state == "running":
                        return h.name, d.state
                    found = (h.name, d.state)
    return found


def running_host(st: LabState, vm: str) -> str:
    """The host the VM runs on now; a usage error if it runs nowhere."""
    where = locate_vm(st, vm)
    if where is None or where[1] != "running":
        raise UsageError(f"vm: {vm!r} is not running on any host of lab {st.lab!r}")
    return where[0]


def running_vms(st: LabState, declared_only: bool = True) -> dict[str, str]:
    """{vm: host} for every running VM, in one pass over the hosts. On a remote cluster only
    the declared VMs, unless asked for all (to name what a plan must not touch)."""
    out = {}
    for h in st.hosts.values():
        if reachable(st, h):
            with Hypervisor(h.name, h.uri) as hv:
                out.update({d.name: h.name for d in hv.domains() if d.state == "running"})
    if declared_only and remote.is_remote(st):
        out = {v: h for v, h in out.items() if v in st.vms}
    return out


def status(lab: str) -> dict:
    st = state.load(lab)
    if st is None:
        return {"lab": lab, "status": "down", "hosts": [], "vms": []}
    hosts, vms = [], []
    for h in st.hosts.values():
        pid = None if remote.is_remote(st) else host_daemon(h).pid()
        entry = {"name": h.name, "address": h.address, "libvirtd_pid": pid,
                 "daemon": "running" if pid else "stopped", "uri": h.uri, "vms": []}
        if remote.is_remote(st):
            entry["daemon"] = "remote"
        if pid or remote.is_remote(st):
            try:
                with Hypervisor(h.name, h.uri) as hv:
                    for d in hv.domains():
                        if remote.is_remote(st) and d.name not in st.vms:
                            continue  # the cluster's other VMs are not the lab's to show
                        entry["vms"].append(d.name)
                        vms.append({"name": d.name, "host": h.name, "state": d.state,
                                    "address": st.vms[d.name].address if d.name in st.vms else None})
            except AvailLabError as exc:
                entry["daemon"] = f"unreachable: {exc}"
        hosts.append(entry)
    return {"lab": lab, "status": st.status, "accel": st.accel, "hosts": hosts, "vms": vms,
            "shared_dir": st.shared_dir, "dr_dir": st.dr_dir, "client_namespace": st.client_namespace,
            "problems": health(st) if st.status == "up" else []}
