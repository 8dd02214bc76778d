"""Migration plans: which VM goes where, in what order, with what pause (pure), and running them.

  single       one migration of the VM to `target` (default: the next host)
  ping-pong    `migrations` moves between the VM's host and `target`, back and forth
  round-robin  `migrations` moves visiting every host in turn
  drain        planned maintenance: the host drain of `availlab host drain` (events.drain) of
               `host` (default: the VM's host): every VM to the least-loaded other host, the
               host recorded drained; hold `hold_s`; then its resume brings each back
Impossible plans (one host, migrate to the same host, drain the only host) are usage errors
naming the field, raised before anything moves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UsageError
from ..events.drain import least_loaded
from ..events.migration import MigrationTuning
from ..events.nemesis import Nemesis
from ..events.ops import DrainHost, Migrate, ResumeHost, Wait

PLANS = ("single", "ping-pong", "round-robin", "drain")


@dataclass(frozen=True)
class Move:
    vm: str
    source: str
    target: str
    hold_s: float = 0.0  # pause after this move (e.g. maintenance window during a drain)
    note: str = ""


def _next(hosts: list[str], current: str) -> str:
    return hosts[(hosts.index(current) + 1) % len(hosts)]


def make_plan(kind: str, placement: dict[str, str], hosts: list[str], vm: str, *,
              migrations: int = 1, target: str | None = None, host: str | None = None,
              settle_s: float = 2.0, hold_s: float = 5.0) -> list[Move]:
    """placement: {vm: host it runs on now}; hosts: every host a VM may go to, in order."""
    if kind not in PLANS:
        raise UsageError(f"plan: unknown plan {kind!r} (plans: {', '.join(PLANS)})")
    if migrations < 1:
        raise UsageError(f"migrations: must be at least 1 (got {migrations})")
    if vm not in placement:
        raise UsageError(f"vm: {vm!r} is not running in the lab")
    if len(hosts) < 2:
        raise UsageError(f"plan: {kind} needs at least 2 hosts; the lab has {len(hosts)}")
    if target is not None and target not in hosts:
        raise UsageError(f"target: unknown host {target!r} (hosts: {', '.join(hosts)})")
    here = placement[vm]
    if target == here:
        raise UsageError(f"target: {vm} already runs on {target}; pick another host")
    moves: list[Move] = []
    if kind == "single":
        moves.append(Move(vm, here, target or _next(hosts, here), settle_s))
    elif kind == "ping-pong":
        a, b = here, target or _next(hosts, here)
        for i in range(migrations):
            src, dst = (a, b) if i % 2 == 0 else (b, a)
            moves.append(Move(vm, src, dst, settle_s, f"{i + 1}/{migrations}"))
    elif kind == "round-robin":
        cur = here
        for i in range(migrations):
            nxt = _next(hosts, cur)
            moves.append(Move(vm, cur, nxt, settle_s, f"{i + 1}/{migrations}"))
            cur = nxt
    else:
        return _drain(placement, hosts, host or here, settle_s, hold_s)
    return Plan(moves)


def _drain(placement: dict[str, str], hosts: list[str], drained: str, settle_s: float, hold_s: float) -> Plan:
    """The moves the host drain will make (events.drain: each VM, by name, to the least-loaded
    of `hosts`), then its resume's, shown before they run; run, it is the drain itself."""
    if drained not in hosts:
        raise UsageError(f"host: unknown host {drained!r} (hosts: {', '.join(hosts)})")
    others = [h for h in hosts if h != drained]
    on_it = sorted(v for v, h in placement.items() if h == drained)
    if not on_it:
        raise UsageError(f"host: no VM runs on {drained}; nothing to drain")
    placed, out = dict(placement), []
    for v in on_it:
        placed[v] = least_loaded(placed, others)
        out.append(Move(v, drained, placed[v], 0.0, f"drain {drained}"))
    out[-1] = replace(out[-1], hold_s=hold_s, note=f"drain {drained}: hold")
    back = [Move(m.vm, m.target, drained, 0.0, f"resume {drained}") for m in out]
    back[-1] = replace(back[-1], hold_s=settle_s)
    return Plan(out + back, drained=drained)


class Plan(list):
    """A list of moves that shows itself as a table in a notebook, and runs as nemeses: one
    migration each, or, for a drain, the host drain, the hold, the resume and the settle."""

    def __init__(self, moves: list[Move] | tuple[Move, ...] = (), drained: str = ""):
        super().__init__(moves)
        self.drained = drained

    def nemeses(self, tuning: MigrationTuning | None) -> list[Nemesis]:
        if self.drained:
            out, back = self[:len(self) // 2], self[len(self) // 2:]
            return [DrainHost(self.drained, tuning), Wait(out[-1].hold_s), ResumeHost(self.drained, tuning),
                    Wait(back[-1].hold_s)]
        return [Migrate(m.target, tuning, vm=m.vm, hold_s=m.hold_s,
                        label=f"move {i + 1}/{len(self)}{f' ({m.note})' if m.note else ''}") for i, m in enumerate(self)]

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {i + 1} | {m.vm} | {m.source} → {m.target} | {m.hold_s:g} s | {m.note} |"
                         for i, m in enumerate(self))
        return "| # | VM | move | pause after | note |\n|---|---|---|---|---|\n" + rows

