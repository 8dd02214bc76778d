"""VMs restored from a booted template, on the real lab: two labs start their first VM from one
template at the same moment (one builds it, the other waits and restores); each answers with its
own lab's password (never the template's or the other lab's), has its own disk and a clock set
to now, and migrates live like a cold-booted VM. (Runbooks 10 and 20 run on template-started VMs
in their own tests.)"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

from availlab.clients.sql import _call, dsn_for, run_sql
from availlab.events.migration import live_migrate
from availlab.lab import providers as lab
from availlab.lab import state
from availlab.lab.credentials import DB_USER, db_password
from availlab.lab.image import ensure_image
from availlab.lab.providers import provider
from availlab.scenarios import steps
from availlab.vm import create as vm
from availlab.vm import template

from .conftest import clean_lab

LABS = {"itpa": 2, "itpb": 1}
VM = "race1"  # a name of its own: its template is built by this test, and removed after it


def _login(st: state.LabState, password: str) -> dict:
    dsn = replace(dsn_for(st, VM), password=password)
    return _call(st, dsn, {"mode": "query", "sql": "SELECT current_user", "params": []}, 30)


def _clock_skew_s(st: state.LabState) -> float:
    host = lab.running_host(st, VM)
    with provider(st).connect(host) as hv:
        return abs(hv.agent_command(VM, {"execute": "guest-get-time"}) - time.time_ns()) / 1e9


def test_two_labs_start_from_one_template_at_once_each_with_its_own_identity(figures):
    image = ensure_image()
    _discard_own(image)  # "one builds, one waits" needs no template of this name yet
    try:
        with clean_lab("itpa"), clean_lab("itpb"):
            for name, hosts in LABS.items():
                steps.ensure_lab(name, hosts)
            ready, errors = {}, {}

            def create(name: str) -> None:
                try:
                    ready[name] = vm.create(name, VM, "h1")
                except BaseException as exc:  # reported below, with the other lab's outcome
                    errors[name] = exc

            threads = [threading.Thread(target=create, args=(n,)) for n in LABS]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=900)
            assert not errors and len(ready) == 2, (errors, ready)
            assert {r.start for r in ready.values()} == {"template"}, ready
            assert len([r for r in ready.values() if r.template_build_s]) == 1, ready  # one built, one waited
            sts = {n: state.require_up(n) for n in LABS}
            origin = {sts[n].vms[VM].started_from for n in LABS}
            assert len(origin) == 1 and next(iter(origin)).startswith("template "), origin  # one template
            digest = next(iter(origin)).split()[1]
            template_pw = (image.directory / "templates" / digest / "password").read_text().strip()

            a, b = sts["itpa"], sts["itpb"]
            assert db_password("itpa") != db_password("itpb")
            for st, other in ((a, b), (b, a)):
                assert run_sql(st, VM, "SELECT current_user") == [(DB_USER,)]
                assert not _login(st, template_pw).get("ok"), "the template's password must not log in"
                assert not _login(st, db_password(other.lab)).get("ok"), "another lab's password must not log in"
                with provider(st).connect("h1") as hv:
                    assert hv.agent_command(VM, {"execute": "guest-get-host-name"})["host-name"] == VM

            run_sql(a, VM, "CREATE TABLE only_in_a (k int)")  # one template, two disks
            assert run_sql(b, VM, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'") == [(0,)]

            # a later restore: the guest's clock resumes where the template's stopped, then is set
            vm.delete("itpb", VM)
            time.sleep(8)
            again = vm.create("itpb", VM, "h1")
            assert again.start == "template" and not again.template_build_s
            skew = _clock_skew_s(state.require_up("itpb"))
            assert skew < 2, f"the restored guest's clock is {skew:.1f} s off (the template was saved >= 8 s ago)"

            rec = live_migrate(a, VM, "h2")  # a restored VM migrates like any other
            assert rec.ok, rec.error
            assert lab.running_host(a, VM) == "h2" and run_sql(a, VM, "SELECT count(*) FROM only_in_a") == [(0,)]
            figures["template start (two labs at once)"] = ", ".join(
                f"{n}: restore -> ready {r.boot_to_db_s:.2f} s" + (f" (built it: {r.template_build_s:.1f} s)"
                                                                   if r.template_build_s else "")
                for n, r in sorted(ready.items())) + f"; later restore {again.boot_to_db_s:.2f} s, clock {skew:.2f} s off"
    finally:
        _discard_own(image)


def _discard_own(image) -> None:
    """This test's template: built by it, for it (also one a killed run left behind)."""
    for record in (image.directory / "templates").glob("[0-9a-f]*/template.json"):
        try:
            key = template.TemplateKey(**json.loads(record.read_text())["key"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found = template.find(image, key) if key.name == VM else None
        if found:
            template.discard(image, found, "built by the test, for the test")
