"""Runbook 60 on the lab (issue 31): Patch Tuesday for the whole cluster.

1. 3 hosts, 3 VMs (2 PostgreSQL, 1 MariaDB; two of them on h1), each with its own clients: every
   host in turn drained (h1's two VMs at once, max_concurrent 2), really restarted as a reboot
   would (action restart-host: a new network namespace, a new libvirtd PID, the same host UUID,
   and the host answers with its capabilities again), resumed. Then `restart-daemon` on the host
   left empty. PASS on the outcomes: 0 failed and 0 lost on every VM, each host empty while it
   was maintained (asserted from the events themselves), every VM back where it ran. The report
   renders in headless Chromium with its plots.
2. A failure mid-rollout: the target's libvirtd killed during the first drain. The rollout stops
   (no further host is drained), every VM still answers SQL, and the report names what was not done.
3. A rebalance resume: h3 drained, then resumed with --rebalance, takes a VM from h1 (the busiest),
   not the one its drain moved.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from availlab import paths
from availlab.clients.sql import run_sql
from availlab.events import maintenance
from availlab.history import now_ns, read_jsonl
from availlab.lab import local, state
from availlab.lab import providers as lab
from availlab.waiting import wait_until

from .conftest import assert_outcomes, chromium_dom, clean_lab, cli, run_runbook

LAB = "iroll"
RUNBOOK = paths.project_root() / "runbooks" / "60-rolling-maintenance.ipynb"
# sql1's MariaDB template and sql2's PostgreSQL one are the suite's (test_mariadb, test_dynamic_resources)
VMS = {"sql1": "mariadb", "sql2": "postgresql", "sql3": "postgresql"}


def _host_at(events: list[dict], vm: str, planned: str, t: int) -> str:
    """Where `vm` ran at time t, from the migrations the events recorded."""
    at = planned
    for m in events:
        if m.get("type") == "migration" and m.get("ok") and m["vm"] == vm and int(m["t1"]) <= t:
            at = m["target"]
    return at


def test_every_host_maintained_in_turn_keeps_every_vm_and_every_write(figures, tmp_path):
    with clean_lab(LAB):
        assert cli(LAB, "lab", "up", "--hosts", "3").returncode == 0
        for vm in ("sql1", "sql2"):  # both on h1, so its drain has two VMs to move at once
            r = cli(LAB, "vm", "create", vm, "--host", "h1", "--database", VMS[vm])
            assert r.returncode == 0, r.stderr[-2000:]
        r, run_dir = run_runbook(LAB, RUNBOOK, "hosts", "3", "vms", json.dumps(VMS), "warmup_s", "0.5",
                                 "cooldown_s", "1.0", "max_concurrent", "2", "action", "restart-host")
        doc, timings = assert_outcomes(r, run_dir)
        f, by = doc["figures"], {c["name"]: c for c in doc["checks"]}
        assert all(by[c]["valid"] is True for c in ("rollout", "empty", "placement")), by
        for vm, db in VMS.items():
            v = f["vms"][vm]
            assert (v["database"], v["failed_ops"], v["info_ops"], v["lost_writes"]) == (db, 0, 0, 0), (vm, v)
            assert v["ops"] > 100 and by[f"{vm}: lost-writes"]["valid"] is True and by[f"{vm}: server"]["valid"] is True
        events = read_jsonl(run_dir / "events.jsonl")
        rollout = next(e for e in events if e["type"] == "rollout")
        maint = [e for e in events if e["type"] == "maintenance"]
        assert [m["host"] for m in maint] == rollout["order"] and len(maint) == 3, rollout
        assert rollout["order"][-1] == "h1" and rollout["max_concurrent"] == 2, rollout  # fewest VMs first
        h1 = next(e for e in events if e["type"] == "host-drain" and e["host"] == "h1")
        moved = [e for e in events if e["type"] == "migration" and e["source"] == "h1" and h1["t0"] <= e["t0"] <= h1["t1"]]
        assert len(moved) == 2 and max(m["t0"] for m in moved) < min(m["t1"] for m in moved), moved  # at once
        assert all(m["ok"] and m["new_pid"] != m["old_pid"] and m["new_namespace"] != m["old_namespace"]
                   and m["host_uuid"] for m in maint), maint
        for m in maint:  # empty while maintained: where every VM was, from its migrations
            for t in (m["t0"], m["t1"]):
                assert all(_host_at(events, vm, rollout["planned"][vm], t) != m["host"] for vm in VMS), (m, vm)
        st = state.require_up(LAB)
        assert {vm: lab.locate_vm(st, vm) for vm in VMS} == {vm: (h, "running") for vm, h in rollout["planned"].items()}
        empty = next(h for h in st.hosts if h not in rollout["planned"].values())
        done = maintenance.action("restart-daemon", st).perform(st, empty)  # the other action, on the host left empty
        assert done["new_pid"] != done["old_pid"] and done["host_uuid"], done
        assert all((run_dir / vm / "report.html").is_file() for vm in VMS)
        dom = chromium_dom(run_dir / "report.html", tmp_path)
        assert 'data-plots-ok="2"' in dom and "<table id=\"hosts\">" in dom and "sql3/report.html" in dom, dom[:500]
        figures["runbook_60 (3 hosts, 3 VMs, each host restarted, h1's 2 VMs moved at once)"] = (
            f"{len(f['migrations'])} migrations in {f['rollout_s']} s; longest blackout per VM "
            + ", ".join(f"{vm} {f['vms'][vm]['longest_blackout_ms']} ms" for vm in VMS)
            + f"; ops {f['ops']}, failed {f['failed_ops']}, lost {f['lost_writes']}; {timings}")

        a_failure_mid_rollout_stops_it_and_every_vm_still_answers(tmp_path / "killed", figures)
        a_rebalance_resume_fills_the_emptied_host_from_the_busiest()


def a_failure_mid_rollout_stops_it_and_every_vm_still_answers(out: Path, figures) -> None:
    """The first drain's target loses its libvirtd as the migration starts: the rollout stops with
    no further host drained, every VM answers SQL, the report says what was not done."""
    from availlab.scenarios import steps
    from availlab.scenarios.params import RUNBOOKS

    watched = {"sql1": VMS["sql1"]}  # clients on the VM the first drain moves; every VM is asked after
    config = RUNBOOKS["60-rolling-maintenance"].parse({"lab": LAB, "vms": watched, "order": ["h1", "h2", "h3"],
                                                       "warmup_s": 0.5, "cooldown_s": 0.5})
    run = steps.open_run("60-rolling-maintenance", str(out), config.parameters)
    killed: list[int] = []
    since = now_ns()

    def kill_the_first_target() -> None:  # the lab's own daemon, by its PID
        def started() -> dict | None:
            return next((e for e in read_jsonl(run.events_path)
                         if e.get("type") == "migration-start" and e["t"] >= since), None)
        m = wait_until(started, 120, 0.02)
        if m:
            pid = local.host_daemon(state.require_up(LAB).hosts[m["target"]]).pid()
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    killer = threading.Thread(target=kill_the_first_target, daemon=True)
    killer.start()
    try:
        rollout = steps.rolling_maintenance(run, steps.Lab.load(LAB), list(watched), config.workload, config.tuning,
                                            order=config.order, warmup_s=config.warmup_s,
                                            cooldown_s=config.cooldown_s)
    finally:
        killer.join(5)
        local.restart_daemons(state.require_up(LAB))  # what `lab up` repairs
    assert killed, "the first drain's target was never killed"
    assert [r.host for r in rollout.rounds] == ["h1"] and rollout.not_done == ["h2", "h3"], rollout
    judged = steps.judge_rollout(run, list(watched), config.slo)
    by = {c.name: c for c in judged.results.checks}
    assert judged.results.verdict == "FAIL" and by["rollout"].valid is False, by["rollout"]
    assert "not done: h2, h3" in by["rollout"].message and "drain of h1 stopped" in by["rollout"].message
    drained = [e["host"] for e in read_jsonl(run.events_path) if e["type"] == "host-drain"]
    assert drained == ["h1"]  # no further host was drained
    st = state.require_up(LAB)
    for vm in VMS:  # every VM still runs somewhere and answers
        assert lab.locate_vm(st, vm)[1] == "running" and run_sql(st, vm, "SELECT 1") == [(1,)], vm
    assert judged.per_vm["sql1"][0].figures["lost_writes"] == 0 and judged.per_vm["sql1"][0].figures["failed_ops"] == 0
    page = steps.write_rollout_report(run, judged).report.read_text()
    assert "not done: h2, h3" in page
    figures["runbook_60: the first drain's target libvirtd killed"] = (
        f"rollout stopped after {rollout.rounds[0].host}: {by['rollout'].message}")


def a_rebalance_resume_fills_the_emptied_host_from_the_busiest() -> None:
    """After the failed round h1 is still drained and runs two VMs: resuming it with --rebalance
    moves nothing (it is the busiest), but takes it into placement again. Then h3's drain moves
    sql3 to the least loaded host, and h3's rebalance takes a VM from h1 (the busiest), not sql3."""
    r = cli(LAB, "host", "resume", "h1", "--rebalance", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["migrations"] == [], r.stdout + r.stderr[-2000:]
    assert "h1" not in state.require_up(LAB).drained
    assert cli(LAB, "host", "drain", "h3").returncode == 0
    r = cli(LAB, "host", "resume", "h3", "--rebalance", "--json")
    moved = [(m["vm"], m["source"], m["target"], m["ok"]) for m in json.loads(r.stdout)["migrations"]]
    assert r.returncode == 0 and len(moved) == 1 and moved[0][1:] == ("h1", "h3", True), r.stdout + r.stderr[-2000:]
    assert moved[0][0] != "sql3"  # not what h3's drain moved: a VM from the busiest host
    st = state.require_up(LAB)
    assert sorted(lab.locate_vm(st, vm)[0] for vm in VMS) == ["h1", "h2", "h3"] and not st.drained
