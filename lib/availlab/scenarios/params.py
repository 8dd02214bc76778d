"""Runbook parameters: one pydantic model per runbook, the single source of its parameter list.

The model gives each parameter's name, type, default and meaning; `availlab run -p` is checked
against it (and its values coerced: `-p auto_converge true` is a bool) before papermill starts;
the notebook's `parameters` cell is generated from it (`python -m availlab.scenarios.cells --write`; a
unit test fails if a cell differs); and the notebook builds its `config` from its namespace
with `from_namespace(globals())`, so every later cell reads `config`, never a raw global.
Building a config also builds what the run needs (workload, SLO, tuning, rules), so every
parameter is checked before the lab is touched, with errors that name it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ..checks import Results, check_dr_run, check_dynamic, check_matrix
from ..checks.observe import check_watch
from ..dialects import DEFAULT_DATABASE
from ..errors import UsageError
from ..events.backup_modes import COPY_MIB_S, MODES
from ..lab.endpoint import parse_connection_string
from .params_base import (  # noqa: F401 - the models' parts, named params.X by callers
    Database,
    Runbook,
    WithLoad,
    WithReconnect,
    WithTuning,
    database_field,
    field_of,
    slo_field,
    tuned,
)
from .params_rolling import RollingMaintenance
from .plans import PLANS


class LabSmoke(Runbook):
    """Runbook 00: the lab answers SQL."""
    NOTEBOOK = "00-lab-smoke"


class LiveMigration(WithTuning):
    """Runbook 10: queries keep running while the VM is live-migrated."""
    NOTEBOOK = "10-live-migration"
    HOST_FIELDS = ("host", "target")
    database: Database = database_field()
    plan: Literal[PLANS] = Field("ping-pong", description=" | ".join(PLANS))  # type: ignore[valid-type]
    migrations: int = Field(2, ge=1, le=1000, description="moves for ping-pong / round-robin")
    target: str = Field("", description="target host (default: the next host)")
    settle_s: float = Field(2.0, ge=0, description="pause after each move")
    hold_s: float = Field(5.0, ge=0, description="drain: time the drained host stays empty")
    warmup_s: float = Field(3.0, ge=0, description="workload runs this long before the first move")
    cooldown_s: float = Field(3.0, ge=0, description="and this long after the last")
    max_blackout_ms: float = slo_field("max_blackout_ms")
    max_failed_ops: int = slo_field("max_failed_ops")
    max_lost_writes: int = slo_field("max_lost_writes")
    # the migration's tuning: each field is MigrationTuning's (events/tuning.py), default and meaning
    bandwidth_mib_s: int = tuned("bandwidth_mib_s")
    max_downtime_ms: int = tuned("max_downtime_ms")
    auto_converge: bool = tuned("auto_converge")
    postcopy: bool = tuned("postcopy")
    postcopy_after_s: float = tuned("postcopy_after_s")
    parallel_connections: int = tuned("parallel_connections")
    compressed: bool = tuned("compressed")
    copy_storage: bool = tuned("copy_storage")
    dirty_memory_mib: int = Field(0, ge=0, le=4096,
                                  description="guest memory dirtier (0: off), try 128 with bandwidth_mib_s 32")

    def _repr_markdown_(self) -> str:
        w, s = self.workload, self.slo
        return (f"Plan **{self.plan}** × {self.migrations} for VM `{self.vm}` in lab `{self.lab}`; "
                f"{w.clients} clients ({w.read_fraction:.0%} reads, "
                f"{'flat out' if not w.rate else f'{w.rate:g} ops/s each'}). "
                f"PASS needs: blackout ≤ {s.max_blackout_ms:g} ms, failed ops ≤ "
                f"{s.max_failed_ops}, lost writes ≤ {s.max_lost_writes}.")


class BackupRestore(WithReconnect):
    """Runbook 20: backups under load, DR replication, restore with RTO/RPO."""
    NOTEBOOK = "20-backup-restore"
    HOST_FIELDS = ("host", "restore_host")
    vm: str = Field("sql1", description="database VM to back up (created if missing)")
    database: Database = database_field()
    warmup_s: float = Field(3.0, ge=0, description="workload runs this long before the full backup")
    between_s: float = Field(5.0, ge=0, description="more writes between the full and the incremental backup")
    cooldown_s: float = Field(2.0, ge=0, description="workload runs this long after the incremental backup")
    crash_consistent: bool = Field(False, description="skip CHECKPOINT and the filesystem freeze (for comparison)")
    copy_mib_s: int = Field(COPY_MIB_S, ge=0, description="cap on each backup's copy in MiB/s: of the data read "
                                                          "(pull), of the disk's virtual size (push); 0: none")
    backup_mode: Literal[MODES] = Field(MODES[0], description="pull: availlab reads libvirt's NBD export; "  # type: ignore[valid-type]
                                        "push: QEMU's job writes the set (longer client gaps)")
    drill: bool = Field(False, description="a restore drill: no host is lost; the newest set is restored "
                                           "on a spare host as <vm>-drill, checked, then removed")
    restore_host: str = Field("", description="where to restore (empty: a DR-site host, else another host)")
    restore_name: str = Field("", description="name of the restored VM (empty: the VM's own name)")
    instant_restore: bool = Field(True, description="also restore the chain instantly (booted from the set, "
                                                    "data moved off after) as <name>-instant, to compare "
                                                    "both RTOs; removed afterwards")
    # about twice the worst gap measured with pull-mode backups (92-184 ms: docs/slo.md), rounded up
    max_blackout_ms: float = Field(500.0, description="SLO: longest client-observed gap during the backups "
                                                      "(default: docs/slo.md)")
    max_failed_ops: int = slo_field("max_failed_ops", scope=" during the backups")
    max_lost_writes: int = Field(0, description="SLO: writes acknowledged before the backup point but not restored")

    @field_validator("database")
    @classmethod
    def _dumpable(cls, v: str) -> str:
        from ..clients.dbdump import TOOLS

        if v not in TOOLS:
            raise ValueError(f"the runbook verifies the database's own dump, which availlab has for "
                             f"{' and '.join(TOOLS)} only (got {v!r})")
        return v

    @field_validator("restore_name")
    @classmethod
    def _restore_name(cls, v: str, info: ValidationInfo) -> str:
        from ..vm.create import validate_name

        v = validate_name(v) if v else v
        if v and info.data.get("drill") and v == info.data.get("vm"):
            raise ValueError("a drill restores beside the VM, never over it: choose another name, or leave it "
                             "empty for <vm>-drill")
        return v

    def restored_names(self) -> tuple[str, str]:
        """(the restored VM, the instant one beside it): '' for the VM's own name / no instant restore."""
        name = self.restore_name or (f"{self.vm}-drill" if self.drill else "")
        return name, (f"{name or self.vm}-instant" if self.instant_restore else "")

    @model_validator(mode="after")
    def _names_fit(self) -> Self:
        """The names the run will give its restored VMs are checked now, not after the backups."""
        from ..vm.create import validate_name

        for derived in filter(None, self.restored_names()):
            try:
                validate_name(derived)
            except UsageError as exc:
                raise UsageError(f"vm: the run would restore it as {derived!r}, which does not fit: {exc}") from None
        return self

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        return check_dr_run(history, events, self.slo)

    def _repr_markdown_(self) -> str:
        w, s = self.workload, self.slo
        return (f"Back up `{self.vm}` ({'crash' if self.crash_consistent else 'application'}-consistent) "
                f"while {w.clients} clients run, replicate to the DR site, "
                + ("restore it on a spare host as a drill (then remove it)" if self.drill else "lose its host, restore")
                + f". PASS needs: blackout ≤ {s.max_blackout_ms:g} ms, failed ops ≤ "
                f"{s.max_failed_ops}, writes acknowledged before the backup point lost ≤ "
                f"{s.max_lost_writes}, the restored database consistent and its logical dump restorable.")


class DynamicResources(WithLoad):
    """Runbook 30: a tip moves the VM off an overloaded host, and latency recovers."""
    NOTEBOOK = "30-dynamic-resources"
    vm: str = Field("sql1", description="the database VM (created if missing)")
    hog: str = Field("hog1", description="the noisy neighbour VM (created if missing)")
    host: str = Field("h1", description="the host that will be overloaded")
    rate: float = Field(5.0, description="ops/s per client (a steady load well under the threshold)")
    probe_interval_ms: float = Field(0.0, description="the blackout probe (off: this runbook judges latency, "
                                                      "which the probe's statements would raise)")
    mode: Literal["automatic", "manual"] = Field("automatic", description="automatic | manual (tips need approval)")
    approve: bool = Field(True, description="manual mode: approve the first migrate tip")
    threshold: float = Field(60.0, description="host CPU percent that raises a tip")
    sustained_s: float = Field(5.0, description="for this long")
    interval_s: float = Field(1.0, ge=0.2, le=60, description="sampling interval")
    tip_cooldown_s: float = Field(60.0, description="a VM a tip moved stays put this long")
    hysteresis: float = Field(10.0, description="re-arm only below threshold minus this")
    baseline_s: float = Field(8.0, ge=0, description="normal load before the neighbour gets noisy")
    max_wait_s: float = Field(60.0, ge=0, description="how long to wait for a tip")
    after_s: float = Field(10.0, ge=0, description="load after the tip was handled")
    max_failed_ops: int = slo_field("max_failed_ops")
    max_lost_writes: int = slo_field("max_lost_writes")
    _rules: list[Any] = PrivateAttr()
    _policy: Any = PrivateAttr()

    @field_validator("hog")
    @classmethod
    def _hog(cls, v: str) -> str:
        from ..vm.create import validate_name

        return validate_name(v)

    def model_post_init(self, ctx: Any) -> None:
        from .tips import policy, rule

        if self.hog == self.vm:
            raise UsageError("hog: must be another VM than vm")
        super().model_post_init(ctx)
        self._rules = [rule(threshold=self.threshold, sustained_s=self.sustained_s, action="migrate")]
        self._policy = policy(mode=self.mode, cooldown_s=self.tip_cooldown_s, hysteresis=self.hysteresis)

    @property
    def rules(self) -> list[Any]:
        return self._rules

    @property
    def policy(self) -> Any:
        return self._policy

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        return check_dynamic(history, events, self.slo, self.rules, self.policy.mode, self.interval_s)

    def _repr_markdown_(self) -> str:
        r, p, w = self.rules[0], self.policy, self.workload
        return (f"`{self.vm}` and the noisy neighbour `{self.hog}` on **{self.host}**; rule: host CPU > "
                f"{r.threshold:g}% for {r.sustained_s:g} s → {r.action}; mode **{p.mode}**, "
                f"cooldown {p.cooldown_s:g} s, hysteresis {p.hysteresis:g}%; "
                f"{w.clients} clients at {w.rate:g} ops/s each.")


def _all_faults() -> list[str]:
    from ..events.faults import FAULTS

    return list(FAULTS)


class FaultMatrix(WithLoad):
    """Runbook 40: migrations and backups that go wrong, with clients running."""
    NOTEBOOK = "40-fault-matrix"
    database: Database = database_field()
    faults: list[str] = Field(default_factory=_all_faults, description="faults to run, one after another")
    clients: int = Field(2, description="workload clients during each fault")
    probe_interval_ms: float = Field(0.0, description="the blackout probe (off: faults are judged by outcomes, "
                                                      "not by the blackout's resolution)")
    warmup_s: float = Field(2.0, ge=0, description="load before each fault")
    cooldown_s: float = Field(2.0, ge=0, description="load after each fault")
    cut_s: float = Field(5.0, ge=0, description="how long the migration cable stays pulled")
    max_failed_ops: int = slo_field("max_failed_ops", scope=" per fault")
    max_lost_writes: int = slo_field("max_lost_writes", scope=" per fault")

    @field_validator("faults")
    @classmethod
    def _faults(cls, v: list[str]) -> list[str]:
        from .matrix import validate_faults

        return validate_faults(v)

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        return check_matrix(history, events, self.slo)

    def _repr_markdown_(self) -> str:
        return (f"Faults: {', '.join(self.faults)}; {self.workload.clients} clients during each; "
                f"PASS needs for every fault: the VM running afterwards, failed ops ≤ {self.slo.max_failed_ops}, "
                f"lost writes ≤ {self.slo.max_lost_writes}.")


class Watch(WithReconnect):
    """Runbook 50 (`availlab watch`): clients on a running VM while someone else's tool moves it."""
    NOTEBOOK = "50-watch"
    HOST_FIELDS = ()  # a watch creates nothing: its lab must be up and its VM running
    vm: str = Field("sql1", description="database VM to watch (must be running; a watch starts nothing)")
    command: list[str] = Field(default_factory=list, description="the operator's command, run once the clients "
                                                                 "are warm (e.g. virsh migrate …); empty: none")
    command_cwd: str = Field("", description="where the command runs (empty: the run's own working directory; "
                                             "`availlab watch` gives the directory it was started in)")
    duration_s: float = Field(60.0, ge=0, le=86_400, description="watch at least this long (0: while the command runs)")
    watcher: str = Field("libvirt", description="read-only watcher of the hypervisor ('' for none)")
    # gentle on a database that is not a lab's: two clients at 50 ops/s each, the probe as elsewhere
    clients: int = Field(2, description="workload client processes, one connection each")
    rate: float = Field(50.0, description="ops/s per client (0: flat out)")
    warmup_s: float = Field(3.0, ge=0, description="clients run this long before the command")
    cooldown_s: float = Field(3.0, ge=0, description="and this long after it")
    max_blackout_ms: float = slo_field("max_blackout_ms", scope=" (every outage, announced or not)")
    max_failed_ops: int = slo_field("max_failed_ops")
    max_lost_writes: int = slo_field("max_lost_writes")
    # any database over ODBC instead of a lab VM (lab/endpoint.py): no lab, no hypervisor watcher
    dsn: str = Field("", description="ODBC connection string of any database (Server, Port, Database, UID, "
                                     "or an odbc.ini DSN) with no password in it (empty: the lab's VM `vm`)")
    database: Database = Field(DEFAULT_DATABASE, description="with dsn: its profile (postgresql, mariadb, sqlserver)")
    password_file: str = Field("", description="with dsn: a file (mode 0600) holding the password")
    password_env: str = Field("", description="with dsn: or the environment variable holding it")
    keep_table: bool = Field(False, description="with dsn: keep availlab's table afterwards (else dropped at the end)")
    read_only: bool = Field(False, description="no table, no writes (a user without write rights): lost writes "
                                               "are not checked, and say so")

    @field_validator("watcher")
    @classmethod
    def _watcher(cls, v: str) -> str:
        from ..events.watchers import watcher_class

        if v:
            try:
                watcher_class(v)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _something_to_watch(self) -> Self:
        if not self.command and not self.duration_s:
            raise UsageError("watch: give a command to watch or a duration (duration_s / --for)")
        if self.dsn:
            parse_connection_string(self.dsn)  # a bad one named now, not when the clients start
            if bool(self.password_file) == bool(self.password_env):
                raise UsageError("password: with dsn, give exactly one of password_file (--password-file) or "
                                 "password_env (--password-env)")
        elif self.password_file or self.password_env:
            raise UsageError("password: only with dsn (a lab VM's password is the lab's)")
        elif self.keep_table:
            raise UsageError("keep_table: only with dsn (a lab VM's table is the lab's, always kept)")
        return self

    @property
    def lab_must_be_up(self) -> bool:
        return not self.dsn

    @property
    def drop_table(self) -> bool:
        """Drop availlab's table at the end: anyone's database (dsn) keeps nothing of ours."""
        return bool(self.dsn) and not self.keep_table and not self.read_only

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        return check_watch(history, events, self.slo, with_command=bool(self.command), read_only=self.read_only)

    def _repr_markdown_(self) -> str:
        w, s = self.workload, self.slo
        what = f"`{' '.join(self.command)}`" if self.command else "no command"
        return (f"Watch `{self.vm}` in lab `{self.lab}` around {what}"
                + (f", for at least {self.duration_s:g} s" if self.duration_s else "")
                + f"; {w.clients} clients at {w.rate:g} ops/s each; watcher: {self.watcher or 'none'}. "
                f"PASS needs: every outage ≤ {s.max_blackout_ms:g} ms, failed ops ≤ {s.max_failed_ops}, "
                f"lost writes ≤ {s.max_lost_writes}.")


RUNBOOKS: dict[str, type[Runbook]] = {m.NOTEBOOK: m for m in (LabSmoke, LiveMigration, BackupRestore,
                                                                DynamicResources, FaultMatrix, Watch,
                                                                RollingMaintenance)}


def for_notebook(notebook: Path) -> type[Runbook] | None:
    """The model of one of our runbooks, None for a notebook of the user's own."""
    return RUNBOOKS.get(notebook.stem)
