"""Reading a pull-mode backup: libvirt exports the VM's disk as it was at the backup's point in
time over NBD, and availlab reads it into the set at a pace the workload can bear.

Why pull rather than push (docs/backup.md has the figures): in push mode QEMU's backup job both
copies the disk and saves old data before the guest overwrites it, into the set itself, on the
storage the guest's writes wait for; the clients' longest gap was 1.4-1.7x a live migration's. In
pull mode QEMU saves old data into a scratch file on the host's local storage, and the reading is
ours: paced here, on our process's CPU, it cost the clients a quarter to a half of a migration's gap.

What is read is what the NBD server says is there: for a full backup the extents the disk has
allocated and not known to be zero (`base:allocation`), for an incremental or differential the
extents the checkpoint's dirty bitmap marks (`qemu:dirty-bitmap:<name>`, as virtnbdbackup reads
it; `qemu-img convert` cannot follow a bitmap). Both use libnbd, the NBD client QEMU's and
libvirt's own people keep.

The set's qcow2 is written through `qemu-nbd` started in the host's view of the storage (the
provider's `host_command`), as a backup agent on the hypervisor would: a volume that is full
there fails the copy with the host's own ENOSPC.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackupError

try:  # Debian's python3-libnbd, linked into the virtualenv by lab/setup.sh (libnbd is not on PyPI)
    import nbd
except ImportError:  # pragma: no cover - said when a backup needs it, not at import
    nbd = None

CHUNK = 2 << 20        # bytes per read: small enough that one read never holds QEMU's loop long
STATUS_SPAN = 1 << 30  # bytes asked per block-status request; the server may answer fewer
DIRTY = 1              # a dirty bitmap's flag: written since the checkpoint


@dataclass
class Copied:
    size: int               # the disk's virtual size
    extents: int = 0        # extents read
    bytes: int = 0          # bytes read and written
    seconds: float = 0.0
    waits: list[float] = field(default_factory=list, repr=False)  # pacing sleeps (for the test)


def require() -> None:
    if nbd is None:
        raise BackupError("backup: libnbd's Python binding is missing (Debian package python3-libnbd, "
                          "linked into the virtualenv by `make setup`)")


def wanted(context: str, entries: list[int], offset: int) -> list[tuple[int, int]]:
    """[(offset, length)] to copy from one block-status answer (flat [length, flags, ...])."""
    out: list[tuple[int, int]] = []
    at = offset
    for length, flags in zip(entries[0::2], entries[1::2], strict=True):  # NBD: pairs, always
        if context.startswith("qemu:dirty-bitmap:"):
            take = bool(flags & DIRTY)
        else:  # base:allocation: a zero extent reads as zero in a fresh qcow2 without backing
            take = not flags & nbd_state_zero()
        if take and length:
            if out and out[-1][0] + out[-1][1] == at:  # merge neighbours: fewer, larger reads
                out[-1] = (out[-1][0], out[-1][1] + length)
            else:
                out.append((at, length))
        at += length
    return out


def nbd_state_zero() -> int:
    return nbd.STATE_ZERO if nbd is not None else 2  # the protocol's value, for unit tests without libnbd


class Pacer:
    """Keeps the average rate at or under mib_s (0: no cap), sleeping between chunks."""

    def __init__(self, mib_s: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate, self.clock, self.sleep = mib_s * 2**20, clock, sleep
        self.start, self.done = clock(), 0
        self.waits: list[float] = []

    def add(self, n: int) -> None:
        self.done += n
        if self.rate:
            wait = self.start + self.done / self.rate - self.clock()
            if wait > 0:
                self.waits.append(wait)
                self.sleep(wait)


def copy_export(socket: Path, export: str, target: Path, *, bitmap: str | None, mib_s: int,
                host_command: list[str], progress: Callable[[int, int], None] | None = None) -> Copied:
    """Copy the export's wanted extents into a new qcow2 at `target` (of the export's size).
    `host_command` must exec in place (nsenter without --fork): qemu-nbd is handed its socket by
    systemd socket activation, which names the pid that may take it."""
    require()
    context = f"qemu:dirty-bitmap:{bitmap}" if bitmap else nbd.CONTEXT_BASE_ALLOCATION
    src = dst = None
    what = f"reading the NBD export {export} at {socket}"
    try:
        src = nbd.NBD()
        src.add_meta_context(context)
        src.set_export_name(export)
        src.connect_unix(str(socket))
        if not src.can_meta_context(context):
            raise BackupError(f"the NBD export {export} does not offer {context}")
        size = src.get_size()
        what = f"creating {target}"
        made = subprocess.run([*host_command, "qemu-img", "create", "-q", "-f", "qcow2", str(target), str(size)],
                              capture_output=True, text=True)
        if made.returncode:
            raise BackupError(f"could not create {target}: {made.stderr.strip()}")
        what = f"writing {target.name}"
        dst = nbd.NBD()
        # socket activation: libnbd starts qemu-nbd on a private socket and reaps it on close
        dst.connect_systemd_socket_activation([*host_command, "qemu-nbd", "--format=qcow2", str(target)])
        return _copy(src, dst, context, size, mib_s, progress)
    except nbd.Error as exc:
        raise BackupError(f"{what} failed: {exc.string}") from exc
    except OSError as exc:
        raise BackupError(f"{what} failed: {exc}") from exc
    finally:
        # closed here, not when dropped: a traceback keeps the frame (and qemu-nbd) alive
        for h in (dst, src):
            if h is not None:
                _close(h)


def _close(h) -> None:
    """Disconnect (qemu-nbd, not --persistent, then exits) and close the handle now, which reaps
    it. This libnbd's Python (1.14) has no close(): its __del__ closes `_o` if still there."""
    try:
        h.shutdown()
    except nbd.Error:  # never connected, or already gone: nothing to say goodbye to
        pass
    if hasattr(h, "close"):  # a newer libnbd
        h.close()
    elif hasattr(h, "_o"):
        nbd.libnbdmod.close(h._o)
        del h._o


def _copy(src, dst, context: str, size: int, mib_s: int, progress) -> Copied:
    out, pacer, t0 = Copied(size), Pacer(mib_s), time.monotonic()
    offset = 0
    while offset < size:
        answers: list[tuple[str, int, list[int]]] = []

        def seen(meta: str, off: int, entries: list[int], _err, answers=answers) -> int:  # this pass's list
            answers.append((meta, off, list(entries)))
            return 0

        try:
            src.block_status(min(STATUS_SPAN, size - offset), offset, seen)
        except nbd.Error as exc:
            raise BackupError(f"reading the export's {context} failed: {exc.string}") from exc
        mine = [a for a in answers if a[0] == context]
        if not mine or not mine[0][2]:
            raise BackupError(f"the NBD server answered no {context} at offset {offset}")
        meta, off, entries = mine[0]
        end = min(off + sum(entries[0::2]), size)  # the last extent may run past the disk's end
        for at, length in ((a, min(n, size - a)) for a, n in wanted(meta, entries, off) if a < size):
            out.extents += 1
            for o in range(at, at + length, CHUNK):
                n = min(CHUNK, at + length - o)
                try:
                    data = src.pread(n, o)
                except nbd.Error as exc:
                    raise BackupError(f"reading the export at {o} failed: {exc.string}") from exc
                dst.pwrite(data, o)
                out.bytes += n
                pacer.add(n)
            if progress:
                progress(min(end, at + length), size)
        if end <= offset:  # never skip what the server did not describe
            raise BackupError(f"the NBD server's {context} made no progress at offset {offset}")
        offset = end
        if progress:
            progress(min(offset, size), size)
    dst.flush()
    out.seconds, out.waits = time.monotonic() - t0, pacer.waits
    return out
