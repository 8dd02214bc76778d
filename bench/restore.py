"""Full against instant restore of one DR chain, in one run on one lab: the RTO (restore start ->
first query), the full restore's copy of the chain, and the instant restore's move-off afterwards.
Printed as min / median / max, never asserted. Run as root:
`python bench/restore.py [ROUNDS] [FILL_MIB]` (default 3 rounds each, alternating; no fill).

FILL_MIB grows the database before the backup (rows of 1 KiB; the guest's 3 GiB disk holds 512
but not 1024, with PostgreSQL's WAL beside the table): a full restore copies the whole
chain before the VM boots, an instant one boots first, so the gap between the two RTOs is the copy
and grows with the data, while the boot does not. The default guest's chain is ~620 MiB, which
this machine copies in well under a second from a warm page cache: there the two RTOs differ by
little more than the boot's own spread.
"""

from __future__ import annotations

import shutil
import statistics
import sys

LAB = "benchrst"


def _row(name: str, xs: list[float]) -> tuple[str, str]:
    return name, (f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f} s" if xs else "-")


def main(rounds: int, fill_mib: int) -> None:
    from availlab.clients.sql import run_sql
    from availlab.events.backup import backup
    from availlab.events.replicate import replicate
    from availlab.events.restore import restore
    from availlab.lab import providers as lab
    from availlab.lab import state
    from availlab.progress import set_quiet
    from availlab.scenarios import steps
    from availlab.vm.create import delete

    set_quiet(True)
    lab.down(LAB)
    try:
        steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
        st = state.require_up(LAB)
        if fill_mib:
            run_sql(st, "sql1", "CREATE TABLE fill (id int PRIMARY KEY, pad text)", timeout_s=60)
            for start in range(0, fill_mib * 1024, 65536):  # 64 MiB a statement
                run_sql(st, "sql1", "INSERT INTO fill SELECT g, repeat(md5(g::text), 32) "
                        f"FROM generate_series({start}, {min(start + 65536, fill_mib * 1024) - 1}) g",
                        timeout_s=600)
        full = backup(st, "sql1")
        rep = replicate(st, full.id)
        out: dict[str, list[float]] = {"full: RTO": [], "full: copy of the chain": [],
                                       "instant: RTO": [], "instant: move-off after the first query": []}
        for i in range(2 * rounds):
            instant = i % 2 == 1
            r = restore(st, full.id, "h2", name="rbench", instant=instant)
            if instant:
                out["instant: RTO"].append(r.rto_s)
                out["instant: move-off after the first query"].append(r.move_off_s or 0.0)
            else:
                out["full: RTO"].append(r.rto_s)
                out["full: copy of the chain"].append(r.disk_s)
            delete(LAB, "rbench")
            st = state.require_up(LAB)
        print(f"chain: one full set of {full.size_bytes / 2**20:.0f} MiB (database filled with {fill_mib} MiB), "
              f"replicated at {rep.mib_s:.0f} MiB/s; {rounds} restores each way, alternating; min / median / max")
        rows = [_row(k, v) for k, v in out.items()]
        w = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{w}}  {v}")
    finally:
        lab.down(LAB)
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)  # the DR site outlives down


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
