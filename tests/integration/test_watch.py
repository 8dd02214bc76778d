"""`availlab watch` on the real lab, with movers that are not availlab's code (issue 30).

1. `virsh migrate --live --p2p` run by the watch as the operator's command: PASS, 0 failed, 0
   lost; the libvirt watcher saw the pause on h1 and the resume on h2 over a read-only connection.
   Then availlab's own `vm migrate` under a watch: both say the same libvirt downtime (the watcher
   reads the job's statistics without taking them away), and the two moves' blackouts are alike.
2. A deliberate outage the watch did not cause (`virsh suspend`, 2 s, `virsh resume`, run by the
   test beside `watch --for`): one unexplained outage of about 2 s, FAIL against a 1 s SLO, 0 lost,
   with the hypervisor's pause beside it; then the database restarted in the guest: an outage
   named by the server's new start time, its errors lost connections (no failed statement), every
   client back, 0 lost.
3. The same database watched as any database, by its connection string (`--dsn`), from the
   cluster network, with no lab: PASS, and availlab's table dropped at the end; then as a user
   who may write nothing, with `--read-only`: PASS, lost writes said not run.
4. A watcher's connection is libvirt's read-only one: a change asked through it is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from availlab.errors import AvailLabError
from availlab.lab import providers as lab
from availlab.lab import state
from availlab.lab.providers import provider
from availlab.vm import create as vm
from availlab.waiting import wait_until

from .conftest import clean_lab, cli, topology, watch_beside

LAB = "iwatch"


def _results(r) -> tuple[dict, Path]:
    import re

    m = re.search(r"run folder: (\S+)", r.stdout)
    assert m, f"no run folder printed; stdout={r.stdout!r} stderr={r.stderr[-3000:]}"
    run_dir = Path(m.group(1))
    assert (run_dir / "results.json").is_file(), r.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text()), run_dir


def _json_in(log: Path) -> str:
    """The JSON document a command printed (its progress lines around it are not JSON)."""
    text = log.read_text()
    return text[text.index("{\n"):text.rindex("\n}") + 2]


def test_watch_judges_a_virsh_migration_and_names_an_outage_nobody_announced(figures, tmp_path):
    with clean_lab(LAB):
        st = lab.up(topology(LAB, hosts=2))
        vm.create(LAB, "sql1", "h1")
        st = state.require_up(LAB)
        h1, h2 = st.hosts["h1"], st.hosts["h2"]
        virsh = ["virsh", "-c", h1.uri, "migrate", "--live", "--p2p", "--persistent", "--undefinesource", "--unsafe",
                 "sql1", h2.uri, f"tcp://{h2.address}"]
        r = cli(LAB, "watch", "--vm", "sql1", "--rate", "0", "--warmup", "1s", "--cooldown", "1s", "--", *virsh)
        doc, run_dir = _results(r)
        f, by = doc["figures"], {c["name"]: c for c in doc["checks"]}
        assert r.returncode in (0, 1), r.stderr[-3000:]  # 1: a slow hour's blackout; outcomes below
        assert by["outcomes"]["valid"] is True and by["lost-writes"]["valid"] is True, by
        assert by["command"]["valid"] is True and f["command"]["exit_code"] == 0
        assert f["failed_ops"] == 0 and f["lost_writes"] == 0 and f["ops"] > 100
        pauses = f["hypervisor_pauses"]
        assert len(pauses) == 1 and (pauses[0]["host"], pauses[0]["resumed_on"], pauses[0]["why"]) == ("h1", "h2", "migrated")
        assert pauses[0]["libvirt_downtime_ms"] is not None, pauses  # the target's job statistics, read-only
        assert f["watcher"]["where"] == {"h2": "running"} and lab.locate_vm(state.require_up(LAB), "sql1")[0] == "h2"
        assert f["unexplained_outages"] == 0, f["outages"]
        assert (run_dir / "command.log").is_file() and "report.html" in {p.name for p in run_dir.iterdir()}
        figures["watch: virsh migrate"] = (f"{f['ops']} ops, {f['failed_ops']} failed, {f['lost_writes']} lost, "
                                           f"hypervisor pause {pauses[0]['paused_ms']} ms (libvirt's downtime "
                                           f"{pauses[0]['libvirt_downtime_ms']} ms), clients' gap "
                                           f"{pauses[0]['client_gap_ms']} ms, max blackout {f['longest_blackout_ms']} ms")

        # 1b. the same kind of migration judged two ways: availlab's own `vm migrate` says what libvirt
        # reported, the watch beside it reads the same statistics read-only and leaves them there
        r1b = cli(LAB, "watch", "--vm", "sql1", "--rate", "0", "--warmup", "1s", "--cooldown", "1s", "--",
                  sys.executable, "-m", "availlab.cli", "--lab", LAB, "vm", "migrate", "sql1", "--to", "h1", "--json")
        doc1b, run1b = _results(r1b)
        f1b = doc1b["figures"]
        own = json.loads(_json_in(run1b / "command.log"))
        assert r1b.returncode in (0, 1) and f1b["failed_ops"] == 0 and f1b["lost_writes"] == 0, r1b.stderr[-3000:]
        (p1b,) = f1b["hypervisor_pauses"]
        assert own["ok"] and own["downtime_ms"] is not None and p1b["libvirt_downtime_ms"] == own["downtime_ms"], (own, p1b)
        blackouts = sorted(x for x in (f["longest_blackout_ms"], f1b["longest_blackout_ms"]))
        assert blackouts[1] <= 20 * max(blackouts[0], 50), blackouts  # two moves alike: within any hour's noise
        figures["watch: availlab vm migrate"] = (f"libvirt's downtime {own['downtime_ms']} ms as availlab read it, "
                                                 f"{p1b['libvirt_downtime_ms']} ms as the watcher did; clients' gap "
                                                 f"{p1b['client_gap_ms']} ms (virsh's move: {pauses[0]['client_gap_ms']} ms)")

        # 2. someone else pauses the VM for 2 s while a watch runs for a time, then restarts its database
        from availlab.vm.guest import exec_wait, restart_database

        def suspend_then_restart():
            subprocess.run(["virsh", "-c", h1.uri, "suspend", "sql1"], check=True, capture_output=True)
            time.sleep(2)
            subprocess.run(["virsh", "-c", h1.uri, "resume", "sql1"], check=True, capture_output=True)
            time.sleep(1.5)
            restart_database(state.require_up(LAB), "sql1")

        code2, doc2, _, err = watch_beside(LAB, suspend_then_restart, "--vm", "sql1", "--for", "9s", "--warmup", "1s",
                                           "--cooldown", "2s", "--max-blackout-ms", "1000")
        f2, by2 = doc2["figures"], {c["name"]: c for c in doc2["checks"]}
        assert code2 == 1 and doc2["verdict"] == "FAIL" and by2["blackout"]["valid"] is False, err[-2000:]
        assert f2["lost_writes"] == 0 and by2["lost-writes"]["valid"] is True
        unexplained = [o for o in f2["outages"] if not o["explained"]]
        paused = [o for o in unexplained if o["hypervisor"]]
        assert len(paused) == 1 and 1800 <= paused[0]["ms"] <= 6000, f2["outages"]
        assert paused[0]["hypervisor"] == ["paused on h1 (paused), resumed on h1"], unexplained
        # the restart: named by the server's start time, its errors told apart, every client back
        restarted = [o for o in unexplained if o["database"]]
        assert len(restarted) == 1 and restarted[0] is not paused[0], f2["outages"]
        assert by2["server"]["valid"] is False and "the database restarted at" in by2["server"]["message"], by2["server"]
        errs = by2["errors"]["figures"]
        assert errs["lost_connections"] >= 1 and errs["statement_errors"] == 0 and errs["clients_never_back"] == [], errs
        figures["watch: someone's 2 s suspend, then a restart"] = (
            f"unexplained outages of {paused[0]['ms']} ms (paused) and {restarted[0]['ms']} ms "
            f"({restarted[0]['database'][0]}), {errs['lost_connections']} lost connection(s), "
            f"{errs['statement_errors']} statement errors, verdict {doc2['verdict']}, {f2['lost_writes']} lost")

        # 3. the same database as "any database": by its connection string, from a management
        # station on the cluster network (the client namespace), the password in a file, no lab
        from availlab.lab.credentials import DB_NAME, DB_USER, secrets_dir

        addr = st.vms["sql1"].address
        r3 = cli(LAB, "watch", "--dsn", f"Server={addr};Database={DB_NAME};UID={DB_USER}", "--vm", "app",
                 "--password-file", str(secrets_dir(LAB) / "db-password"), "--for", "2s", "--warmup", "0s",
                 "--cooldown", "0s", "--metrics-textfile", str(tmp_path / "availlab.prom"), netns=st.client_namespace)
        doc3, run3 = _results(r3)
        f3 = doc3["figures"]
        assert r3.returncode == 0 and doc3["verdict"] == "PASS", r3.stderr[-3000:]
        assert f3["ops"] > 50 and f3["failed_ops"] == 0 and f3["lost_writes"] == 0 and f3["hypervisor_pauses"] == []
        assert "no hypervisor host to watch" in (run3 / "50-watch.ipynb").read_text()
        from prometheus_client.parser import text_string_to_metric_families  # node_exporter's textfile, parsed

        prom = {s.name: s for f in text_string_to_metric_families((tmp_path / "availlab.prom").read_text())
                for s in f.samples}
        assert prom["availlab_run_passed"].value == 1.0 and prom["availlab_run_passed"].labels["vm"] == "app"
        oks = [r for r in map(json.loads, (run3 / "history.jsonl").read_text().splitlines())
               if r.get("type") == "ok" and "client" in r]
        assert prom["availlab_client_operation_latency_seconds_count"].value == len(oks) > 50
        assert (secrets_dir(LAB) / "db-password").read_text().strip() not in (run3 / "50-watch.ipynb").read_text()
        from availlab.clients.sql import run_sql  # nothing of availlab's left in "anyone's" database

        assert run_sql(st, "sql1", "SELECT count(*) FROM pg_class WHERE relname = 'availlab_kv'") == [(0,)]
        figures["watch --dsn (any database)"] = f"{f3['ops']} ops, {f3['failed_ops']} failed, {f3['lost_writes']} lost"

        # ... and as a user who may write nothing (PostgreSQL 15: no CREATE on public for a new role),
        # its password in the environment: --read-only passes on what it can judge
        with provider(st).connect(lab.running_host(st, "sql1")) as hv:
            code, err = exec_wait(hv, "sql1", "/usr/bin/su", ["postgres", "-s", "/bin/sh", "-c",
                                                              "psql -q -c \"CREATE ROLE watcher LOGIN PASSWORD 'w4tch'\""])
        assert code == 0, err
        dsn = f"Server={addr};Database={DB_NAME};UID=watcher"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AVAILLAB_TEST_WATCHER_PW", "w4tch")
            r4 = cli(LAB, "watch", "--dsn", dsn, "--vm", "app", "--password-env", "AVAILLAB_TEST_WATCHER_PW",
                     "--read-only", "--for", "2s", "--warmup", "0s", "--cooldown", "0s", "--json",
                     netns=st.client_namespace)
        said = json.loads(r4.stdout)  # --json: what a pipeline reads instead of the lines
        assert (said["verdict"], said["exit_code"]) == ("PASS", 0), r4.stderr[-3000:]
        doc4 = json.loads((Path(said["run_folder"]) / "results.json").read_text())
        by4 = {c["name"]: c for c in doc4["checks"]}
        assert r4.returncode == 0 and doc4["verdict"] == "PASS", r4.stderr[-3000:]
        assert doc4["figures"]["ops"] > 20 and doc4["figures"]["lost_writes"] is None
        assert by4["lost-writes"]["valid"] == "unknown" and by4["lost-writes"]["message"].startswith("not run")

        # 4. the watcher's connection cannot change anything
        with provider(st).observe("h1") as ro, pytest.raises(AvailLabError, match="read only|read-only"):
            ro.resume("sql1")
        assert wait_until(lambda: lab.locate_vm(state.require_up(LAB), "sql1") == ("h1", "running"), 5, 0.2)
