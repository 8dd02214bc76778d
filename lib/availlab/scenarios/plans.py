"""Migration plans: which VM goes where, in what order, with what pause (pure), and running them.

  single       one migration of the VM to `target` (default: the next host)
  ping-pong    `migrations` moves between the VM's host and `target`, back and forth
  round-robin  `migrations` moves visiting every host in turn
  drain        planned maintenance: move every VM off `host` (default: the VM's host) to the
               other hosts, hold `hold_s`, then move each back
Impossible plans (one host, migrate to the same host, drain the only host) are usage errors
naming the field, raised before anything moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

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
    else:  # drain
        drained = host or here
        if drained not in hosts:
            raise UsageError(f"host: unknown host {drained!r} (hosts: {', '.join(hosts)})")
        others = [h for h in hosts if h != drained]
        on_it = sorted(v for v, h in placement.items() if h == drained)
        if not on_it:
            raise UsageError(f"host: no VM runs on {drained}; nothing to drain")
        out = [Move(v, drained, others[i % len(others)], 0.0, f"drain {drained}")
               for i, v in enumerate(on_it)]
        out[-1] = Move(out[-1].vm, out[-1].source, out[-1].target, hold_s, f"drain {drained}: hold")
        back = [Move(m.vm, m.target, drained, 0.0, f"return to {drained}") for m in out]
        back[-1] = Move(back[-1].vm, back[-1].source, back[-1].target, settle_s, back[-1].note)
        moves = out + back
    return Plan(moves)


class Plan(list):
    """A list of moves that shows itself as a table in a notebook."""

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {i + 1} | {m.vm} | {m.source} → {m.target} | {m.hold_s:g} s | {m.note} |"
                         for i, m in enumerate(self))
        return "| # | VM | move | pause after | note |\n|---|---|---|---|---|\n" + rows

