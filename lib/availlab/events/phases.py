"""Migration phases from what libvirt lets us observe: a pure function, unit-tested.

The seed article's 8 steps, as far as they are observable from the hypervisor:
  prepare            migrate call -> first memory pass starts (connection, target VM created)
  initial copy       first pass over all guest memory (libvirt iteration 1)
  dirty-page iter.   re-sending pages dirtied meanwhile (iterations 2..n)
  paused             source suspended for the final copy -> target resumed (the switchover)
  resumed on target  target runs; libvirt finishes (confirm, source cleanup) until the call returns
  post-copy          instead of the above after a post-copy switch: the target runs while it
                     faults the pages it lacks from the source (until the call returns)
  announced          QEMU announces the guest's MAC (RARP) as the target resumes: a point in time
"""

from __future__ import annotations


def migration_phases(t0: int, t1: int, iterations: list[tuple[int, int]],
                     suspended: int | None, resumed: int | None,
                     postcopy_at: int | None = None) -> list[dict]:
    """Phases as {"phase", "t0", "t1"} dicts (ns), in order, clipped to [t0, t1]."""
    its = sorted((t, n) for n, t in iterations)
    first = next((t for t, n in its if n == 1), its[0][0] if its else None)
    second = next((t for t, n in its if n >= 2), None)
    out: list[dict] = []

    def add(name: str, a: int | None, b: int | None) -> None:
        if a is None or b is None:
            return
        a, b = max(a, t0), min(b, t1)
        if b >= a:
            out.append({"phase": name, "t0": a, "t1": b})

    stop_copy = suspended if suspended is not None else (postcopy_at or resumed or t1)
    add("prepare", t0, first if first is not None else stop_copy)
    if first is not None:
        add("initial copy", first, second if second is not None else stop_copy)
    if second is not None:
        add("dirty-page iterations", second, stop_copy)
    if suspended is not None:
        add("paused", suspended, resumed if resumed is not None else t1)
    if resumed is not None:
        # after a post-copy switch the target runs while faulting each page it lacks from the
        # source (until libvirt's confirm): drawn as its own phase instead of "resumed on target"
        add("post-copy" if postcopy_at is not None else "resumed on target", resumed, t1)
        add("announced", resumed, resumed)
    return out
