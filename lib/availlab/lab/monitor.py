"""Host and VM CPU/memory samples, the SCOM stand-in.

Host CPU is what its cgroup accounted (libvirtd and every QEMU of the host) over the host's
capacity (`cores`, which the same cgroup enforces, so 100 % really is full); VM CPU is the
delta of libvirt's domain CPU time, in percent of one core. Deltas between two samples, so the
first call only primes the counters.
"""

from __future__ import annotations

import time

from ..errors import AvailLabError
from ..history import now_ns
from ..records import Rec
from . import cgroups, state
from .providers import provider
from .state import LabState
from .topology import Topology


class Monitor:
    def __init__(self, st: LabState):
        self.st = st
        hosts = Topology.model_validate(st.topology).hosts
        self.cores = {h.name: h.cores for h in hosts}
        self.memory = {h.name: h.memory_mib for h in hosts}
        self._prev: tuple[int, dict[str, int], dict[str, int], dict[str, str]] | None = None
        self._hv = {h.name: provider(st).connect(h) for h in st.hosts.values()}

    def close(self) -> None:
        for hv in self._hv.values():
            hv.close()

    def _read(self) -> tuple[int, dict[str, int], dict[str, int], dict[str, dict]]:
        t = now_ns()
        host_ns = {h: cgroups.host_cgroup(self.st.lab, h).usage_ns() for h in self._hv}
        vm_ns, vms = {}, {}
        for h, hv in self._hv.items():
            try:
                usage = hv.vm_usage()
            except AvailLabError:
                continue  # a host that is down has nothing to report
            for name, u in usage.items():
                vm_ns[name] = u["cpu_ns"]
                vms[name] = {"host": h, "mem_mib": round(u["mem_kib"] / 1024)}
        return t, host_ns, vm_ns, vms

    def sample(self) -> dict | None:
        t, host_ns, vm_ns, vms = self._read()
        prev, self._prev = self._prev, (t, host_ns, vm_ns, {n: v["host"] for n, v in vms.items()})
        if prev is None:
            return None
        dt = (t - prev[0]) / 1e9
        hosts = {}
        # read each time: a host drained by another command meanwhile must get no tip's VM
        drained = set((state.load(self.st.lab) or self.st).drained)
        for h, ns in host_ns.items():
            used = max(0, ns - prev[1].get(h, ns)) / 1e9 / dt
            mem = sum(v["mem_mib"] for v in vms.values() if v["host"] == h)
            hosts[h] = {"cpu": round(100 * used / self.cores[h], 1), "cores": self.cores[h],
                        "mem_mib": mem, "mem_pct": round(100 * mem / self.memory[h], 1),
                        **({"drained": True} if h in drained else {})}
        for name, v in vms.items():
            before = prev[2].get(name)
            if before is None or prev[3].get(name) != v["host"]:
                v["cpu"] = 0.0  # new here: its counter belongs to another QEMU process than before
            else:
                v["cpu"] = round(100 * max(0, vm_ns[name] - before) / 1e9 / dt, 1)
        return {"type": Rec.SAMPLE, "t": t, "hosts": hosts, "vms": vms}

    def prime(self) -> None:
        self.sample()
        time.sleep(0.2)
