"""Choose the accelerator: KVM only when it is proven to boot the lab kernel, else TCG.

On these machines /dev/kvm exists but an unmodified Linux guest hangs under it, so "the device
exists" proves nothing. `auto` boots the lab's own kernel and initrd under KVM and waits for the
initramfs to print its first userspace line; if that does not happen in time it falls back to TCG
and says why. The verdict is cached per machine boot (the kernel's boot_id) and kernel image.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import selectors
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import paths
from ..errors import UsageError
from ..progress import step
from .defects import caveats, guest_kernel_args
from .recipe import GuestImage

MARKER = b"Loading, please wait"  # printed by the Debian initramfs once the kernel ran userspace
PROBE_TIMEOUT_S = 12.0


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" | "tcg"
    requested: str
    reason: str

    @property
    def domain_type(self) -> str:
        return "kvm" if self.accel == "kvm" else "qemu"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def qemu_version() -> str | None:
    """This machine's QEMU ("7.2.22"), which every host of a local lab runs; None if unreadable."""
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+\.\d+\.\d+)", out)
    return m.group(1) if m else None


def announce(choice: AccelChoice) -> None:
    """Say which accelerator was chosen and why, and what this emulator is known to get wrong."""
    step(f"accelerator: {choice.accel.upper()} ({choice.reason})")
    for caveat in caveats(choice.accel, [qemu_version()]):
        step(f"known defect of this emulator, said in every report: {caveat}")
    workaround = guest_kernel_args(choice.accel, qemu_version())
    if workaround:
        step(f"guests of one-process databases (MariaDB) boot with {' '.join(workaround)} against it "
             "(docs/lab.md, 'A known QEMU defect')")


def probe_kvm(image: GuestImage, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Boot the lab kernel under KVM; True only if it reaches the initramfs marker in time."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    cmd = ["qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "qemu64", "-m", "256",
           "-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio",
           "-kernel", str(image.kernel), "-initrd", str(image.initrd),
           "-append", "console=ttyS0 panic=-1 loglevel=4"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    seen = b""
    out = proc.stdout
    assert out is not None  # stdout=PIPE
    try:
        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        while time.monotonic() - t0 < timeout_s:
            if not sel.select(timeout=0.2):
                continue
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                break
            seen = (seen + chunk)[-8192:]
            if MARKER in seen:
                return True, f"KVM booted the lab kernel to userspace in {time.monotonic() - t0:.1f} s"
    finally:
        proc.kill()  # the probe VM is ours: stop it by its own handle
        proc.wait()
        out.close()
    if proc.returncode not in (None, -9) and b"Could not access KVM" in seen:
        return False, "QEMU could not open KVM"
    return False, (f"KVM did not boot the lab kernel to userspace within {timeout_s:.0f} s "
                   "(hangs on this machine); using TCG")


def choose_accel(requested: str, image: GuestImage) -> AccelChoice:
    if requested == "tcg":
        return AccelChoice("tcg", requested, "TCG requested by the topology")
    if requested not in ("auto", "kvm"):
        raise UsageError(f"accel: must be auto, kvm or tcg (got {requested!r})")
    cache = paths.cache_dir() / "accel-probe.json"
    key = hashlib.sha256(f"{_boot_id()}:{image.digest}".encode()).hexdigest()[:16]
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            ok, why = cached["ok"], cached["reason"] + " (probed earlier this boot)"
        else:
            raise ValueError
    except (OSError, ValueError, KeyError):
        ok, why = probe_kvm(image)
        cache.parent.mkdir(parents=True, exist_ok=True)
        paths.write_atomic(cache, json.dumps({"key": key, "ok": ok, "reason": why}))
    if requested == "kvm" and not ok:
        raise UsageError(f"accel: kvm was requested but {why}")
    return AccelChoice("kvm" if ok else "tcg", requested, why)


def to_dict(choice: AccelChoice) -> dict:
    return asdict(choice)
