"""Known defects of the emulator under a lab, declared once: what a run on it must say beside its
verdict, so a failure the emulator causes is never taken for the cluster's or the database's.

The one known now: QEMU before 9.0 loses guest writes during a live migration under TCG. Its
dirty-page sync has a fast path for aligned RAM (every x86 guest's main RAM, which libvirt rounds to
1 MiB) that clears the migration's dirty bits without resetting the TCG TLB's dirty state, so a vCPU
store through a TLB entry filled before the sync marks nothing, and a page already sent is never
sent again (QEMU commit 03bfc2188f, "physmem: Fix migration dirty bitmap coherency with TCG memory
access", March 2024, in 9.0; not in Debian 12's 7.2.x). KVM tracks dirty pages in hardware and is
not affected. Seen here as guest kernel crashes a few seconds after a migration (list_add
corruption in the page allocator, a jbd2 BUG, soft lockups), mostly with MariaDB: its threads
share one address space, so the guest rarely switches page tables, which is what would flush the
stale entries (PostgreSQL's process per connection switches them all the time).

What the lab does about it, besides saying so: the guests of a database that runs as one
multi-threaded process (MariaDB: `Dialect.one_process`) boot with page-table isolation forced on
(`pti=on`). The guest kernel then switches page tables at every kernel entry and exit, and each
switch flushes the TCG TLB (the lab's CPU model has no PCID), so a stale entry lives for one
system call instead of a whole time slice. Measured on this machine, MariaDB VMs under 4 clients,
6 migrations per run: 9 of 18 runs without it lost the guest (a kernel crash or a hang), 0 of 14
with it, at about 13 % fewer operations per second. PostgreSQL guests boot without it: their
process per connection already switches page tables all the time (no such crash in hundreds of
their migrations), and `pti=on` made their cold boot 27 % slower (12.9 s against 10.1 s).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatorDefect:
    name: str
    accel: str
    fixed_in: tuple[int, ...]  # the first QEMU version without it
    effect: str
    reference: str
    guest_kernel_args: tuple[str, ...] = ()  # what lowers it from inside a guest the lab boots
    only_one_process: bool = False  # the workaround is for guests whose database is one process

    def applies(self, accel: str | None, qemu: str | None) -> bool:
        try:
            version = tuple(int(p) for p in str(qemu).split(".")[:3])
        except ValueError:
            return False  # a version nobody could read: nothing is claimed about it
        return accel == self.accel and version < self.fixed_in

    def caveat(self) -> str:
        return f"{self.name}: {self.effect} ({self.reference})"


DEFECTS = (
    EmulatorDefect(
        "qemu-tcg-lost-dirty-pages", "tcg", (9, 0, 0),
        "QEMU before 9.0 under TCG can lose guest writes during a live migration, so the guest may "
        "crash or hang after one; on KVM it cannot",
        "QEMU commit 03bfc2188f, fixed in QEMU 9.0", guest_kernel_args=("pti=on",), only_one_process=True),
)


def caveats(accel: str | None, qemu_versions: Iterable[str | None]) -> list[str]:
    """What the lab's emulator is known to get wrong, one line per defect that applies to a host."""
    versions = list(qemu_versions)
    return [d.caveat() for d in DEFECTS if any(d.applies(accel, v) for v in versions)]


def guest_kernel_args(accel: str | None, qemu: str | None, one_process: bool = True) -> list[str]:
    """Kernel arguments for a lab guest that work around the defects of the emulator it runs on;
    `one_process`: its database serves every session from one process's threads."""
    return [a for d in DEFECTS if d.applies(accel, qemu) and (one_process or not d.only_one_process)
            for a in d.guest_kernel_args]
