"""Stop a lab's processes by PID: found by membership, and only what availlab started.

A lab's processes are the members of its namespaces and cgroups and the daemons of its pid files,
so `lab down` works after a crash, a SIGKILL mid-`up`, or with the state file gone. A command line
that mentions the lab's path is no membership (a user's `tail -f` of a lab log mentions it too).
Each member is then checked by its executable (libvirtd, QEMU, availlab's own Python modules, the
daemon's start script, a database's dump tool) before it is signalled; anything else is left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import LabError
from ..progress import step
from . import cgroups, hostd, netns
from .state import LabState

DAEMONS = ("libvirtd", "qemu-nbd", "qemu-img")  # and qemu-system-*: what a lab host runs (a backup's export)
# what the client namespace runs: availlab's own modules (python -m …) and the dump tools
OUR_MODULES = ("availlab.clients.", "availlab.sqlrunner", "availlab.worker", "availlab.workload")
CLIENT_TOOLS = ("pg_dump", "pg_restore", "createdb", "dropdb", "psql", "mariadb", "mariadb-dump")  # clients/dbdump.py


def _lab_pids(lab: str, st: LabState | None, host: str | None = None) -> set[int]:
    """Members of the lab (or of its host `host` only): its namespaces, its cgroups, its daemons'
    pid files (checked there to be libvirtd). Never found by a command line: anyone may name the
    lab's path in theirs."""
    pids: set[int] = set()
    if host is None:
        for ns in netns.list_lab_namespaces(lab):
            pids.update(netns.pids_in(ns))
        for d in cgroups.lab_cgroup_dirs(lab):
            pids.update(cgroups.HostCgroup(lab, d.name, (d,), 1).pids())
    else:
        if st is None or host not in st.hosts:
            raise LabError(f"lab {lab}: no host {host!r} in its state")
        pids.update(netns.pids_in(st.hosts[host].namespace))
        pids.update(cgroups.host_cgroup(lab, host).pids())
    mount_ns: set[str] = set()
    if st:
        for h in st.hosts.values():
            pid = hostd.of_host(h).pid() if host in (None, h.name) else None
            if pid:
                pids.add(pid)
                mount_ns.add(_ns(pid, "mnt"))
    # a host's own mount namespace (its daemon's): what a backup runs there through nsenter (qemu-nbd)
    mount_ns.discard("")
    if mount_ns and _ns(os.getpid(), "mnt") not in mount_ns:
        pids.update(int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _ns(int(e.name), "mnt") in mount_ns)
    pids.discard(os.getpid())
    return {p for p in pids if not hostd.exited(p)}


def _ns(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ours(pid: int, lab: str) -> bool:
    """A member of the lab that availlab started, by its executable: a lab host's daemon or QEMU,
    availlab's Python modules, a database dump tool, or the script that starts a daemon."""
    exe, argv = hostd.exe_name(pid), _argv(pid)
    if exe in DAEMONS or exe.startswith("qemu-system"):
        return True
    if exe.startswith("python") and "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1].startswith(OUR_MODULES)
    if exe in CLIENT_TOOLS:
        return True
    return exe in ("dash", "sh", "bash", "unshare", "ip") and hostd.START_SCRIPT in argv


def stop_processes(lab: str, st: LabState | None, removed: list[str], host: str | None = None) -> None:
    """Stop the lab's processes (or its host `host`'s) by PID, guests before daemons, until a
    sweep finds none.

    Repeated because a `lab up` killed mid-way can leave a daemon still starting: its wrapper is
    found (and stopped) in one sweep, or the daemon it forked in the next.
    """
    spared: set[int] = set()
    for _ in range(10):
        pids = sorted(_lab_pids(lab, st, host) - spared,
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
    raise LabError(f"lab {lab}: processes keep appearing: {sorted(_lab_pids(lab, st, host) - spared)}")
