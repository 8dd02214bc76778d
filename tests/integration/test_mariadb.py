"""The live-migration runbook on the MariaDB guest image: the dialect layer end to end, with
Debian's mariadb-server in the guest and the MariaDB ODBC driver in the client namespace."""

from __future__ import annotations

from pathlib import Path

from availlab import paths
from availlab.lab import state

from .conftest import assert_no_secret, assert_outcomes, clean_lab, cli, run_runbook

LAB = "imdb"


def test_live_migration_runbook_passes_on_mariadb(figures):
    with clean_lab(LAB):
        r, run_dir = run_runbook(LAB, paths.project_root() / "runbooks" / "10-live-migration.ipynb",
                                 "database", "mariadb")
        doc, timings = assert_outcomes(r, run_dir)
        f = doc["figures"]
        assert f["database"] == "mariadb"
        assert f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0 and f["ops"] > 100
        assert len(f["migrations"]) == 2 and all(m["ok"] for m in f["migrations"])
        server = next(c for c in doc["checks"] if c["name"] == "server")
        assert server["valid"] is True and "MariaDB" in server["figures"]["server_version"]
        vm = state.load(LAB).vms["sql1"]
        assert vm.database == "mariadb" and vm.started_from.startswith("template")
        # the same VM name cannot silently serve a PostgreSQL claim
        r2, _ = run_runbook(LAB, paths.project_root() / "runbooks" / "10-live-migration.ipynb",
                            "database", "postgresql")
        assert r2.returncode == 2 and "database: VM 'sql1' runs mariadb, not postgresql" in r2.stderr
        q = cli(LAB, "sql", "sql1", "SELECT @@version_comment")
        assert q.returncode == 0 and "Debian" in q.stdout

        # the MariaDB ODBC driver's errors, judged by the MariaDB profile: the server ends every
        # client session; each error must be recognised as a lost connection, clients go on
        r3, fm_dir = run_runbook(LAB, paths.project_root() / "runbooks" / "40-fault-matrix.ipynb",
                                 "database", "mariadb", "faults", '["kill-db-sessions", "abort-migration"]')
        fm_doc, _ = assert_outcomes(r3, fm_dir)
        rows = {row["fault"]: row for row in fm_doc["figures"]["faults"]}
        killed = rows["kill-db-sessions"]
        assert killed["verdict"] == "PASS" and killed["lost_writes"] == 0 and killed["details"]["killed"] >= 2
        assert rows["abort-migration"]["verdict"] == "PASS" and rows["abort-migration"]["lost_writes"] == 0
        assert_no_secret(LAB, run_dir)
        # a template-started MariaDB guest once hung in a block-layer worker: never again unseen
        console = Path(state.load(LAB).vms["sql1"].console_log).read_text(errors="replace")
        assert "soft lockup" not in console and "hung_task" not in console
        figures["runbook_10 on mariadb"] = (f"ops {f['ops']}, failed {f['failed_ops']}, lost {f['lost_writes']}, "
                                            f"max blackout {f['max_blackout_ms']} ms; {timings}")
