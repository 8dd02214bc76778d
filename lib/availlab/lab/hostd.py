"""A lab hypervisor host: its own libvirtd in its own network, mount and UTS namespaces.

Each host gets private /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
/var/cache/libvirt (bind mounts inside its mount namespace) and a random host_uuid, because
libvirt refuses to migrate between two daemons that share one. The daemon is reached from the
root namespace over its socket file, never over the network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
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

# What a TCG lab's daemon finds at /dev/kvm: a read-only bind mount of this regular file.
# Hidden, because libvirtd would otherwise try this machine's KVM at start (it hangs here: 4-5 s
# per host, serialised). Hidden this way, because libvirt and QEMU must both read it as "no KVM":
# libvirt calls KVM usable when it can stat and access(R_OK|W_OK) the device, QEMU enables KVM
# only when its ioctls answer. Where they disagree (/dev/null over /dev/kvm did: issue 26) libvirt
# judges its cached QEMU capabilities stale on every lookup and probes QEMU again, ~4 s a time,
# dozens of times per VM start. On a read-only mount access(W_OK) fails (EROFS) and so does QEMU's
# open, so both say no, and the one probe stays valid (lab up checks it: local._capabilities_once).
NO_KVM = ("availlab: this lab host runs guests on TCG; its libvirtd does not see the machine's "
          "/dev/kvm (lib/availlab/lab/hostd.py)\n")

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
# A TCG lab hides /dev/kvm from its daemons (their own mount namespace only; see NO_KVM)
if [ "$accel" = tcg ] && [ -e /dev/kvm ]; then
    mount --bind "$dir/no-kvm" /dev/kvm
    mount -o remount,bind,ro /dev/kvm
fi
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


def exe_name(pid: int) -> str:
    """The name of the file a process runs (" (deleted)" after a package upgrade dropped); "" when
    it is gone or not ours to read."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return ""


def _is_libvirtd(pid: int) -> bool:
    """A live libvirtd, by its executable (a killed one stays a zombie until PID 1 reaps it)."""
    return exe_name(pid) == "libvirtd" and not exited(pid)


def kvm_view(host: HostDaemon) -> str:
    """/dev/kvm as the host's libvirtd sees it: through /proc/PID/root, its own mount namespace."""
    pid = host.pid()
    if not pid:
        return "unknown (libvirtd not running)"
    dev = Path(f"/proc/{pid}/root/dev/kvm")
    try:
        st = dev.stat()
    except OSError:
        return "absent"
    if stat.S_ISCHR(st.st_mode):
        kind = f"device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    else:
        kind = "regular file" if stat.S_ISREG(st.st_mode) else "neither device nor file"
    return f"{kind}, {'read-write' if os.access(dev, os.R_OK | os.W_OK) else 'not writable'}"


def write_config(host: HostDaemon, host_uuid: str | None = None) -> str:
    """Create the host's private dirs and config; returns its host_uuid (kept if already set)."""
    if len(str(host.socket)) > paths.SOCKET_PATH_MAX:
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
    # atomic: a crash mid-write must not leave a libvirtd.conf without its host_uuid (a new one
    # on the next up would make the host another host to libvirt)
    paths.write_atomic(conf, LIBVIRTD_CONF.format(name=host.name, host_uuid=host_uuid))
    paths.write_atomic(host.directory / "no-kvm", NO_KVM)
    paths.write_atomic(host.directory / "etc" / "qemu.conf", QEMU_CONF.format(name=host.name, address=host.address))
    return host_uuid


def caps_seed_root() -> Path:
    return paths.cache_dir() / "libvirt-qemu-capabilities"


def caps_seed_dir(accel: str) -> Path:
    """One seed per accelerator: a TCG lab's daemons see no KVM and a KVM lab's do, and libvirt
    rejects capabilities probed under the other view (one more probe per daemon)."""
    return caps_seed_root() / accel


def capability_files(host: HostDaemon) -> dict[str, tuple[int, int]]:
    """The host's cached QEMU capabilities, each file by (inode, mtime): libvirtd unlinks and
    writes a new file whenever it probes QEMU again, so a changed identity is a new probe."""
    found = {}
    for f in sorted((host.directory / "cache" / "qemu" / "capabilities").glob("*.xml")):
        with contextlib.suppress(OSError):
            st = f.stat()
            found[f.name] = (st.st_ino, st.st_mtime_ns)
    return found


def seed_capabilities(host: HostDaemon, accel: str) -> int:
    """Give a new host the QEMU capabilities libvirtd probed last time (~4-8 s of CPU per host).

    Every lab host runs the same libvirtd and QEMU binaries on the same kernel, so the probe's
    answer is the same; libvirtd still validates each cached file (binary ctimes, versions,
    kernel, microcode, KVM) and probes again by itself if anything changed.
    """
    dest = host.directory / "cache" / "qemu" / "capabilities"
    if any(dest.glob("*.xml")):
        return 0
    seeds = sorted(caps_seed_dir(accel).glob("*.xml"))
    if seeds:
        dest.mkdir(parents=True, exist_ok=True)
        for f in seeds:
            with contextlib.suppress(FileNotFoundError):  # another lab replacing the seed: libvirtd probes
                shutil.copy2(f, dest / f.name)
    return len(seeds)


def save_capabilities(host: HostDaemon, accel: str) -> None:
    """Keep what a host's libvirtd probed (or validated) for the next host and the next lab."""
    src = host.directory / "cache" / "qemu" / "capabilities"
    files = sorted(src.glob("*.xml"))
    if not files:
        return
    seed = caps_seed_dir(accel)
    tmp = seed.with_name(seed.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, tmp / f.name)
    shutil.rmtree(seed, ignore_errors=True)
    try:
        os.rename(tmp, seed)
    except OSError:  # another lab saved its probe in between: the same answer, kept
        shutil.rmtree(tmp, ignore_errors=True)
    for old in caps_seed_root().glob("*.xml"):  # the one seed for all views that issue 26 undid
        old.unlink(missing_ok=True)


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
