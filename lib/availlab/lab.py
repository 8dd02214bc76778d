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

from . import cgroups, hostd, netns, paths, remote, state
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
        step(f"lab {lab!r} is damaged ({'; '.join(problems)}): tearing down and rebuilding")
        down(lab)
    elif residue(lab):
        step(f"lab {lab!r} has leftovers of an earlier, unfinished run: cleaning them first")
        down(lab)

    image = ensure_image()
    choice = choose_accel(topo.accel, image)
    step(f"accelerator: {choice.accel.upper()} ({choice.reason})")
    plan = plan_addresses(topo)
    root = paths.private_dir(state.lab_root(lab))
    storage = topo.storage
    st = LabState(lab=lab, status="creating", topology=topo.model_dump(mode="json"),
                  accel=asdict(choice),
                  shared_dir=str(storage.shared or root / "shared"),
                  dr_dir=str(storage.dr_site or root / "dr-site"),
                  switch_namespace=netns.ns_name(lab, "sw"),
                  client_namespace=netns.ns_name(lab, "client"))
    shared_parts = _refuse_foreign_storage(Path(st.shared_dir))
    for h in topo.hosts:
        st.hosts[h.name] = HostState(
            name=h.name, namespace=netns.ns_name(lab, h.name),
            directory=str(root / "hosts" / h.name), address=str(plan.hosts[h.name]),
            uri=f"qemu+unix:///system?socket={root / 'hosts' / h.name / 'run' / 'libvirt-sock'}")
    state.save(st)  # intent first: down can clean whatever the next lines manage to create
    try:
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
        for d in [Path(st.shared_dir), *shared_parts, Path(st.dr_dir)]:
            _claim_dir(st, d)
        ensure_db_password(lab)
        for spec in topo.hosts:
            h = st.hosts[spec.name]
            d = host_daemon(h)
            cg = cgroups.create_host_cgroup(lab, h.name, spec.cores)
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
        st.status = "up"
        st.timings["lab_up_s"] = round(time.monotonic() - t0, 2)
        state.save(st)
    except BaseException:
        st.status = "failed"
        state.save(st)
        raise
    step(f"lab {lab!r} is up in {st.timings['lab_up_s']:.1f} s")
    return st


SHARED_PARTS = ("vms", "logs")  # what the lab keeps in shared storage: VM disks, console logs


def _refuse_foreign_storage(shared: Path) -> list[Path]:
    """The lab's directories in shared storage, refused (before anything is created) when one
    already exists that this lab did not create: `lab down` removes what the lab made, so it
    must never find the user's own `vms/` there and take it for the lab's."""
    parts = [shared / p for p in SHARED_PARTS]
    foreign = [str(p) for p in parts if p.exists() or p.is_symlink()]
    if foreign:
        raise LabError(f"storage.shared: {', '.join(foreign)} already exist(s) and were not made by this lab; "
                       "point storage.shared at another directory or move them away")
    return parts


def _claim_dir(st: LabState, path: Path) -> None:
    """Create a directory the lab will own, recorded before it exists (intent first); an existing
    directory is used as it is (its mode kept) and never recorded, so `lab down` leaves it."""
    if path.is_dir():
        return
    if path.exists() or path.is_symlink():
        raise LabError(f"{path} exists and is not a directory")
    if str(path) not in st.owned:
        st.owned.append(str(path))
        state.save(st)
    paths.private_dir(path)


def _remove_owned(st: LabState, root: Path, removed: list[str]) -> None:
    """Remove what the lab created outside its own directory: its parts of shared storage whole,
    the shared and DR directories only when nothing is left in them (a DR site holds backups,
    which outlive the lab; anything else there was put by someone else)."""
    for d in reversed(st.owned):
        p = Path(d)
        if not p.is_dir() or p.is_symlink() or p == root or root in p.resolve().parents:
            continue
        if p.name in SHARED_PARTS and p.parent == Path(st.shared_dir):
            shutil.rmtree(p)
            removed.append(f"directory {p}")
        elif not any(p.iterdir()):
            p.rmdir()
            removed.append(f"directory {p}")
        else:
            step(f"keeping {p}: it holds files the lab did not put there" if str(p) != st.dr_dir
                 else f"keeping DR site {p}: it holds backups, which outlive the lab")


def restart_daemons(st: LabState) -> None:
    for h in st.hosts.values():
        d = host_daemon(h)
        if not d.pid():
            step(f"host {h.name}: libvirtd is not running; restarting it")
            h.pid = hostd.start(d)
            cgroups.host_cgroup(st.lab, h.name).add_pid(h.pid)
    state.save(st)


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
        if entry.name.isdigit() and marker in cmdline(int(entry.name)):
            pids.add(int(entry.name))
    pids.discard(os.getpid())
    return {p for p in pids if not hostd.exited(p)}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ours(pid: int, lab: str) -> bool:
    comm = _comm(pid)
    cmd = cmdline(pid)
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
        _remove_owned(st, root, removed)
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


def running_vms(st: LabState) -> dict[str, str]:
    """{vm: host} for every running VM, in one pass over the hosts."""
    out = {}
    for h in st.hosts.values():
        if reachable(st, h):
            with Hypervisor(h.name, h.uri) as hv:
                out.update({d.name: h.name for d in hv.domains() if d.state == "running"})
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
                        entry["vms"].append(d.name)
                        vms.append({"name": d.name, "host": h.name, "state": d.state,
                                    "address": st.vms[d.name].address if d.name in st.vms else None})
            except AvailLabError as exc:
                entry["daemon"] = f"unreachable: {exc}"
        hosts.append(entry)
    return {"lab": lab, "status": st.status, "accel": st.accel, "hosts": hosts, "vms": vms,
            "shared_dir": st.shared_dir, "dr_dir": st.dr_dir, "client_namespace": st.client_namespace,
            "problems": health(st) if st.status == "up" else []}
