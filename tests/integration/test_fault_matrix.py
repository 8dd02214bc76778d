"""The fault-matrix runbook on the real lab: every migration fault, clients running."""

from __future__ import annotations

import json

from availlab import paths

from .conftest import assert_no_secret, assert_outcomes, clean_lab, run_runbook

LAB = "iflt"


def test_every_migration_fault_keeps_the_vm_and_every_write(figures):
    with clean_lab(LAB):
        r, run_dir = run_runbook(LAB, paths.project_root() / "runbooks" / "40-fault-matrix.ipynb",
                                 "warmup_s", "1.0", "cooldown_s", "1.0", "cut_s", "3.0")
        doc, timings = assert_outcomes(r, run_dir)
        rows = {row["fault"]: row for row in doc["figures"]["faults"]}
        assert set(rows) == {"abort-migration", "kill-dest-libvirtd", "kill-dest-qemu", "cut-migration-link",
                             "agent-hang-during-freeze", "backup-storage-full", "kill-db-sessions"}
        for fault, row in rows.items():
            assert row["verdict"] == "PASS", (fault, row)
            assert row["struck"] is True and row["evidence"], (fault, row)  # each proved it acted
            assert row["lost_writes"] == 0, (fault, row)
            if fault != "kill-db-sessions":  # there, clients are meant to see the lost connection
                assert row["failed_ops"] == 0 and row["info_ops"] == 0, (fault, row)
            assert row["vm_host_after"] in ("h1", "h2"), (fault, row)
        # the three faults that kill the migration leave the VM on its source
        for fault in ("abort-migration", "kill-dest-libvirtd", "kill-dest-qemu"):
            assert rows[fault]["completed"] is False
        assert any("restarted" in x for x in rows["kill-dest-libvirtd"]["repairs"])
        # the backup faults: the backup fails for the stated reason, nothing half-made stays behind
        hang, full = rows["agent-hang-during-freeze"], rows["backup-storage-full"]
        assert hang["completed"] is False and "did not freeze the filesystems" in hang["error"]
        assert "not responding" in hang["error"]  # libvirt's own words for an agent that timed out
        assert full["completed"] is False and "No space left on device" in full["error"]
        for row in (hang, full):
            assert row["details"]["guest_thawed"] is True and row["details"]["partial_sets_left"] == [], row
            assert "catalogued" not in row["details"], row
        assert full["repairs"] == ["48M volume removed from h1"] or full["repairs"] == ["48M volume removed from h2"]
        killed = rows["kill-db-sessions"]
        assert killed["completed"] is True and killed["details"]["killed"] >= 2, killed  # one per client
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        assert not [e for e in events if e.get("type") == "backup"]  # no set was ever completed
        assert "id='faults'" in (run_dir / "report.html").read_text()
        assert_no_secret(LAB, run_dir)

        # a fault that cannot strike says so, and its row is UNKNOWN: no workload, no session to end
        from availlab.checks import SLO, check_matrix
        from availlab.events.faults import inject
        from availlab.lab import providers as lab
        from availlab.lab import state

        st = state.require_up(LAB)
        here = lab.locate_vm(st, "sql1")[0]
        rec = inject(st, "sql1", next(h for h in st.hosts if h != here), "kill-db-sessions")
        assert rec.struck is False and "no session was ended (0 found)" in rec.evidence, rec
        res = check_matrix([{"type": "fault-begin", "t": rec.t0, "fault": rec.fault},
                            {"type": "fault-end", "t": rec.t1, "fault": rec.fault}], [rec.to_event()], SLO())
        assert res.verdict == "UNKNOWN" and "fault did not strike: no session was ended" in res.checks[-1].message
        figures["runbook_40 fault matrix"] = "; ".join(
            f"{f}: VM on {r['vm_host_after']}, {r['failed_ops']} failed, {r['lost_writes']} lost, "
            f"blackout {r['blackout_ms']} ms" for f, r in rows.items()) + f"; {timings}"
