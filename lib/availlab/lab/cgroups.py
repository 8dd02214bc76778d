"""One CPU cgroup per lab host, so a host has a finite capacity like a real machine.

All namespaced hosts share this machine's CPUs; without a cap an "overloaded host" would just
borrow the other host's core and nothing would slow down. The host's libvirtd is put in the group
from the root namespace (inside `ip netns exec` the cgroup mounts are not visible) and every QEMU
it starts inherits it. cgroup v1 (`cpu` + `cpuacct`, as on these machines) and v2 are handled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .. import names
from ..errors import LabError

PERIOD_US = 100_000
ROOT = Path("/sys/fs/cgroup")


def _mounts() -> list[tuple[str, str, str]]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[1], parts[2], parts[3]))
    return out


def _v1_mount(controller: str) -> Path | None:
    for mnt, fstype, opts in _mounts():
        if fstype == "cgroup" and controller in opts.split(","):
            return Path(mnt)
    return None


def _v2_mount() -> Path | None:
    for mnt, fstype, _ in _mounts():
        if fstype == "cgroup2" and "cpu" in (Path(mnt) / "cgroup.controllers").read_text().split():
            return Path(mnt)
    return None


@dataclass(frozen=True)
class HostCgroup:
    """The cgroup directories of one lab host (one per hierarchy that it needs)."""

    lab: str
    host: str
    dirs: tuple[Path, ...]
    version: int

    def add_pid(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(f"{pid}\n")

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(x) for x in (d / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return sorted(found)

    def usage_ns(self) -> int:
        """CPU time consumed by everything in the host, in nanoseconds."""
        for d in self.dirs:
            if (d / "cpuacct.usage").exists():
                return int((d / "cpuacct.usage").read_text())
            if (d / "cpu.stat").exists() and self.version == 2:
                for line in (d / "cpu.stat").read_text().splitlines():
                    k, v = line.split()
                    if k == "usage_usec":
                        return int(v) * 1000
        raise LabError(f"host {self.host}: no CPU usage counter in {self.dirs}")

    def remove(self) -> list[str]:
        removed = []
        for d in self.dirs:
            if not d.exists():
                continue
            for _ in range(50):  # a process that just exited can linger a moment in cgroup.procs
                try:
                    d.rmdir()
                    removed.append(str(d))
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise LabError(f"cgroup {d} is still busy (pids {self.pids()})")
        return removed


def _dirs_for(lab: str, host: str) -> tuple[tuple[Path, ...], int]:
    rel = Path("availlab") / lab / host
    cpu, acct = _v1_mount("cpu"), _v1_mount("cpuacct")
    if cpu and acct:
        return tuple(dict.fromkeys([cpu / rel, acct / rel])), 1  # same dir when co-mounted
    v2 = _v2_mount()
    if v2:
        return (v2 / rel,), 2
    raise LabError("no usable CPU cgroup controller (need cgroup v1 cpu+cpuacct or v2 cpu)")


def host_cgroup(lab: str, host: str) -> HostCgroup:
    dirs, version = _dirs_for(lab, host)
    return HostCgroup(lab, host, dirs, version)


def create_host_cgroup(lab: str, host: str, cores: float) -> HostCgroup:
    cg = host_cgroup(lab, host)
    quota = max(1000, int(cores * PERIOD_US))
    mount = _v2_mount() if cg.version == 2 else None
    for d in cg.dirs:
        if mount is not None:
            for parent in reversed(d.relative_to(mount).parents):  # enable cpu on the way down
                p = mount / parent
                p.mkdir(exist_ok=True)
                ctl = p / "cgroup.subtree_control"
                if "cpu" not in ctl.read_text().split():
                    ctl.write_text("+cpu")
            d.mkdir(exist_ok=True)
            (d / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            d.mkdir(parents=True, exist_ok=True)
            if (d / "cpu.cfs_quota_us").exists():
                (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (d / "cpu.cfs_quota_us").write_text(str(quota))
    return cg


def lab_cgroup_dirs(lab: str) -> list[Path]:
    """Every host cgroup of a lab that exists, found by path (works without lab state)."""
    found = []
    for mnt, _fstype, _ in _mounts():
        base = Path(mnt) / "availlab" / names.lab_name(lab)
        if base.is_dir():
            found += sorted(p for p in base.iterdir() if p.is_dir())
    return found


def remove_lab_cgroups(lab: str) -> list[str]:
    removed = []
    for d in lab_cgroup_dirs(lab):
        removed += HostCgroup(lab, d.name, (d,), 1).remove()
    for mnt, _, _ in _mounts():
        for p in (Path(mnt) / "availlab" / lab, Path(mnt) / "availlab"):
            try:
                p.rmdir()
            except OSError:
                pass
    return removed

