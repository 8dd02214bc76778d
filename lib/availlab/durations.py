"""Durations of the core paths (lab up, VM start, migration), kept where a reader will see them.

A 50x slower template start (issue 26: 105 s instead of 1.4 s) went unseen for days because
nothing that ran the suite looked at durations. With AVAILLAB_DURATIONS set to a file, every
core path appends one JSON line to it, from whichever process ran it (the tests' own and the
`availlab` commands they start); `make test` sets it and prints min / median / max per path at
the end of the run. Figures are shown, never judged here: the guards are ratios measured in one
test (tests/integration), because this machine's speed varies 2-5x by the hour.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Iterable

ENV = "AVAILLAB_DURATIONS"

PATHS = {  # each core path, declared once: its key and how the summary names it
    "lab_up": "lab up: network and daemons",
    "vm_cold_boot": "VM cold boot -> database ready",
    "vm_template_start": "VM template start -> database ready",
    "template_build": "template build (cold boot + save)",
    "migration": "live migration, total",
    "migration_downtime": "live migration, hypervisor downtime",
}


def record(path: str, seconds: float, detail: str = "") -> None:
    """Append one duration when AVAILLAB_DURATIONS names a file; a no-op otherwise. One write
    with O_APPEND per line, so lines from concurrent processes never interleave."""
    if path not in PATHS:
        raise ValueError(f"unknown duration path {path!r}; known: {', '.join(PATHS)}")
    target = os.environ.get(ENV)
    if not target:
        return
    line = json.dumps({"path": path, "s": round(seconds, 3), "detail": detail}) + "\n"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # a figure for the reader, never a reason for the work itself to fail


def summary(lines: Iterable[str]) -> list[str]:
    """One line per path and detail, in PATHS order: min / median / max and how many."""
    groups: dict[tuple[str, str], list[float]] = {}
    for line in lines:
        try:
            d = json.loads(line)
            key, s = (str(d["path"]), str(d.get("detail", ""))), float(d["s"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: the others still count
        if key[0] in PATHS:
            groups.setdefault(key, []).append(s)
    order = list(PATHS)
    out = []
    for (path, detail), values in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), _natural(kv[0][1]))):
        name = PATHS[path] + (f" ({detail})" if detail else "")
        ms = max(values) < 1
        lo, mid, hi = (f"{v * 1000:.0f}" if ms else f"{v:.2f}" for v in (min(values), statistics.median(values), max(values)))
        out.append(f"{name}: {lo} / {mid} / {hi} {'ms' if ms else 's'} (min / median / max of {len(values)})")
    return out


def _natural(text: str) -> list[tuple[int, int | str]]:
    """A sort key that puts "2 hosts" before "16 hosts"."""
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", text) if t]
