"""Migration's network edge cases on the real lab."""

from __future__ import annotations

import json
import subprocess

from availlab.lab import providers as lab, netns, state
from availlab.scenarios import steps
from availlab.vm import create as vm
from availlab.events.migration import live_migrate, migration_tuning
from availlab.history import JsonlWriter

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
                rec = live_migrate(st, "sql1", "h2", migration_tuning(timeout_s=15), ev)
        finally:
            netns.set_link(st.switch_namespace, "p-h2", up=True)
        assert not rec.ok, "a migration over a pulled cable cannot succeed"
        assert "timeout_s=15" in rec.error or "connect" in rec.error, rec.error
        events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
        [attempt] = [e for e in events if e["type"] == "migration"]
        assert attempt["diagnostics"]["namespaces"] and attempt["diagnostics"]["libvirtd_log_tail"]
        assert lab.locate_vm(state.require_up(LAB), "sql1") == ("h1", "running")
