"""Runbook steps: one call per notebook cell, each returning something worth displaying.

Runbooks hold narrative and parameters; the logic is here, so a runbook cell reads like a line
of a change plan ("make sure the lab is up", "make sure the VM answers") and is tested like code.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import lab, state, vm
from .checks import SLO, slo as _slo
from .clients import WorkloadSpec, workload_spec
from .errors import UsageError
from .events.migration import MigrationTuning, migration_tuning
from .dialects import dialect
from .paths import lab_dir
from .plans import PLANS
from .provider import provider
from .scenario import (check, migrate_under_load, open_run, plan_migrations,  # noqa: F401
                       require_pass, write_report)
from .sql import run_sql
from .topology import Topology, load_topology, with_overrides


@dataclass(frozen=True)
class LabSummary:
    lab: str
    hosts: list[str]
    accel: str
    accel_reason: str

    def _repr_markdown_(self) -> str:
        return (f"**Lab `{self.lab}`** is up: hosts {', '.join(self.hosts)}; "
                f"accelerator **{self.accel.upper()}** ({self.accel_reason}).")


def lab_topology(name: str, hosts: int | None = None, config: str | None = None) -> Topology:
    return with_overrides(load_topology(config or lab_dir() / "default.yaml"), name=name, hosts=hosts)


def ensure_lab(name: str = "default", hosts: int | None = None, config: str | None = None) -> LabSummary:
    """Use the lab if it is up and healthy, else bring it up (idempotent)."""
    existing = state.load(name)
    if existing and existing.status == "up" and not lab.health(existing):
        st = existing
    else:
        if existing and not provider(existing).offers("rebuild"):  # a cluster is not ours to rebuild
            provider(existing).require("rebuild", problems="; ".join(lab.health(existing)) or existing.status)
        st = lab.up(lab_topology(name, hosts, config))
    return LabSummary(st.lab, list(st.hosts), st.accel.get("accel", "?"), st.accel.get("reason", ""))


def ensure_vm(lab_name: str, name: str, host: str, database: str = "postgresql") -> dict:
    """Use the VM if it runs anywhere in the lab, else create it on `host` and wait for the DB.
    A running VM of another database is refused, not silently used for the wrong claim."""
    st = state.require_up(lab_name)
    where = lab.locate_vm(st, name)
    if where:
        have = st.vms[name].database if name in st.vms else "postgresql"
        if have != database:
            raise UsageError(f"database: VM {name!r} runs {have}, not {database}; pick another vm name "
                             f"or delete it (`availlab --lab {lab_name} vm delete {name}`)")
        # paused or shut off by a fault or a killed run: brought back, or refused with the reason
        repaired = vm.revive(lab_name, name) if where[1] not in ("running", "blocked") else ""
        host = lab.locate_vm(st, name)[0] if repaired else where[0]
        return {"vm": name, "host": host, "address": st.vms[name].address, "database": have,
                "created": False, **({"repaired": repaired} if repaired else {})}
    ready = vm.create(lab_name, name, host, database=database)
    return {"vm": name, "host": ready.host, "address": ready.address, "database": database, "created": True,
            "boot_to_db_s": ready.boot_to_db_s, "start": ready.start}


def query(lab_name: str, vm_name: str, statement: str) -> list[tuple]:
    return run_sql(state.require_up(lab_name), vm_name, statement)


def _non_negative(p: dict, *keys: str) -> None:
    for key in keys:
        if key in p and float(p[key]) < 0:
            raise UsageError(f"{key}: must not be negative (got {p[key]})")


def _workload_and_slo(p: dict) -> tuple[WorkloadSpec, SLO]:
    """The workload and SLO parameters every scenario runbook shares, validated by name."""
    return (workload_spec(**{k: p[k] for k in WorkloadSpec.model_fields if k in p}),
            _slo(**{k: p[k] for k in SLO.model_fields if k in p}))


# --- live migration (runbooks/10-live-migration.ipynb) -----------------------------------------
@dataclass(frozen=True)
class LiveMigrationConfig:
    workload: WorkloadSpec
    tuning: MigrationTuning
    slo: SLO
    parameters: dict

    def _repr_markdown_(self) -> str:
        p = self.parameters
        return (f"Plan **{p['plan']}** × {p['migrations']} for VM `{p['vm']}` in lab `{p['lab']}`; "
                f"{self.workload.clients} clients ({self.workload.read_fraction:.0%} reads, "
                f"{'flat out' if not self.workload.rate else f'{self.workload.rate:g} ops/s each'}). "
                f"PASS needs: blackout ≤ {self.slo.max_blackout_ms:g} ms, failed ops ≤ "
                f"{self.slo.max_failed_ops}, lost writes ≤ {self.slo.max_lost_writes}.")


def live_migration_config(**p: object) -> LiveMigrationConfig:
    """Validate every runbook parameter before the lab is touched; errors name the parameter."""
    if p.get("plan") not in PLANS:
        raise UsageError(f"plan: unknown plan {p.get('plan')!r} (plans: {', '.join(PLANS)})")
    if "database" in p:
        dialect(str(p["database"]))  # any profile: a remote cluster's VM may run SQL Server
    _non_negative(p, "warmup_s", "cooldown_s", "settle_s", "hold_s")
    wl, sl = _workload_and_slo(p)
    tuning = {k: p[k] for k in MigrationTuning.model_fields if k in p}
    if "migration_timeout_s" in p:
        tuning["timeout_s"] = p["migration_timeout_s"]
    tu = migration_tuning(**tuning)
    if not 0 <= int(p.get("dirty_memory_mib", 0)) <= 4096:
        raise UsageError(f"dirty_memory_mib: must be 0..4096 (got {p['dirty_memory_mib']})")
    return LiveMigrationConfig(wl, tu, sl, dict(p))


# Every parameter of runbooks/10-live-migration.ipynb (a unit test keeps the two in sync).
LIVE_MIGRATION_PARAMETERS = ('lab', 'hosts', 'vm', 'database', 'host', 'plan', 'migrations', 'target', 'settle_s', 'hold_s', 'clients', 'read_fraction', 'rate', 'connect_retry_count', 'connect_retry_interval_s', 'warmup_s', 'cooldown_s', 'max_blackout_ms', 'max_failed_ops', 'max_lost_writes', 'bandwidth_mib_s', 'max_downtime_ms', 'auto_converge', 'postcopy', 'postcopy_after_s', 'parallel_connections', 'compressed', 'copy_storage', 'migration_timeout_s', 'dirty_memory_mib', 'run_dir')


# --- backup, DR, restore (runbooks/20-backup-restore.ipynb) --------------------------------------

@dataclass(frozen=True)
class BackupRestoreConfig:
    workload: WorkloadSpec
    slo: SLO
    parameters: dict

    def _repr_markdown_(self) -> str:
        p = self.parameters
        return (f"Back up `{p['vm']}` ({'crash' if p.get('crash_consistent') else 'application'}-consistent) "
                f"while {self.workload.clients} clients run, replicate to the DR site, lose its host, "
                f"restore. PASS needs: blackout ≤ {self.slo.max_blackout_ms:g} ms, failed ops ≤ "
                f"{self.slo.max_failed_ops}, writes acknowledged before the backup point lost ≤ "
                f"{self.slo.max_lost_writes}, the restored database consistent and the pg_dump restorable.")


def backup_restore_config(**p: object) -> BackupRestoreConfig:
    """Validate every parameter of the backup runbook before the lab is touched."""
    _non_negative(p, "warmup_s", "between_s", "cooldown_s")
    if p.get("restore_name"):
        vm.validate_name(str(p["restore_name"]))
    wl, sl = _workload_and_slo(p)
    return BackupRestoreConfig(wl, sl, dict(p))


# Every parameter of runbooks/20-backup-restore.ipynb (a unit test keeps the two in sync).
BACKUP_RESTORE_PARAMETERS = ('lab', 'hosts', 'vm', 'host', 'clients', 'read_fraction', 'rate', 'connect_retry_count', 'connect_retry_interval_s', 'warmup_s', 'between_s', 'cooldown_s', 'crash_consistent', 'restore_host', 'restore_name', 'max_blackout_ms', 'max_failed_ops', 'max_lost_writes', 'run_dir')


# --- dynamic resources (runbooks/30-dynamic-resources.ipynb) --------------------------------------

@dataclass(frozen=True)
class DynamicConfig:
    workload: WorkloadSpec
    slo: SLO
    rules: list
    policy: object
    parameters: dict

    def _repr_markdown_(self) -> str:
        p, r = self.parameters, self.rules[0]
        return (f"`{p['vm']}` and the noisy neighbour `{p['hog']}` on **{p['host']}**; rule: host CPU > "
                f"{r.threshold:g}% for {r.sustained_s:g} s → {r.action}; mode **{self.policy.mode}**, "
                f"cooldown {self.policy.cooldown_s:g} s, hysteresis {self.policy.hysteresis:g}%; "
                f"{self.workload.clients} clients at {self.workload.rate:g} ops/s each.")


def dynamic_config(**p: object) -> DynamicConfig:
    """Validate every parameter of the dynamic-resources runbook before the lab is touched."""
    from .tips import policy as _policy, rule as _rule

    _non_negative(p, "baseline_s", "max_wait_s", "after_s")
    vm.validate_name(str(p.get("hog", "hog1")))
    if p.get("hog") == p.get("vm"):
        raise UsageError("hog: must be another VM than vm")
    r = _rule(threshold=p.get("threshold", 60.0), sustained_s=p.get("sustained_s", 5.0), action="migrate")
    pol = _policy(mode=p.get("mode", "automatic"), cooldown_s=p.get("cooldown_s", 60.0),
                  hysteresis=p.get("hysteresis", 10.0))
    wl, sl = _workload_and_slo(p)
    return DynamicConfig(wl, sl, [r], pol, dict(p))


# Every parameter of runbooks/30-dynamic-resources.ipynb (a unit test keeps the two in sync).
DYNAMIC_PARAMETERS = ('lab', 'hosts', 'vm', 'hog', 'host', 'clients', 'rate', 'read_fraction', 'mode', 'approve', 'threshold', 'sustained_s', 'interval_s', 'cooldown_s', 'hysteresis', 'baseline_s', 'max_wait_s', 'after_s', 'max_failed_ops', 'max_lost_writes', 'run_dir')


# --- fault matrix (runbooks/40-fault-matrix.ipynb) -----------------------------------------------

@dataclass(frozen=True)
class FaultMatrixConfig:
    workload: WorkloadSpec
    slo: SLO
    faults: list
    parameters: dict

    def _repr_markdown_(self) -> str:
        return (f"Faults: {', '.join(self.faults)}; {self.workload.clients} clients during each; "
                f"PASS needs for every fault: the VM running afterwards, failed ops ≤ {self.slo.max_failed_ops}, "
                f"lost writes ≤ {self.slo.max_lost_writes}.")


def fault_matrix_config(**p: object) -> FaultMatrixConfig:
    from .matrix import validate_faults

    _non_negative(p, "warmup_s", "cooldown_s", "cut_s")
    if "database" in p:
        dialect(str(p["database"]))
    faults = p.get("faults", [])
    if not isinstance(faults, (list, tuple)) or not all(isinstance(f, str) for f in faults):
        raise UsageError(f"faults: a list of fault names (got {faults!r})")
    wl, sl = _workload_and_slo(p)
    return FaultMatrixConfig(wl, sl, validate_faults(list(faults)), dict(p))


# Every parameter of runbooks/40-fault-matrix.ipynb (a unit test keeps the two in sync).
FAULT_MATRIX_PARAMETERS = ('lab', 'hosts', 'vm', 'database', 'host', 'faults', 'clients', 'read_fraction', 'rate', 'warmup_s', 'cooldown_s', 'cut_s', 'max_failed_ops', 'max_lost_writes', 'run_dir')
