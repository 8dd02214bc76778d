"""A lab hypervisor host: its own libvirtd in its own network, mount and UTS namespaces.

Each host gets private /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
/var/cache/libvirt (bind mounts inside its mount namespace) and a random host_uuid, because
libvirt refuses to migrate between two daemons that share one. The daemon is reached from the
root namespace over its socket file, never over the network.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from ..errors import LabError
from ..waiting import wait_until

if TYPE_CHECKING:
    from .state import HostState

PRIVATE_DIRS = {  # mount point inside the host -> sub-directory of the host's state dir
    "/etc/libvirt": "etc",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/log/libvirt": "log",
    "/var/cache/libvirt": "cache",
}
SOCKET_MAX = 107  # sun_path limit

# Runs inside `ip netns exec NS unshare -m -u`: private mounts, own hostname, then the daemon.
START_SCRIPT = r"""
set -e
dir="$1"; name="$2"; accel="$3"
mount --make-rprivate /
for pair in /etc/libvirt:etc /run/libvirt:run /var/lib/libvirt:lib /var/log/libvirt:log /var/cache/libvirt:cache; do
    mkdir -p "${pair%%:*}"
    mount --bind "$dir/${pair#*:}" "${pair%%:*}"
done
hostname "$name"
# a TCG lab hides /dev/kvm from its daemons, in their own mount namespace only: libvirtd would
# probe it at start, which on a machine whose KVM does not work costs seconds per host (a 16-host
# lab came up in 74 s, 3.6 s without) and can even differ from one start to the next
if [ "$accel" = tcg ] && [ -e /dev/kvm ]; then mount --bind /dev/null /dev/kvm; fi
exec /usr/sbin/libvirtd --daemon --config "$dir/etc/libvirtd.conf" --pid-file "$dir/libvirtd.pid"
"""

LIBVIRTD_CONF = """\
# written by availlab for lab host {name}
host_uuid = "{host_uuid}"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

QEMU_CONF = """\
# written by availlab for lab host {name}; see ../shared/DESIGN.md section 3 for why each line
security_driver = "none"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
migration_address = "{address}"
migration_host = "{address}"
"""


@dataclass(frozen=True)
class HostDaemon:
    name: str
    namespace: str
    directory: Path
    address: str

    @property
    def socket(self) -> Path:
        return self.directory / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "libvirtd.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        # after a reboot the pid file is stale and the number may be anyone's libvirtd now
        return pid if _is_libvirtd(pid) and f"{self.directory}/" in cmdline(pid) else None


def of_host(h: HostState) -> HostDaemon:
    """The daemon of a host recorded in a lab's state."""
    return HostDaemon(h.name, h.namespace, Path(h.directory), h.address)


def cmdline(pid: int) -> str:
    """A process's command line, "" when it is gone or not ours to read."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_libvirtd(pid: int) -> bool:
    """A live libvirtd: a killed one stays a zombie named libvirtd until PID 1 reaps it."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "libvirtd" and not exited(pid)
    except OSError:
        return False


def write_config(host: HostDaemon, host_uuid: str | None = None) -> str:
    """Create the host's private dirs and config; returns its host_uuid (kept if already set)."""
    if len(str(host.socket)) > SOCKET_MAX:
        raise LabError(f"state path too long for a unix socket ({host.socket}); "
                       "set AVAILLAB_STATE to a shorter directory")
    for sub in PRIVATE_DIRS.values():
        (host.directory / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(host.directory, 0o700)
    conf = host.directory / "etc" / "libvirtd.conf"
    if host_uuid is None and conf.exists():
        for line in conf.read_text().splitlines():
            if line.startswith("host_uuid"):
                host_uuid = line.split('"')[1]
    host_uuid = host_uuid or str(uuid.uuid4())
    conf.write_text(LIBVIRTD_CONF.format(name=host.name, host_uuid=host_uuid))
    (host.directory / "etc" / "qemu.conf").write_text(
        QEMU_CONF.format(name=host.name, address=host.address))
    return host_uuid


def caps_seed_dir() -> Path:
    return paths.cache_dir() / "libvirt-qemu-capabilities"


def seed_capabilities(host: HostDaemon) -> int:
    """Give a new host the QEMU capabilities libvirtd probed last time (~8 s of CPU per host).

    Every lab host runs the same libvirtd and QEMU binaries on the same kernel, so the probe's
    answer is the same; libvirtd still validates each cached file (binary ctimes, versions,
    kernel, microcode) and probes again by itself if anything changed.
    """
    dest = host.directory / "cache" / "qemu" / "capabilities"
    if any(dest.glob("*.xml")):
        return 0
    seeds = sorted(caps_seed_dir().glob("*.xml"))
    if seeds:
        dest.mkdir(parents=True, exist_ok=True)
        for f in seeds:
            shutil.copy2(f, dest / f.name)
    return len(seeds)


def save_capabilities(host: HostDaemon) -> None:
    """Keep what a host's libvirtd probed (or validated) for the next host and the next lab."""
    src = host.directory / "cache" / "qemu" / "capabilities"
    files = sorted(src.glob("*.xml"))
    if not files:
        return
    seed = caps_seed_dir()
    tmp = seed.with_name(seed.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, tmp / f.name)
    shutil.rmtree(seed, ignore_errors=True)
    os.rename(tmp, seed)


def start(host: HostDaemon, accel: str, timeout_s: float = 60.0) -> int:
    """Start the host's libvirtd (if not running) and wait until its socket answers; returns PID.
    `accel`: the lab's accelerator ("kvm" or "tcg"); a TCG lab's daemons do not see /dev/kvm."""
    pid = host.pid()
    if pid:
        return pid
    # a daemon that died leaves its sockets behind: without this, "the socket exists" would be
    # taken as "the new daemon is ready" before it listens
    for sock in host.socket.parent.glob("libvirt-sock*"):
        sock.unlink(missing_ok=True)
    cmd = ["ip", "netns", "exec", host.namespace, "unshare", "--mount", "--uts",
           "--propagation", "private", "sh", "-c", START_SCRIPT, "sh", str(host.directory), host.name, accel]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise LabError(f"host {host.name}: libvirtd did not start (exit {r.returncode}): "
                       f"{r.stderr.strip() or r.stdout.strip()}; log: {host.directory}/log")
    pid = wait_until(lambda: host.pid() if host.socket.exists() else None, timeout_s)
    if pid:
        return pid
    raise LabError(f"host {host.name}: libvirtd socket {host.socket} did not appear in "
                   f"{timeout_s:.0f} s; see {host.directory}/log/libvirtd.log")


def stop_pid(pid: int, what: str, timeout_s: float = 15.0) -> bool:
    """SIGTERM then SIGKILL one process we started; True if it was running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if wait_until(lambda: exited(pid), timeout_s, 0.05):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    if wait_until(lambda: exited(pid), 5.0, 0.05):
        return True
    raise LabError(f"{what} (pid {pid}) did not exit after SIGKILL")


def exited(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent to reap it (PID 1 here reaps lazily)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
