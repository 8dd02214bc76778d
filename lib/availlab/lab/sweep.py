"""Stop a lab's processes by PID: every route to them, and only what availlab started.

A lab's processes are found by namespace membership, cgroup membership, pid files and the lab's
state path on the command line, so `lab down` works after a crash, a SIGKILL mid-`up`, or with
the state file gone; each is checked to be one of ours before it is signalled (never by name).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import cgroups, hostd, netns, state
from ..errors import LabError
from ..progress import step
from .state import LabState

OUR_COMMANDS = ("libvirtd", "qemu-system-x86", "qemu-system-x86_64")


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
            pid = hostd.of_host(h).pid()
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
            # the client worker's and SQL runner's older module names: left by a run of an older version
            or any(m in cmd for m in ("availlab.clients.sqlrunner", "availlab.clients.worker",
                                      "availlab.sqlrunner", "availlab.worker", "availlab.workload")))


def stop_processes(lab: str, st: LabState | None, removed: list[str]) -> None:
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
