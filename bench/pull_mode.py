"""An experiment for issue 15's remaining goal, not the product: availlab's push-mode full backup
(300 MiB/s cap) against libvirt's pull mode (an NBD export with a scratch file, read by `qemu-img
convert -r RATE`, as virtnbdbackup reads it), against a live migration: the longest client gap in
each one's window, under the default 4 clients. The pull backup is read and thrown away; no
checkpoint is taken. Run as root: `python bench/pull_mode.py ROUNDS RATE` (e.g. 3 100M).

First run (3 rounds, 100M): push gap 355 / 388 / 694 ms, pull 76 / 81 / 82 ms (copy 6 s, 620 MiB),
migration 175 / 206 / 342 ms.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backup import gaps_ms  # bench/backup.py: the runbooks' own per-window blackout figure

LAB = "benchpull"
W = Path(tempfile.gettempdir()) / "availlab-bench-pull"


def pull_backup(st, hv, n: int, rate: str) -> dict:
    """Freeze, begin a pull-mode backup, thaw; read the export at `rate`; end the job."""
    from availlab.clients.sql import run_sql
    from availlab.history import now_ns
    sock, scratch, out = W / f"nbd{n}.sock", W / f"scratch{n}.qcow2", W / f"pull{n}.qcow2"
    xml = (f"<domainbackup mode='pull'><server transport='unix' socket='{sock}'/><disks>"
           f"<disk name='vda' backup='yes' type='file'><scratch file='{scratch}'/></disk>"
           f"<disk name='vdb' backup='no'/></disks></domainbackup>")
    t0 = now_ns()
    run_sql(st, "sql1", "CHECKPOINT")
    hv.fs_freeze("sql1")
    hv._domain("sql1").backupBegin(xml, None, 0)
    hv.fs_thaw("sql1")
    t_thaw = now_ns()
    r = subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *(["-r", rate] if rate != "0" else []),
                        f"nbd+unix:///vda?socket={sock}", str(out)], capture_output=True, text=True)
    t1 = now_ns()
    hv._domain("sql1").abortJob()
    assert r.returncode == 0, r.stderr
    size = out.stat().st_size
    out.unlink()
    return {"type": "pull", "t0": t0, "t1": t1, "window_ms": (t_thaw - t0) / 1e6, "copy_s": (t1 - t_thaw) / 1e9,
            "mib": size / 2**20}


def main(rounds: int, rate: str) -> None:
    from availlab.clients.workload import Workload, workload_spec
    from availlab.events.backup import backup
    from availlab.events.migration import live_migrate
    from availlab.history import JsonlWriter, read_jsonl
    from availlab.lab import providers as lab, state
    from availlab.progress import set_quiet
    from availlab.scenarios import steps
    set_quiet(True)
    lab.down(LAB)
    shutil.rmtree(W, ignore_errors=True)
    W.mkdir(parents=True)
    try:
        steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
        st = state.require_up(LAB)
        pulls = []
        with JsonlWriter(W / "h.jsonl") as hist, JsonlWriter(W / "e.jsonl") as ev:
            wl = Workload(st, "sql1", workload_spec(clients=4), hist).start()
            try:
                time.sleep(4)
                for i in range(rounds):
                    backup(st, "sql1", events=ev)
                    time.sleep(3)
                    with lab.provider(st).connect(st.hosts[lab.running_host(st, "sql1")]) as hv:
                        p = pull_backup(st, hv, i, rate)
                    ev.write(p)
                    pulls.append(p)
                    time.sleep(3)
                    live_migrate(st, "sql1", "h2" if i % 2 == 0 else "h1", events=ev)
                    time.sleep(3)
            finally:
                wl.stop()
        h, e = read_jsonl(W / "h.jsonl"), read_jsonl(W / "e.jsonl")
        pushes = [x for x in e if x.get("type") == "backup"]
        migs = [x for x in e if x.get("type") == "migration" and x.get("ok")]
        def f(xs: list[float]) -> str:
            return f"{min(xs):.0f} / {statistics.median(xs):.0f} / {max(xs):.0f}" if xs else "-"
        print(f"rounds {rounds}, pull read rate {rate}")
        print("push full (300 MiB/s cap): gap", f(gaps_ms(h, e, pushes)), "ms; window", f([x["freeze_ms"] for x in pushes]), "ms")
        print("pull full:                  gap", f(gaps_ms(h, e, pulls)), "ms; window", f([p["window_ms"] for p in pulls]),
              "ms; copy", f([p["copy_s"] for p in pulls]), "s;", f([p["mib"] for p in pulls]), "MiB")
        print("live migration:             gap", f(gaps_ms(h, e, migs)), "ms")
    finally:
        lab.down(LAB)
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)
        shutil.rmtree(W, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
