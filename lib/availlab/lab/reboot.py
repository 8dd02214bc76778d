"""One lab host restarted as a reboot would restart it (the `restart-host` maintenance action):
its processes ended, its network namespace and cgroup made again, its libvirtd started on its
kept configuration. The path `local.rebuild` takes for a whole lab after the machine rebooted,
for one host, while the others run on."""

from __future__ import annotations

import time
from typing import Any

from ..errors import LabError
from ..progress import step
from . import cgroups, local, netns, state, sweep
from .addressing import plan_addresses
from .state import LabState
from .topology import Topology


def restart_host(st: LabState, host: str) -> dict[str, Any]:
    """Host `host` restarted in the lab's sense, as a reboot would do it: every process of the
    host ended (its libvirtd and whatever it ran), its network namespace and cgroup removed and
    made again, its daemon started on its kept configuration: the same host UUID, as a rebooted
    server keeps its SMBIOS UUID. `rebuild`'s path, for one host. Only a host that runs no VM:
    a VM's QEMU would be killed with it. What proves it: the daemon's new PID, the namespace's
    new cookie, the processes ended, and the host answering again with the same UUID."""
    topo = Topology.model_validate(st.topology)
    spec = next((s for s in topo.hosts if s.name == host), None)
    if spec is None or host not in st.hosts:
        raise LabError(f"host {host!r}: not a host of lab {st.lab!r}")
    h = st.hosts[host]
    with local.LocalProvider(st).connect(h) as hv:
        busy = sorted(f"{d.name} ({d.state})" for d in hv.domains() if d.state in ("running", "paused"))
        old_uuid = hv.host_uuid()
    if busy:
        raise LabError(f"host {host}: still runs {', '.join(busy)}; not restarted (drain it first)")
    t0 = time.monotonic()
    old_pid, old_ns = local.host_daemon(h).pid(), netns.cookie_of(h.namespace)
    removed: list[str] = []
    sweep.stop_processes(st.lab, st, removed, host=host)
    netns.remove(h.namespace)
    cgroups.host_cgroup(st.lab, host).remove()
    step(f"host {host}: down ({len(removed)} process(es) ended, namespace and cgroup removed); starting it again")
    with state.update(st.lab) as fresh:  # the lab's current state: a drain's records are kept
        mine = fresh.hosts[host]
        local.host_network(fresh, mine, plan_addresses(topo))
        local.start_host_daemon(fresh, mine, spec.cores, fresh.accel.get("accel", "kvm"), save=lambda: None)
        h.pid, h.host_uuid = mine.pid, mine.host_uuid
    with local.LocalProvider(st).connect(h) as hv:
        new_uuid, versions = hv.host_uuid(), hv.versions()
    if new_uuid != old_uuid:
        raise LabError(f"host {host}: came back with host UUID {new_uuid}, not its own {old_uuid}")
    took = round(time.monotonic() - t0, 2)
    new_ns = netns.cookie_of(h.namespace)
    step(f"host {host}: restarted in {took:g} s (libvirtd pid {old_pid} -> {h.pid}, namespace {old_ns} -> "
         f"{new_ns}); it answers (host uuid {new_uuid})")
    return {"done": "host restarted", "old_pid": old_pid, "new_pid": h.pid, "processes_ended": removed,
            "old_namespace": old_ns, "new_namespace": new_ns, "host_uuid": new_uuid,
            "libvirt_version": versions.get("libvirt"), "restart_s": took}
