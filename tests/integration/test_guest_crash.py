"""A guest kernel that crashes while clients run is named, in its own words, by the verdict.

The real event, not a crafted history: the guest kernel is made to panic (sysrq `c`, through the
guest agent) under load, reboots (`panic=-1`), and its database comes back. The run's `server`
check must fail with what the guest console printed, not only see lost connections: once in CI a
guest kernel did crash at a migration (list corruption, docs/lab.md), and the report must say so.
"""

from __future__ import annotations

import contextlib
import time

from availlab.checks import SLO, check_run
from availlab.clients.sql import run_sql
from availlab.clients.workload import Workload, workload_spec
from availlab.errors import AvailLabError
from availlab.history import JsonlWriter, now_ns, read_jsonl
from availlab.lab import state
from availlab.lab.virt import Hypervisor
from availlab.vm import create as vm
from availlab.waiting import wait_until

from .conftest import clean_lab, topology

LAB = "igc"


def _answers(st) -> bool:
    with contextlib.suppress(AvailLabError):
        return bool(run_sql(st, "sql1", "SELECT 1", timeout_s=5))
    return False


def test_a_guest_kernel_crash_under_load_fails_the_run_naming_the_panic(tmp_path, figures):
    from availlab.lab import providers as lab

    with clean_lab(LAB):
        lab.up(topology(LAB, hosts=1))
        vm.create(LAB, "sql1", "h1")
        st = state.require_up(LAB)
        with JsonlWriter(tmp_path / "history.jsonl") as hist:
            wl = Workload(st, "sql1", workload_spec(clients=2), hist).start()
            try:
                assert not wl.wait_all_succeeded()
                hist.write({"type": "warm", "t": now_ns()})
                t0 = time.monotonic()
                with Hypervisor("h1", st.hosts["h1"].uri) as hv, contextlib.suppress(AvailLabError):
                    hv.agent_command("sql1", {"execute": "guest-exec", "arguments": {
                        "path": "/bin/sh", "arg": ["-c", "echo c > /proc/sysrq-trigger"]}})
                assert wait_until(lambda: not _answers(st), 30, 0.2), "the guest kept answering after sysrq c"
                assert wait_until(lambda: _answers(st), 180, 1.0), "the database never came back after the reboot"
                back_s = time.monotonic() - t0
            finally:  # a client whose query the dying kernel acknowledged waits for ever: 5 s is enough
                wl.stop(timeout_s=5)
            wl.final_read()
        res = check_run(read_jsonl(tmp_path / "history.jsonl"), [], SLO())
        server = next(c for c in res.checks if c.name == "server")
        assert server.valid is False and res.verdict == "FAIL"
        assert "the guest kernel crashed and rebooted (boot id" in server.message, server.message
        assert "Kernel panic - not syncing: sysrq triggered crash" in server.message, server.message
        figures["guest kernel crash under load"] = f"named by the server check, database back after {back_s:.1f} s"
