"""Migration's network edge cases on the real lab."""

from __future__ import annotations

import json
import subprocess

from availlab.events.migration import live_migrate, migration_tuning
from availlab.history import JsonlWriter
from availlab.lab import netns, state
from availlab.lab import providers as lab
from availlab.scenarios import steps
from availlab.vm import create as vm

from .conftest import clean_lab

LAB = "inet"


def test_bridge_mac_is_fixed_so_a_joining_tap_cannot_take_it(tmp_path):
    """Regression: a host bridge used to adopt the lowest port MAC. With h2's uplink MAC above the
    taps' fe:54:00:..., the destination tap's MAC (the same as the VM's tap on h1) became h2's
    bridge MAC, and h1 delivered its migration SYNs to its own tap: 'Connection timed out'."""
    with clean_lab(LAB):
        steps.ensure_lab(LAB, 2)
        subprocess.run(["ip", "-n", f"availlab-{LAB}-h2", "link", "set", "eth0", "address",
                        "fe:ff:ff:ff:ff:fe"], check=True)
        vm.create(LAB, "sql1", "h1")
        st = state.require_up(LAB)
        for target in ("h2", "h1"):
            rec = live_migrate(st, "sql1", target, migration_tuning(timeout_s=60))
            assert rec.ok, rec.error
        macs = {link["ifname"]: link["mac"] for link in netns.snapshot(f"availlab-{LAB}-h2")["links"]}
        assert macs["br0"] == "02:00:0a:d5:00:0c"

        # the target's cable out before a migration: it fails (a connect error, or the timeout,
        # which the poller enforces even while the data connection is still being opened), it is
        # recorded with diagnostics, and the VM stays where it was
        netns.set_link(st.switch_namespace, "p-h2", up=False)
        try:
            with JsonlWriter(tmp_path / "events.jsonl") as ev:
                rec = live_migrate(st, "sql1", "h2", migration_tuning(timeout_s=5), ev)
        finally:
            netns.set_link(st.switch_namespace, "p-h2", up=True)
        assert not rec.ok, "a migration over a pulled cable cannot succeed"
        assert "timeout_s=5" in rec.error or "connect" in rec.error, rec.error
        events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
        [attempt] = [e for e in events if e["type"] == "migration"]
        assert attempt["diagnostics"]["namespaces"] and attempt["diagnostics"]["libvirtd_log_tail"]
        assert lab.locate_vm(state.require_up(LAB), "sql1") == ("h1", "running")


def test_a_copy_storage_move_is_undone_before_the_next_run_needs_shared_storage():
    """Issue 28, seen: after runbook 10 with copy_storage the VM stayed on a host's own storage,
    and every later default run failed ("disk … is not on the lab's shared storage"). A
    copy_storage run now moves the disk home at its end, and a run's VM step does it for a VM
    that was left there: the default migration works again, the data intact."""
    from pathlib import Path

    from availlab.clients.sql import run_sql
    from availlab.events.migration import home_disk

    with clean_lab(LAB):
        steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
        st = state.require_up(LAB)
        run_sql(st, "sql1", "CREATE TABLE kept (k int PRIMARY KEY); INSERT INTO kept VALUES (1), (2), (3)",
                timeout_s=30)
        rec = live_migrate(st, "sql1", "h2", migration_tuning(copy_storage=True, timeout_s=300))
        assert rec.ok, rec.error
        local_disk = Path(state.require_up(LAB).vms["sql1"].disk)
        assert Path(st.shared_dir) not in local_disk.parents and local_disk.is_file()
        assert not home_disk(st, "sql1").exists()

        info = steps.ensure_vm(steps.ensure_lab(LAB, 2), "sql1", "h1")
        assert "shared storage" in info.get("repaired", ""), info
        st = state.require_up(LAB)
        assert Path(st.vms["sql1"].disk) == home_disk(st, "sql1") and home_disk(st, "sql1").is_file()
        assert not local_disk.exists(), "the host-local copy is left behind"
        here = lab.locate_vm(st, "sql1")[0]
        rec = live_migrate(st, "sql1", "h1" if here == "h2" else "h2", migration_tuning(timeout_s=120))
        assert rec.ok, rec.error  # a default (shared-storage) migration, as the next runbook 10 runs
        assert run_sql(st, "sql1", "SELECT count(*) FROM kept", timeout_s=30)[0][0] in (3, "3")
