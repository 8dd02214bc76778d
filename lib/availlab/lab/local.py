"""The local lab provider: bring a topology up as namespaced hosts, tear it down without residue.
(`providers.up` and `providers.down` take the lab's lock and call `LocalProvider.up`/`down`.)

`up` records intent in lab state before creating each thing and is idempotent: a healthy lab is
left alone, a damaged or half-built one is cleaned and rebuilt. `down` finds what to remove from
the state file, from names (namespaces, cgroups) and from namespace membership (processes), so it
works after a crash, a SIGKILL mid-`up`, or with the state file gone.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .. import durations, paths
from ..errors import AvailLabError, LabError, MigrationError
from ..progress import step
from . import cgroups, hostd, identity, netns, ownership, state, sweep
from .accel import announce, choose_accel
from .addressing import AddressPlan, bridge_mac, plan_addresses
from .credentials import ensure_db_password
from .image import ensure_image
from .provider_api import Provider
from .state import HostState, LabState
from .topology import Topology

host_daemon = hostd.of_host


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the local lab needs root (network namespaces, cgroups, libvirtd); "
                       "run as root or use a remote topology")


class LocalProvider(Provider):
    """availlab's own namespaced hosts: every domain on them is the lab's, every action offered."""

    kind = "local"
    noun = "local lab"
    down_means = "destroys it"

    def owns(self, domain: str) -> bool:
        return True

    def foreign_vms(self, hosts: set[str]) -> list[str]:
        return []  # nothing else runs on the lab's hosts

    def reachable(self, h: HostState) -> bool:
        return bool(host_daemon(h).pid())  # a stopped daemon of ours: nothing to ask

    def host_command(self, h: HostState) -> list[str]:
        """Each host's libvirtd has its own mount namespace (hostd.py): enter that one."""
        pid = host_daemon(h).pid()
        if not pid:
            raise LabError(f"{h.name}: libvirtd is not running")
        return ["nsenter", f"--target={pid}", "--mount"]

    def daemon(self, h: HostState) -> tuple[int | None, str]:
        pid = host_daemon(h).pid()
        return pid, "running" if pid else "stopped"

    def health(self) -> list[str]:
        st = self.st
        present = set(netns.list_lab_namespaces(st.lab))
        problems = [f"namespace {ns} missing"
                    for ns in [st.switch_namespace, st.client_namespace] + [h.namespace for h in st.hosts.values()]
                    if ns not in present]
        return problems + [f"libvirtd of {h.name} not running" for h in st.hosts.values() if not self.reachable(h)]

    def unsafe_migration(self, vm: str, copy_storage: bool) -> bool:
        """libvirt cannot recognise a plain directory as shared, so it demands UNSAFE; passed only
        after checking that the disk really lies in the lab's shared directory."""
        if copy_storage:
            return False
        disk, shared = Path(self.st.vms[vm].disk).resolve(), Path(self.st.shared_dir).resolve()
        if not (disk.is_file() and shared in disk.parents):
            raise MigrationError(f"{vm}: disk {self.st.vms[vm].disk} is not on the lab's shared storage; "
                                 "use copy_storage=True")
        return True

    def diagnostics(self, source: str, target: str) -> dict:
        st = self.st
        out: dict = {"namespaces": {}, "libvirtd_log_tail": {}}
        for ns in (st.switch_namespace, st.hosts[source].namespace, st.hosts[target].namespace):
            try:
                out["namespaces"][ns] = netns.snapshot(ns)
            except Exception as exc:  # evidence gathering must never hide the real failure
                out["namespaces"][ns] = {"error": str(exc)}
        for h in (source, target):
            log = Path(st.hosts[h].directory) / "log" / "libvirtd.log"
            try:
                out["libvirtd_log_tail"][h] = log.read_text(errors="replace").splitlines()[-30:]
            except OSError as exc:
                out["libvirtd_log_tail"][h] = [str(exc)]
        return out

    def describe(self) -> str:
        st = self.st
        return (f"lab {st.lab} up: {len(st.hosts)} hosts ({', '.join(st.hosts)}), accel {st.accel.get('accel')}, "
                f"shared storage {st.shared_dir}, DR site {st.dr_dir}")

    @staticmethod
    def up(topo: Topology) -> LabState:
        return _up(topo)

    @staticmethod
    def down(lab: str) -> list[str]:
        return _down(lab, state.load(lab))


def residue(lab: str) -> list[str]:
    """Anything of this lab that exists on the machine (namespaces, cgroups, state)."""
    found = [f"namespace {n}" for n in netns.list_lab_namespaces(lab)]
    found += [f"cgroup {d}" for d in cgroups.lab_cgroup_dirs(lab)]
    if state.state_file(lab).exists():
        found.append(f"state {state.state_file(lab)}")
    return found


def _up(topo: Topology) -> LabState:
    _require_root()
    lab = topo.name
    t0 = time.monotonic()
    existing = state.load(lab)
    if existing and existing.status == "up":
        problems = LocalProvider(existing).health()
        if problems and all(p.startswith("libvirtd of ") for p in problems):
            restart_daemons(existing)  # namespaces intact: repair in place, keep the VMs
            problems = LocalProvider(existing).health()
        if not problems:
            step(f"lab {lab!r} is up ({len(existing.hosts)} hosts); nothing to do")
            return existing
        return rebuild(existing, problems)
    if existing and (existing.vms or _holds_backups(existing)):
        raise LabError(f"lab {lab!r} is {existing.status!r} and holds VMs or backups; not deleting them to "
                       f"start again: `availlab --lab {lab} lab down` destroys the lab (nothing was changed)")
    if existing is None and residue(lab) and _holds_data(lab):
        raise LabError(f"lab {lab!r} has namespaces or cgroups left but no state.json, and its directory "
                       f"{state.lab_root(lab)} holds VM disks or backups: not deleting them as leftovers. "
                       f"`availlab --lab {lab} lab down` removes the lab and them; or move them away first")
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
    announce(choice)
    if residue(lab):
        step(f"lab {lab!r} has leftovers of an earlier, unfinished run: cleaning them first")
        _down(lab, existing)
    identity.claim(lab)
    root = state.lab_root(lab)
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
        t_build = time.monotonic()
        probed = _build(st, topo, parts)
        st.timings["lab_up_s"] = round(time.monotonic() - t0, 2)
        state.save(st)
        n = len(st.hosts)  # the image and the KVM verdict are not this path's (cached per machine)
        durations.record("lab_up", time.monotonic() - t_build, f"{n} host{'s' * (n != 1)}" + (", QEMU probed" * probed))
    except BaseException:
        st.status = "failed"
        state.save(st)
        raise
    step(f"lab {lab!r} is up in {st.timings['lab_up_s']:.1f} s")
    return st


def _holds_data(lab: str) -> bool:
    """VM disks or backups under the lab's directory (what a lost state.json must not make leftovers)."""
    root = state.lab_root(lab)
    return any(p.is_file() for d in ("backups", "shared/vms", "dr-site") for p in (root / d).rglob("*")
               if not any(part.startswith(".") for part in p.relative_to(root).parts))


def _holds_backups(st: LabState) -> bool:
    backups = state.primary_backups_dir(st.lab)
    return backups.is_dir() and any(not p.name.startswith(".") for p in backups.iterdir())


def _build(st: LabState, topo: Topology, parts: list[Path]) -> bool:
    """Network, storage, daemons: what `up` creates and `rebuild` creates again. Each step is
    safe over what an earlier build left (directories, host UUIDs and the DB password are kept).
    True when libvirtd had to probe QEMU (see _capabilities_once)."""
    plan = plan_addresses(topo)
    step(f"network: switch, client {plan.client}, {len(topo.hosts)} hosts on {plan.network}")
    netns.create(st.switch_namespace)
    netns.ensure_bridge(st.switch_namespace, netns.SWITCH_BRIDGE)
    netns.create(st.client_namespace)
    netns.connect(st.switch_namespace, "p-client", st.client_namespace,
                  address=str(plan.client), prefixlen=plan.prefixlen)
    for h in st.hosts.values():
        host_network(st, h, plan)
    for d in [Path(st.shared_dir), *parts, Path(st.dr_dir)]:
        ownership.claim_dir(st, d)
    ensure_db_password(st.lab)
    accel, probed = st.accel.get("accel", "kvm"), False
    for i, spec in enumerate(topo.hosts):
        h = st.hosts[spec.name]
        start_host_daemon(st, h, spec.cores, accel, save=lambda: state.save(st))
        if i == 0:  # before the others start: they reuse its probe
            probed = _capabilities_once(st, h, accel)
    seen: dict[str, str] = {}
    for h in st.hosts.values():
        with LocalProvider(st).connect(h) as hv:
            u = hv.host_uuid()
        if u in seen:
            raise LabError(f"hosts {seen[u]} and {h.name} report the same host UUID {u}; "
                           "libvirt cannot migrate between them")
        seen[u] = h.name
    st.lost_hosts.clear()
    st.status = "up"
    state.save(st)
    return probed


def host_network(st: LabState, h: HostState, plan: AddressPlan) -> None:
    netns.create(h.namespace)
    netns.connect(st.switch_namespace, f"p-{h.name}", h.namespace, peer_bridge=netns.HOST_BRIDGE,
                  address=h.address, prefixlen=plan.prefixlen, bridge_mac=bridge_mac(plan.hosts[h.name]))


def start_host_daemon(st: LabState, h: HostState, cores: float, accel: str, save: Callable[[], None]) -> None:
    """The host's cgroup, its daemon's configuration (its host UUID kept if it has one) and its
    libvirtd; `save` records the UUID before the start and the PID after it."""
    d = host_daemon(h)
    cg = cgroups.create_host_cgroup(st.lab, h.name, cores)
    h.host_uuid = hostd.write_config(d)
    hostd.seed_capabilities(d, accel)
    save()
    step(f"host {h.name}: libvirtd in {h.namespace}, {cores:g} core(s), {h.address}")
    h.pid = hostd.start(d, accel)
    cg.add_pid(h.pid)
    save()


def _capabilities_once(st: LabState, h: HostState, accel: str) -> bool:
    """The first host's libvirtd validates the seeded QEMU capabilities or probes QEMU (~4-8 s of
    CPU); its answer is the seed of the hosts started after it, so a lab probes at most once.
    True when it probed (no seed yet, or an outdated one).

    A second lookup must find that answer valid. A daemon that probes again on every lookup slows
    every VM start and migration ~50x, and the figures measured on it (issue 26: 105 s per
    template start, 40 probes in it), so such a lab is refused here, before any VM runs on it."""
    d = host_daemon(h)
    seeded = hostd.capability_files(d)
    t0 = time.monotonic()
    _lookup_capabilities(st, h)
    first, took = hostd.capability_files(d), time.monotonic() - t0
    _lookup_capabilities(st, h)
    if not first or hostd.capability_files(d) != first:
        raise LabError(f"host {h.name}: libvirtd probed QEMU's capabilities again on a second lookup "
                       f"(it judges its own probe stale), so it would probe again for every VM start and "
                       f"migration; accelerator {accel}, /dev/kvm as its daemon sees it: {hostd.kvm_view(d)}; "
                       f"see {d.directory}/log/libvirtd.log")
    if first != seeded:
        step(f"host {h.name}: libvirtd probed QEMU's capabilities in {took:.1f} s "
             f"({'the cached probe was outdated' if seeded else 'none cached yet'}); the other hosts reuse them")
    hostd.save_capabilities(d, accel)
    return first != seeded


def _lookup_capabilities(st: LabState, h: HostState) -> None:
    """One capabilities lookup: libvirtd validates its cached probe of QEMU, or probes again."""
    with LocalProvider(st).connect(h) as hv:
        hv.host_uuid()


def rebuild(st: LabState, problems: list[str]) -> LabState:
    """A lab that was up lost its namespaces or daemons (a reboot empties /run/netns): stop what
    is left of its processes, build its network and daemons again from its recorded topology.
    Its VMs are listed in `to_revive`, saved before anything is rebuilt, and started again from
    their kept definitions and disks by `vm.create.revive_pending` (the VM layer, which builds on
    this one): a run killed half-way leaves the list for the next `lab up`. Files are never
    removed here; a failed rebuild leaves the lab marked up-but-damaged, so the next `lab up`
    tries again."""
    t0 = time.monotonic()
    step(f"lab {st.lab!r} is damaged ({'; '.join(problems)}): rebuilding its network and daemons; "
         "VMs, disks and backups are kept")
    topo = Topology.model_validate(st.topology)
    st.to_revive = sorted(set(st.to_revive) | set(st.vms))
    state.save(st)
    removed: list[str] = []
    sweep.stop_processes(st.lab, st, removed)
    for ns in netns.list_lab_namespaces(st.lab):
        netns.remove(ns)
    cgroups.remove_lab_cgroups(st.lab)
    _build(st, topo, [Path(st.shared_dir) / p for p in ownership.SHARED_PARTS])
    st.timings["lab_rebuild_s"] = round(time.monotonic() - t0, 2)
    state.save(st)
    step(f"lab {st.lab!r} rebuilt in {st.timings['lab_rebuild_s']:.1f} s; "
         f"{len(st.to_revive)} VM(s) to start again")
    return st


def restart_daemons(st: LabState) -> None:
    """Start each host's libvirtd that is not running; recorded in the lab's current state (not
    the caller's copy, which may be older), and in `st` too, for the caller."""
    with state.update(st.lab) as fresh:
        for h in fresh.hosts.values():
            d = host_daemon(h)
            if not d.pid():
                step(f"host {h.name}: libvirtd is not running; restarting it")
                h.pid = hostd.start(d, fresh.accel.get("accel", "kvm"))
                cgroups.host_cgroup(st.lab, h.name).add_pid(h.pid)
            st.hosts[h.name].pid = h.pid
        fresh.lost_hosts.clear()  # every host is back, and a lost one empty: ordinary hosts again
    st.lost_hosts = []


def _domains_down(st: LabState, removed: list[str]) -> None:
    local = LocalProvider(st)
    for h in st.hosts.values():
        if not local.reachable(h):
            continue
        try:
            with local.connect(h) as hv:
                for dom in hv.domains():
                    if hv.destroy(dom.name):
                        removed.append(f"VM {dom.name} on {h.name} (powered off)")
                    hv.undefine(dom.name)
        except AvailLabError as exc:
            step(f"host {h.name}: could not clean VMs through libvirt ({exc}); killing by PID")


def sweep_by_name(lab: str) -> list[str]:
    """Remove what is named after the lab when its state is missing or unreadable."""
    return _down(lab, None)


def _down(lab: str, st: LabState | None) -> list[str]:
    _require_root()
    removed: list[str] = []
    if st:
        _domains_down(st, removed)
    sweep.stop_processes(lab, st, removed)
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
            if child.name == identity.MARKER:  # last, by identity.release
                continue
            if child == dr and any(dr.iterdir()):
                step(f"keeping DR site {dr}: it holds backups, which outlive the lab")
                continue
            kind = "directory" if child.is_dir() else "file"
            shutil.rmtree(child) if kind == "directory" else child.unlink()
            removed.append(f"{kind} {child}")
        identity.release(lab)
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
    kept = sorted((paths.state_root() / ".logs").iterdir(), key=lambda d: d.stat().st_mtime)
    for old in kept[:-LOGS_KEPT]:  # the oldest: by name, a lab called "a…" would lose its logs first
        shutil.rmtree(old, ignore_errors=True)
    return dest
