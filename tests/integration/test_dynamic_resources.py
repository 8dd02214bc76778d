"""The dynamic-resources runbook on the real lab: automatic and manual PRO tips."""

from __future__ import annotations

import json
import subprocess

import pytest

from availlab import paths
from availlab.lab import providers as lab
from availlab.lab import state

from .conftest import assert_outcomes, clean_lab, run_runbook
from .conftest import cli as lab_cli

LAB = "ipro"
RUNBOOK = paths.project_root() / "runbooks" / "30-dynamic-resources.ipynb"


def cli(*args: str) -> subprocess.CompletedProcess:
    return lab_cli(LAB, *args)


# The noisy neighbour is named as the second VM of other tests' labs: a booted template is one
# per VM name and address (libvirt restores a saved domain only under its own name), so this
# name reuses theirs instead of booting one more template cold (about 17 s each).
HOG = "sql2"


def run(*params: str) -> tuple[dict, str]:
    """The runbook's results.json, its outcomes asserted, and its timing verdicts."""
    r, run_dir = run_runbook(LAB, RUNBOOK, "hog", HOG, *params)
    return assert_outcomes(r, run_dir)


@pytest.fixture(scope="module")
def pro_lab():
    with clean_lab(LAB):
        yield LAB


def test_automatic_mode_moves_the_vm_off_the_overloaded_host(pro_lab, figures):
    doc, timings = run("baseline_s", "5.0", "after_s", "5.0")  # the default 5 s sustained, 1 s samples
    f = doc["figures"]
    assert f["failed_ops"] == 0 and f["info_ops"] == 0 and f["lost_writes"] == 0
    assert f["tips"] and f["tips"][0]["action"] == "migrate" and f["tips"][0]["applied"] is True
    assert f["tips"][0]["host"] == "h1"
    assert len(f["migrations"]) == 1 and f["migrations"][0]["ok"] and f["migrations"][0]["source"] == "h1"
    assert lab.locate_vm(state.require_up(LAB), f["migrations"][0]["vm"]) == (f["migrations"][0]["target"], "running")
    lag = next(c for c in doc["checks"] if c["name"] == "tip-latency")["figures"].get("crossing_to_migration_s")
    figures["runbook_30 automatic"] = (f"tip after {lag} s, p95 {f['p95_before_ms']} / {f['p95_during_ms']} / "
                                      f"{f['p95_after_ms']} ms (before / during / after), {f['ops']} ops, "
                                      f"{f['failed_ops']} failed; {timings}")


def test_manual_mode_records_the_tip_and_moves_nothing_until_approved(pro_lab):
    st = state.require_up(LAB)
    where = {v: lab.locate_vm(st, v)[0] for v in ("sql1", HOG)}
    doc, _ = run("mode", "manual", "approve", "False", "baseline_s", "5.0", "after_s", "3.0", "tip_cooldown_s", "0.0")
    f = doc["figures"]
    assert f["tips"] and all(t["applied"] is False for t in f["tips"])
    assert f["migrations"] == [], "manual mode must not move anything without approval"
    # the scenario first puts both VMs on h1; nothing moved them after that
    st = state.require_up(LAB)
    assert {v: lab.locate_vm(st, v)[0] for v in ("sql1", HOG)} == {"sql1": "h1", HOG: "h1"}, where
    pending = json.loads(cli("tips", "list", "--json").stdout)
    tip = next(t for t in pending if t["action"] == "migrate")
    # two approvals of one tip at once (two operators, one click each): it is applied once
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "availlab.cli", "--lab", LAB, "tips", "apply", str(tip["id"])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.communicate(timeout=600), p.returncode)[::-1] for p in procs)
    assert [rc for rc, _ in results] == [0, 2], results
    assert "no pending migrate tip" in results[1][1][1]
    assert lab.locate_vm(state.require_up(LAB), tip["vm"])[0] == tip["target"]
    saved = json.loads(cli("tips", "list", "--json").stdout)
    assert next(t for t in saved if t["id"] == tip["id"])["applied"] is True


def test_a_start_vm_tip_starts_a_database_vm_from_the_template(pro_lab, tmp_path):
    from availlab.clients.sql import run_sql
    from availlab.history import JsonlWriter
    from availlab.scenarios.dynamic import Controller
    from availlab.scenarios.tips import Tip, policy, rule

    st = state.require_up(LAB)
    with JsonlWriter(tmp_path / "events.jsonl") as ev:
        ctl = Controller(st, [rule(action="start-vm")], policy(mode="manual"), ev)
        ctl.template_prefix = "sql"  # the lab's third VM, sql3: its template is other tests' too (see HOG)
        tip = Tip(1, 0, "host-cpu-high", "h1", None, "start-vm", "h2", 95.0, "start another VM on h2")
        ctl.engine.tips.append(tip)
        done = ctl.apply(1)
        ctl.monitor.close()
    assert done.applied and done.detail["vm"] == "sql3"
    st = state.require_up(LAB)
    assert lab.locate_vm(st, "sql3") == ("h2", "running")
    assert "PostgreSQL" in run_sql(st, "sql3", "SELECT version()")[0][0]
