"""The local lab's hosts as a cluster reached over real `qemu+ssh`, as a user's hypervisors are.

An sshd (Debian's openssh-server) runs inside each host namespace, listening on the host's lab
address only, with a host key and an authorized key made for this lab. Inside sshd's own mount
namespace /run is a fresh tmpfs, where /run/libvirt/libvirt-sock (and -ro, for read-only
connections) points at that host's libvirtd:
so `virt-ssh-helper qemu:///system`, which libvirt's ssh transport runs on the far side, reaches
the host's daemon exactly as on a real hypervisor, and nothing of the machine's own /run is used.
The client side trusts only the lab's known_hosts file (through an `ssh` wrapper given as the
URI's `command`), so no key is written to anyone's ~/.ssh. Everything lives in the lab's state
directory; the daemons are ended by PID (and `lab down` finds them in the lab's namespaces).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from availlab import paths
from availlab.lab import local as lab
from availlab.lab import state

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {dir}/host_ed25519
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
"""

RUN = ('mount -t tmpfs -o mode=0755 availlab-sshd /run && mkdir -p /run/sshd /run/libvirt '
       '&& ln -s "$2" /run/libvirt/libvirt-sock && ln -s "$2" /run/libvirt/virtqemud-sock '
       '&& ln -s "$2-ro" /run/libvirt/libvirt-sock-ro '  # what a read-only connection (a watcher) asks for
       '&& exec /usr/sbin/sshd -D -e -f "$1"')


class SSHCluster:
    def __init__(self, local: state.LabState):
        self.local = local
        self.dir = paths.private_dir(state.lab_root(local.lab) / "ssh")
        self.procs: dict[str, subprocess.Popen] = {}

    def uri(self, host: str) -> str:
        h = self.local.hosts[host]
        return f"qemu+ssh://root@{h.address}/system?keyfile={self.dir}/id_ed25519&command={self.dir}/ssh"

    def start(self) -> SSHCluster:
        d = self.dir
        for key in ("id_ed25519", "host_ed25519"):
            if not (d / key).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"availlab-{self.local.lab}",
                                "-f", str(d / key)], check=True)
        (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
        host_key = (d / "host_ed25519.pub").read_text().split()[:2]
        (d / "known_hosts").write_text("".join(f"{h.address} {' '.join(host_key)}\n"
                                               for h in self.local.hosts.values()))
        wrapper = d / "ssh"
        wrapper.write_text("#!/bin/sh\nexec ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes "
                           f"-o UserKnownHostsFile={d}/known_hosts -o GlobalKnownHostsFile=/dev/null \"$@\"\n")
        wrapper.chmod(0o700)
        for h in self.local.hosts.values():
            conf = d / f"sshd-{h.name}.conf"
            conf.write_text(SSHD_CONFIG.format(address=h.address, dir=d))
            sock = lab.host_daemon(h).socket
            log = open(d / f"sshd-{h.name}.log", "w")
            self.procs[h.name] = subprocess.Popen(
                ["ip", "netns", "exec", h.namespace, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", RUN, "sh", str(conf), str(sock)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        for name in self.procs:
            log = d / f"sshd-{name}.log"
            while "Server listening" not in log.read_text():
                if self.procs[name].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sshd of {name} did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        return self

    def stop(self) -> None:
        for p in self.procs.values():  # our own children, by their handles
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def in_client_namespace(self, argv: list[str]) -> list[str]:
        """The cluster's addresses exist only inside the lab: whoever talks to it runs in the
        lab's client namespace, as a management station on the cluster network would."""
        return ["ip", "netns", "exec", self.local.client_namespace, *argv]


def log_tail(cluster: SSHCluster) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(Path(cluster.dir).glob("sshd-*.log")))
