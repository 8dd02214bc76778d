"""VMs restored from a booted template, on the real lab: two labs start their first VM from one
template at the same moment; each answers with its own lab's password (never the template's or
the other lab's), has its own disk, name and clock, and migrates live like a cold-booted VM.
(Runbooks 10 and 20 run on template-started VMs in their own tests.)"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from availlab import lab, state, steps, vm
from availlab.credentials import DB_USER, db_password
from availlab.events.migration import live_migrate
from availlab.image import ensure_image
from availlab.provider import provider
from availlab.sql import _call, dsn_for, run_sql

from .conftest import clean_lab

LABS = {"itpa": 2, "itpb": 1}


def _login(st: state.LabState, password: str) -> dict:
    dsn = replace(dsn_for(st, "sql1"), password=password)
    return _call(st, dsn, {"mode": "query", "sql": "SELECT current_user", "params": []}, 30)


def test_two_labs_start_from_one_template_at_once_each_with_its_own_identity(figures):
    with clean_lab("itpa"), clean_lab("itpb"):
        for name, hosts in LABS.items():
            steps.ensure_lab(name, hosts)
        ready, errors = {}, {}

        def create(name: str) -> None:
            try:
                ready[name] = vm.create(name, "sql1", "h1")
            except BaseException as exc:  # reported below, with the other lab's outcome
                errors[name] = exc

        threads = [threading.Thread(target=create, args=(n,)) for n in LABS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)
        assert not errors, errors
        assert {r.start for r in ready.values()} == {"template"}, ready
        sts = {n: state.require_up(n) for n in LABS}
        origin = {sts[n].vms["sql1"].started_from for n in LABS}
        assert len(origin) == 1 and next(iter(origin)).startswith("template "), origin  # one template, both labs
        digest = next(iter(origin)).split()[1]
        template_pw = (ensure_image().directory / "templates" / digest / "password").read_text().strip()

        a, b = sts["itpa"], sts["itpb"]
        assert db_password("itpa") != db_password("itpb")
        for st, other in ((a, b), (b, a)):
            assert run_sql(st, "sql1", "SELECT current_user") == [(DB_USER,)]
            assert not _login(st, template_pw).get("ok"), "the template's password must not log in"
            assert not _login(st, db_password(other.lab)).get("ok"), "another lab's password must not log in"
            with provider(st).connect("h1") as hv:
                assert hv.agent_command("sql1", {"execute": "guest-get-host-name"})["host-name"] == "sql1"
                skew = abs(hv.agent_command("sql1", {"execute": "guest-get-time"}) - time.time_ns()) / 1e9
            assert skew < 5, f"the restored guest's clock is {skew:.1f} s off"

        run_sql(a, "sql1", "CREATE TABLE only_in_a (k int)")  # one template, two disks
        assert run_sql(b, "sql1", "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'") == [(0,)]

        rec = live_migrate(a, "sql1", "h2")  # a restored VM migrates like any other
        assert rec.ok, rec.error
        assert lab.running_host(a, "sql1") == "h2" and run_sql(a, "sql1", "SELECT count(*) FROM only_in_a") == [(0,)]
        figures["template start (two labs at once)"] = ", ".join(
            f"{n}: restore -> ready {r.boot_to_db_s:.2f} s" + (f" (built it: {r.template_build_s:.1f} s)"
                                                               if r.template_build_s else "")
            for n, r in sorted(ready.items()))
