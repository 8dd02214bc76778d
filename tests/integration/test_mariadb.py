"""Runbook 20 (as a restore drill) and a watch of killed sessions and a server restart on the
MariaDB guest image: the dialect layer end to end, with Debian's mariadb-server in the guest, the
MariaDB ODBC driver and mariadb-dump in the client namespace. (Runbook 10's checks of a MariaDB VM live-migrated
under load: runbook 60's test, whose sql1 is MariaDB.)"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from availlab import paths
from availlab.errors import UsageError
from availlab.lab import state
from availlab.scenarios.lab_view import Lab
from availlab.scenarios.steps import ensure_lab, ensure_vm
from availlab.vm.guest import restart_database

from .conftest import assert_no_secret, assert_outcomes, clean_lab, cli, run_runbook, watch_beside

LAB = "imdb"


def test_the_runbooks_pass_on_mariadb(figures):
    try:
        runbooks_on_mariadb(figures)
    finally:
        shutil.rmtree(state.lab_root(LAB), ignore_errors=True)  # the drill's DR site outlives `lab down`


def runbooks_on_mariadb(figures):
    with clean_lab(LAB):
        # the VM from its template; runbook 10's checks of it live-migrated under load: runbook 60's
        # test, whose sql1 is MariaDB
        ensure_vm(ensure_lab(LAB, 2), "sql1", "h1", "mariadb")
        vm = state.load(LAB).vms["sql1"]
        assert vm.database == "mariadb" and vm.started_from.startswith("template")
        # the same VM name cannot silently serve a PostgreSQL claim (a runbook says it with exit 2:
        # test_runbook_smoke; here the step that refuses, in-process)
        with pytest.raises(UsageError, match="database: VM 'sql1' runs mariadb, not postgresql"):
            ensure_vm(Lab.load(LAB), "sql1", "h1", "postgresql")
        q = cli(LAB, "sql", "sql1", "SELECT VERSION(), @@version_comment")
        assert q.returncode == 0 and "MariaDB" in q.stdout and "Debian" in q.stdout, q.stdout + q.stderr
        watched = watch_kills_and_a_restart_on_mariadb(figures)
        drill = backup_restore_drill_on_mariadb(figures)
        assert_no_secret(LAB, watched, drill)
        # a template-started MariaDB guest once hung in a block-layer worker: never again unseen
        console = Path(state.load(LAB).vms["sql1"].console_log).read_text(errors="replace")
        assert "soft lockup" not in console and "hung_task" not in console


def watch_kills_and_a_restart_on_mariadb(figures) -> Path:
    """`availlab watch` of a MariaDB VM whose sessions a DBA kills (the MariaDB profile's own
    statements, as the kill-db-sessions fault runs them) and whose server someone then restarts:
    the restart named by the server's new start time beside its outage, the MariaDB driver's
    errors all lost connections (none a failed statement), every client back, nothing lost."""
    from availlab.clients.sql import run_sql
    from availlab.dialects import MARIADB

    killed: list[int] = []

    def kill_then_restart() -> None:
        st = state.require_up(LAB)
        for (sid,) in run_sql(st, "sql1", MARIADB.other_sessions):
            run_sql(st, "sql1", MARIADB.kill_session.format(id=int(sid)))
            killed.append(int(sid))
        time.sleep(1.5)
        restart_database(st, "sql1")

    code, doc, folder, err = watch_beside(LAB, kill_then_restart, "--vm", "sql1", "--for", "7s", "--warmup", "1s",
                                          "--cooldown", "2s")
    f, by = doc["figures"], {c["name"]: c for c in doc["checks"]}
    assert len(killed) >= 2, killed  # the watch's clients and probe, ended server-side
    assert code == 1 and f["lost_writes"] == 0 and by["lost-writes"]["valid"] is True, err[-3000:]
    assert by["server"]["valid"] is False and "mariadb: the database restarted at" in by["server"]["message"]
    (restart,) = [o for o in f["outages"] if o["database"]]
    assert not restart["explained"] and restart["database"][0].startswith("the database restarted"), f["outages"]
    errs = by["errors"]["figures"]
    assert errs["lost_connections"] >= 2 and errs["statement_errors"] == 0 and errs["clients_never_back"] == [], errs
    figures["watch on mariadb: sessions killed, then a restart"] = (
        f"{len(killed)} sessions killed; outage {restart['ms']} ms ({restart['database'][0]}), "
        f"{errs['lost_connections']} lost connection(s), {errs['statement_errors']} statement errors, "
        f"{f['lost_writes']} lost")
    return folder


def backup_restore_drill_on_mariadb(figures) -> Path:
    """Runbook 20 on MariaDB, as a restore drill: backups under load (no CHECKPOINT: InnoDB's redo
    log makes the frozen image consistent), mariadb-dump, replication, the newest set restored
    beside the running VM on the other host, checked, then removed; nothing is lost."""
    import json

    from availlab.lab import providers

    host = providers.running_host(state.load(LAB), "sql1")
    r, run_dir = run_runbook(LAB, paths.project_root() / "runbooks" / "20-backup-restore.ipynb",
                             "database", "mariadb", "drill", "True", "instant_restore", "False",
                             "between_s", "3.0")
    doc, timings = assert_outcomes(r, run_dir)
    f = doc["figures"]
    assert f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0 and f["ops"] > 100
    assert f["drill"] is True and f["rpo_s"] > 0 and f["rto_s"] > 0 and f["rto_instant_s"] is None
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["restore"]["valid"] is True and checks["restore"]["figures"]["dump_tool"] == "mariadb-dump"
    assert checks["rpo"]["figures"]["acknowledged_before_backup"] > 0
    assert (run_dir / "sql1.sql").is_file()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    restored = next(e for e in events if e["type"] == "restore")
    assert restored["vm"] == "sql1-drill" and restored["host"] != host
    assert not any(e["type"] == "host-lost" for e in events)
    st = state.load(LAB)  # the drill's VM is gone; the VM it drilled still serves where it was
    assert "sql1-drill" not in st.vms and providers.locate_vm(st, "sql1-drill") is None
    assert providers.locate_vm(st, "sql1") == (host, "running")
    figures["runbook_20 on mariadb (restore drill)"] = (
        f"ops {f['ops']}, failed {f['failed_ops']}, lost {f['lost_writes']}, freeze windows "
        f"{f['freeze_windows_ms']} ms, max blackout {f['longest_blackout_ms']} ms, RTO {f['rto_s']} s, "
        f"RPO {f['rpo_s']} s; {timings}")
    return run_dir
