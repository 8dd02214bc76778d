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
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .. import names
from ..checks import SLO, Results, check_dr_run, check_dynamic, check_matrix, check_run, slo
from ..clients.workload import WorkloadSpec, workload_spec
from ..dialects import DEFAULT_DATABASE, dialect
from ..errors import UsageError
from ..events.tuning import MigrationTuning, migration_tuning
from ..validation import build
from .plans import PLANS


def _known_database(v: str) -> str:
    dialect(v)  # any profile: a remote cluster's VM may run SQL Server
    return v


Database = Annotated[str, AfterValidator(_known_database)]


def field_of(model: type[BaseModel], name: str, default: Any = None, described: str = "{}") -> Any:
    """A runbook field that is `model`'s field `name` (the tuning's, the SLO's): its meaning
    (formatted into `described`), and its default unless the runbook has its own; a fresh
    FieldInfo each."""
    f = model.model_fields[name]
    return Field(f.default if default is None else default, description=described.format(f.description))


def tuned(name: str, default: Any = None) -> Any:
    """A field of MigrationTuning (events/tuning.py), as a runbook parameter."""
    return field_of(MigrationTuning, name, default)


def slo_field(name: str, default: Any = None, scope: str = "") -> Any:
    """A field of the SLO (checks.core.SLO), said for the runbook's `scope`."""
    return field_of(SLO, name, default, f"SLO{scope}: {{}}")


def database_field() -> Any:
    """One definition for every runbook that creates a database VM (a fresh FieldInfo each)."""
    return Field(DEFAULT_DATABASE, description="profile of a VM created here: postgresql or mariadb")


class Runbook(BaseModel):
    """What every runbook takes: where it runs and where its evidence goes."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    NOTEBOOK: ClassVar[str] = ""

    # the parameters that name a lab host: checked against the lab before the run changes anything
    HOST_FIELDS: ClassVar[tuple[str, ...]] = ("host",)

    lab: str = Field("default", description="lab to use (brought up if it is not)")
    hosts: int = Field(2, description="hosts to create if the lab is not up")
    vm: str = Field("sql1", description="database VM (created if missing)")
    host: str = Field("h1", description="where to create the VM if it does not exist")
    run_dir: str = Field("", description="set by availlab run (empty: runs/RUNBOOK/TIME)")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_bools(cls, v: Any, info: ValidationInfo) -> Any:
        """`-p migrations True` is a slip, not 1: bools are refused where a number is wanted
        (while `-p clients 8.0` or "8" still read as 8, and true/yes/1 as a bool)."""
        if isinstance(v, bool) and cls.model_fields[str(info.field_name)].annotation in (int, float):
            raise ValueError(f"a number, not {v}")
        return v

    @field_validator("lab")
    @classmethod
    def _lab(cls, v: str) -> str:
        names.lab_name(v, "parameter 'lab'")
        return v

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Self:
        """Validate `values` (a subset: the rest keep their defaults); errors name the parameter."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise UsageError(f"parameter {unknown[0]!r}: {cls.NOTEBOOK}.ipynb has no such parameter "
                             f"(it takes: {', '.join(cls.model_fields)})")
        return build(cls, values, f"{cls.NOTEBOOK} parameters")

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> Self:
        """The notebook's own parameters (papermill's values where it injected any)."""
        return cls.parse({k: namespace[k] for k in cls.model_fields if k in namespace})

    def preflight(self, hosts: list[str]) -> None:
        """Every parameter that names a host names one of the lab's (`hosts`): a typo found here,
        before the first step that changes anything, not at the step that uses it."""
        for f in self.HOST_FIELDS:
            value = getattr(self, f)
            if value and value not in hosts:
                raise UsageError(f"parameter {f!r}: {value!r} is not a host of lab {self.lab!r} "
                                 f"(it has: {', '.join(hosts)}); nothing was changed")

    @property
    def parameters(self) -> dict[str, Any]:
        """Every value, as recorded in results.json."""
        return self.model_dump()

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        """This runbook's checks over its saved evidence (also for a run cut short)."""
        return check_run(history, events, SLO())

    def _pick(self, model: type[BaseModel], **renamed: str) -> dict[str, Any]:
        mine = {k: getattr(self, k) for k in model.model_fields if k in type(self).model_fields}
        return {**mine, **{theirs: getattr(self, ours) for theirs, ours in renamed.items()}}


class WithLoad(Runbook):
    """A runbook with clients running and an SLO to judge them by."""
    clients: int = Field(4, description="workload client processes, one connection each")
    read_fraction: float = Field(0.5, description="share of single-row reads (the rest are unique-key inserts)")
    rate: float = Field(0.0, description="ops/s per client (0: flat out)")
    # 20 ms: at 5 ms the probe held fast cost the clients about a quarter of their throughput on this
    # TCG machine, at 20 ms a few per cent (bench/probe.py; docs/results.md "What it costs")
    probe_interval_ms: float = Field(20.0, description="the blackout probe runs SELECT 1 this often in events (0: off)")
    _workload: WorkloadSpec = PrivateAttr()
    _slo: SLO = PrivateAttr()

    def model_post_init(self, _ctx: Any) -> None:
        self._workload = workload_spec(**self._pick(WorkloadSpec))
        self._slo = slo(**self._pick(SLO))

    @property
    def workload(self) -> WorkloadSpec:
        return self._workload

    @property
    def slo(self) -> SLO:
        return self._slo

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        return check_run(history, events, self.slo)


class WithReconnect(WithLoad):
    """Clients that reconnect as an application would, with SQL Server's knobs."""
    connect_retry_count: int = Field(3, description="like SQL Server's ConnectRetryCount")
    connect_retry_interval_s: float = Field(1.0, description="like ConnectRetryInterval")


class LabSmoke(Runbook):
    """Runbook 00: the lab answers SQL."""
    NOTEBOOK = "00-lab-smoke"


class LiveMigration(WithReconnect):
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
    migration_timeout_s: float = tuned("timeout_s", 300.0)  # a runbook waits less than an operator
    dirty_memory_mib: int = Field(0, ge=0, le=4096,
                                  description="guest memory dirtier (0: off), try 128 with bandwidth_mib_s 32")
    _tuning: MigrationTuning = PrivateAttr()

    def model_post_init(self, ctx: Any) -> None:
        super().model_post_init(ctx)
        self._tuning = migration_tuning(**self._pick(MigrationTuning, timeout_s="migration_timeout_s"))

    @property
    def tuning(self) -> MigrationTuning:
        return self._tuning

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
    copy_mib_s: int = Field(300, ge=0, description="cap on each backup's copy in MiB/s: of the data read (pull), "
                                                   "of the disk's virtual size (push); 0: none")
    backup_mode: Literal["pull", "push"] = Field("pull", description="pull: availlab reads libvirt's NBD export; "
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


RUNBOOKS: dict[str, type[Runbook]] = {m.NOTEBOOK: m for m in (LabSmoke, LiveMigration, BackupRestore,
                                                                DynamicResources, FaultMatrix)}


def for_notebook(notebook: Path) -> type[Runbook] | None:
    """The model of one of our runbooks, None for a notebook of the user's own."""
    return RUNBOOKS.get(notebook.stem)
