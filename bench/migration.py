"""Print the live-migration figures: migrations, median hypervisor downtime, median client
blackout, client ops/s, and the recording client's ops/s as a ratio of a bare pyodbc loop's
(same statements, same mix, one client, no migration; goal >= 0.9: recording must not be what
limits the workload). Printed, never asserted. Run as root: `python bench/migration.py [N]`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAB = "benchlm"
SECONDS = 15.0


def raw_loop() -> None:
    """Inside the client namespace: the workload's statements with no recording at all."""
    import random

    import pyodbc

    from availlab.dialects import TABLE

    req = json.loads(sys.stdin.readline())
    conn = pyodbc.connect(req["connstr"], autocommit=True)
    rng, keys, n, seq = random.Random(1), [], 0, 0
    t0 = time.monotonic()
    end = t0 + req["duration_s"]
    while time.monotonic() < end:
        seq += 1
        if keys and rng.random() < 0.5:
            conn.execute(f"SELECT v FROM {TABLE} WHERE k = ?", rng.choice(keys)).fetchone()
        else:
            k = f"raw-{req['run_id']}:{seq}"
            conn.execute(f"INSERT INTO {TABLE} (k, v, client, run_id) VALUES (?, ?, ?, ?)", k, "v", 99, req["run_id"])
            keys.append(k)
        n += 1
    print(json.dumps({"ops": n, "seconds": time.monotonic() - t0}))


def main(migrations: int) -> None:
    from availlab.clients.sql import dsn_for, run_sql, worker_request
    from availlab.clients.workload import Workload, workload_spec
    from availlab.dialects import POSTGRESQL
    from availlab.history import JsonlWriter, read_jsonl
    from availlab.lab import providers as lab
    from availlab.lab import state
    from availlab.progress import set_quiet
    from availlab.scenarios import params, steps

    set_quiet(True)
    lab.down(LAB)
    try:
        the_lab = steps.ensure_lab(LAB, 2)
        steps.ensure_vm(the_lab, "sql1", "h1")
        st = state.require_up(LAB)
        tmp = Path(tempfile.mkdtemp(prefix="availlab-bench-"))

        # 1. recording client vs bare loop: one client each, no migration, alternated twice so
        #    warm-up and ordering effects cancel; each rate is measured over its own busy time
        rec_rates, raw_rates = [], []
        for statement in POSTGRESQL.prepare():
            run_sql(st, "sql1", statement)
        cmd = ["ip", "netns", "exec", st.client_namespace, sys.executable, __file__, "--raw-loop"]
        for i in range(2):
            out = subprocess.run(cmd, input=worker_request(dsn_for(st, "sql1"), duration_s=SECONDS,
                                                           run_id=f"raw{i}"),
                                 capture_output=True, text=True, check=True).stdout
            raw = json.loads(out)
            raw_rates.append(raw["ops"] / raw["seconds"])
            with JsonlWriter(tmp / f"h{i}.jsonl") as h:
                wl = Workload(st, "sql1", workload_spec(clients=1, probe_interval_ms=0), h)  # the client alone
                wl.start()
                time.sleep(SECONDS + 1.0)
                wl.stop()
            recs = read_jsonl(tmp / f"h{i}.jsonl")
            done = [r for r in recs if r["type"] == "ok"]
            first = min(r["t"] for r in recs if r["type"] == "invoke")
            rec_rates.append(len(done) / ((max(r["t"] for r in done) - first) / 1e9))
        rec_rate, raw_rate = statistics.mean(rec_rates), statistics.mean(raw_rates)

        # 2. ping-pong under 4 clients
        run = steps.open_run("bench-migration", tmp / "run", {})
        cfg = params.LiveMigration.parse({"plan": "ping-pong", "migrations": migrations})
        moves = steps.plan_migrations(the_lab, "sql1", "ping-pong", migrations, "", 2.0, 0.0)
        t0 = time.monotonic()
        load = steps.migrate_under_load(run, the_lab, "sql1", moves, cfg.workload, cfg.tuning, 3.0, 3.0)
        wall = time.monotonic() - t0
        res = steps.judge(run, cfg)
        f = res.figures
        downs = [m["downtime_ms"] for m in f["migrations"] if m["downtime_ms"] is not None]
        blacks = [m["client_blackout_ms"] for m in f["migrations"] if m["client_blackout_ms"] is not None]
        rows = [
            ("migrations (ok / planned)", f"{sum(m.ok for m in load.migrations)} / {len(moves)}"),
            ("median hypervisor downtime", f"{statistics.median(downs):.0f} ms" if downs else "n/a"),
            ("median client blackout per migration", f"{statistics.median(blacks):.0f} ms" if blacks else "n/a"),
            ("max client blackout", f"{f['longest_blackout_ms']} ms"),
            ("client ops/s (4 clients, whole run)", f"{f['ops'] / wall:.0f}"),
            ("failed / indeterminate / lost", f"{f['failed_ops']} / {f['info_ops']} / {f['lost_writes']}"),
            ("verdict", res.verdict),
            ("recording client ops/s (1 client)", f"{rec_rate:.1f}  (runs: {', '.join(f'{r:.0f}' for r in rec_rates)})"),
            ("bare pyodbc loop ops/s (1 client)", f"{raw_rate:.1f}  (runs: {', '.join(f'{r:.0f}' for r in raw_rates)})"),
            ("ratio recording / bare (goal >= 0.9)", f"{rec_rate / raw_rate:.2f}"),
        ]
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
    finally:
        lab.down(LAB)


if __name__ == "__main__":
    if "--raw-loop" in sys.argv:
        raw_loop()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
