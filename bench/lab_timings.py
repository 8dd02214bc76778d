"""Print the foundation's figures: guest image build (cold, warm), lab up of 2 and 16 hosts (cold
libvirt probe, warm), VM start to database ready (cold boot and restore from the booted template), and live
migrations under a query loop.

Figures are printed, never asserted (shared, noisy machines); what repeats cheaply is repeated
and printed as min / median / max (`python bench/lab_timings.py [N]`, default 5 VM starts and
3 migrations). Run as root: `make bench`. The cold image build uses a throw-away AVAILLAB_CACHE
so the real cache is left alone.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from availlab.checks import SLO, check_run
from availlab.clients.workload import under_load, workload_spec
from availlab.events.nemesis import Nemeses, Stage
from availlab.events.ops import Migrate
from availlab.history import JsonlWriter, read_jsonl
from availlab.lab import hostd, image, state
from availlab.lab import providers as lab
from availlab.lab.topology import parse_topology
from availlab.progress import set_quiet
from availlab.vm import create as vm

LAB = "bench"


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def spread(values: list[float], unit: str, fmt: str = ".1f") -> str:
    """min / median / max over n runs: one figure of this machine means little (2-5x by the hour)."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return (f"{min(values):{fmt}} / {statistics.median(values):{fmt}} / {max(values):{fmt}} {unit} "
            f"(min / median / max of {len(values)})")


def main(n: int = 5) -> None:
    set_quiet(True)
    figures: list[tuple[str, str]] = []
    real_cache = os.environ.get("AVAILLAB_CACHE")
    tmp = Path(tempfile.mkdtemp(prefix="availlab-bench-"))
    try:
        os.environ["AVAILLAB_CACHE"] = str(tmp)
        _, cold = timed(lambda: image.build_image())
        _, warm = timed(lambda: image.build_image())
        figures += [("image build, cold (mmdebstrap + mkfs + qcow2; one run)", f"{cold:.1f} s"),
                    ("image build, warm (cached, same recipe)", f"{warm:.2f} s")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if real_cache is None:
            os.environ.pop("AVAILLAB_CACHE", None)
        else:
            os.environ["AVAILLAB_CACHE"] = real_cache
    image.ensure_image()
    topo = parse_topology({"name": LAB, "hosts": [{"name": "h1"}, {"name": "h2"}]})
    lab.down(LAB)
    seed = hostd.caps_seed_root()
    saved = seed.with_name(seed.name + ".bench-saved")
    if seed.exists():
        shutil.rmtree(saved, ignore_errors=True)
        seed.rename(saved)
    try:
        for hosts in (2, 16):  # with no seed the first host probes QEMU once, for the others
            shutil.rmtree(seed, ignore_errors=True)
            big = parse_topology({"name": LAB, "hosts": [{"name": f"h{i + 1}"} for i in range(hosts)]})
            _, up_cold = timed(lambda big=big: lab.up(big))
            lab.down(LAB)
            warm = []
            for _ in range(3):
                warm.append(timed(lambda big=big: lab.up(big))[1])
                lab.down(LAB)
            figures += [(f"lab up, {hosts} hosts, libvirtd probes QEMU (one run)", f"{up_cold:.1f} s"),
                        (f"lab up, {hosts} hosts, probe cached", spread(warm, "s"))]
        lab.up(topo)
        boots, restores, builds = [], [], []
        for _ in range(n):  # interleaved, so a slow hour weighs on both alike
            for cold, into in ((True, boots), (False, restores)):
                if lab.locate_vm(state.require_up(LAB), "sql1"):
                    vm.delete(LAB, "sql1")
                r = vm.create(LAB, "sql1", "h1", cold=cold)
                into.append(r.boot_to_db_s if r.start == ("cold" if cold else "template") else None)
                builds += [r.template_build_s] if r.template_build_s else []
        figures.append(("VM cold boot -> database accepts a login (client namespace)", spread(boots, "s")))
        figures.append(("VM restore from its booted template -> database accepts a login", spread(restores, "s")))
        pairs = [r / b for r, b in zip(restores, boots, strict=True) if r and b]
        figures.append(("  template start / cold boot beside it (the test's limit: 0.5)", spread(pairs, "", ".2f")))
        if builds:
            figures.append(("template build (cold boot + save; once per VM shape and image)", spread(builds, "s")))
        st = state.require_up(LAB)
        totals, downs, gaps, counts, failed = [], [], [], [], []
        for _ in range(max(1, (n + 1) // 2)):
            hist_path = Path(tempfile.mkdtemp(prefix="availlab-bench-")) / "history.jsonl"
            with JsonlWriter(hist_path) as hist:
                nemeses = Nemeses(Stage(st=st, vm="sql1"), [Migrate()])  # to the other host
                with under_load(st, "sql1", workload_spec(clients=1, probe_interval_ms=0), hist, warmup_s=1.0,
                                cooldown_s=1.0, nemeses=nemeses):
                    m, = nemeses.invoke()
            f = check_run(read_jsonl(hist_path), [m.to_event()], SLO()).figures
            shutil.rmtree(hist_path.parent, ignore_errors=True)
            counts.append(f"{f['ops']}/{f['failed_ops']}/{f['lost_writes']}")
            if not m.ok:  # counted apart: a failed migration's time is no migration time
                failed.append(m.error or "failed")
                continue
            totals.append((m.t1 - m.t0) / 1e6)
            downs += [m.downtime_ms] if m.downtime_ms is not None else []
            gaps.append(f["longest_blackout_ms"])
        figures += [(f"live migrations: {len(totals)} completed, {len(failed)} failed",
                     "; ".join(failed) or "-"),
                    ("live migration h1 <-> h2, total (completed ones)", spread(totals, "ms", ".0f")),
                    ("  hypervisor downtime (libvirt job stats)", spread(downs, "ms", ".0f")),
                    ("  1 client: longest gap", spread(gaps, "ms", ".0f")),
                    ("  1 client: ops/failed/lost per migration", ", ".join(counts))]
        _, down_s = timed(lambda: lab.down(LAB))
        figures.append(("lab down", f"{down_s:.1f} s"))
    finally:
        lab.down(LAB)
        if saved.exists() and not seed.exists():
            saved.rename(seed)
        shutil.rmtree(saved, ignore_errors=True)
    width = max(len(k) for k, _ in figures)
    for k, v in figures:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
