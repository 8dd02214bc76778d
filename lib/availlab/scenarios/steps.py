"""Runbook steps: one call per notebook cell, each returning something worth displaying.

Runbooks hold narrative and parameters (their models: availlab.scenarios.params); the logic is here, so a
runbook cell reads like a line of a change plan ("make sure the lab is up", "make sure the VM
answers") and is tested like code.
"""

from __future__ import annotations

from ..clients.sql import run_sql
from ..dialects import DEFAULT_DATABASE
from ..errors import UsageError
from ..events.migration import bring_home
from ..lab import providers, state
from ..lab.endpoint import endpoint_state
from ..lab.providers import provider
from ..lab.topology import RemoteTopology, Topology, load_topology, with_overrides
from ..paths import lab_dir
from ..vm import create as vm
from .lab_view import Lab  # noqa: F401 - runbooks and scripts name it steps.Lab
from .observe import watch_under_load  # noqa: F401 - runbook 50's cell
from .params import Runbook, Watch
from .rolling import judge_rollout, rolling_maintenance, write_rollout_report  # noqa: F401 - runbook 60
from .run import judge, migrate_under_load, open_run, plan_migrations, require_pass, write_report  # noqa: F401


def lab_topology(name: str, hosts: int | None = None, config: str | None = None) -> Topology | RemoteTopology:
    """The shipped topology (or the user's file) with the runbook's name and host count applied."""
    return with_overrides(load_topology(config or lab_dir() / "default.yaml"), name=name, hosts=hosts)


def ensure_lab(name: str = "default", hosts: int | None = None, config: str | None = None) -> Lab:
    """Use the lab if it is up and healthy, else bring it up (idempotent): the run's one load of
    the lab, handed to every later step."""
    existing = state.load(name)
    if existing and existing.status == "up" and not providers.health(existing):
        st = existing
    else:
        if existing and not provider(existing).offers("rebuild"):  # a cluster is not ours to rebuild
            provider(existing).require("rebuild", problems="; ".join(providers.health(existing)) or existing.status)
        st = providers.up(lab_topology(name, hosts, config))
    return Lab(vm.revive_pending(st))  # a rebuilt lab's VMs, or those a killed run left down


def prepare_lab(config: Runbook) -> Lab:
    """The runbook's lab (brought up if it is not), and every parameter that names a host checked
    against it: the run's preflight, before its first step that changes anything."""
    lab = ensure_lab(config.lab, config.hosts)
    config.preflight(list(lab.st.hosts))
    return lab


def observed_lab(config: Watch) -> Lab:
    """A watch's lab as it is: up already (a watch brings nothing up and starts nothing); or, for
    any database given by its connection string, a lab of no hosts (lab/endpoint.py)."""
    if config.dsn:
        return Lab(endpoint_state(config.vm, config.dsn, config.database, password_file=config.password_file,
                                  password_env=config.password_env))
    lab = Lab.load(config.lab)
    config.preflight(lab.hosts)
    return lab


def ensure_vm(lab: Lab, name: str, host: str, database: str = DEFAULT_DATABASE) -> dict:
    """Use the VM if it runs anywhere in the lab, else create it on `host` and wait for the DB.
    A running VM of another database is refused, not silently used for the wrong claim."""
    st = lab.st
    where = providers.locate_vm(st, name)
    if where:
        have = st.vms[name].database if name in st.vms else DEFAULT_DATABASE
        if have != database:
            raise UsageError(f"database: VM {name!r} runs {have}, not {database}; pick another vm name "
                             f"or delete it (`availlab --lab {lab.name} vm delete {name}`)")
        # paused or shut off by a fault or a killed run: brought back, or refused with the reason
        repaired = vm.revive(lab.name, name) if where[1] not in ("running", "blocked") else ""
        if name in st.vms and bring_home(lab.st, name):  # left on a host's own storage by a copy_storage run
            repaired = (repaired + "; " if repaired else "") + "disk moved back onto the shared storage"
        if repaired:
            lab.refresh()
        host = providers.host_of(lab.st, name) if repaired else where[0]
        return {"vm": name, "host": host, "address": st.vms[name].address, "database": have,
                "created": False, **({"repaired": repaired} if repaired else {})}
    ready = vm.create(lab.name, name, host, database=database)
    lab.refresh()
    return {"vm": name, "host": ready.host, "address": ready.address, "database": database, "created": True,
            "boot_to_db_s": ready.boot_to_db_s, "start": ready.start}


def query(lab: Lab, vm_name: str, statement: str) -> list[tuple]:
    """SQL from the lab's client namespace, the same path the workload clients take."""
    return run_sql(lab.st, vm_name, statement)


def prepare_vms(lab: Lab, vms: dict[str, str], placements: dict[str, str]) -> dict[str, dict]:
    """Every VM of a run of several (runbook 60) answering SQL: each used where it runs, or created
    from its template on its placement; a VM of another database under the same name is refused."""
    return {name: ensure_vm(lab, name, placements[name], db) for name, db in vms.items()}
