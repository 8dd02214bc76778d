"""What every runbook model is made of: the base models (where a runbook runs, its clients and
SLO) and the helpers that take a field from the model that owns its meaning (tuning, SLO).
The runbooks' own models are in params.py; `params` re-exports these names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from .. import names
from ..checks import SLO, Results, check_run, slo
from ..clients.workload import WorkloadSpec, workload_spec
from ..dialects import DEFAULT_DATABASE, dialect
from ..errors import UsageError
from ..events.tuning import MigrationTuning, migration_tuning
from ..validation import build


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
    def lab_must_be_up(self) -> bool:
        """True: the runbook brings up nothing, so its lab must be up already (a watch of a lab VM)."""
        return False

    @property
    def parameters(self) -> dict[str, Any]:
        """Every value, as recorded in results.json."""
        return self.model_dump()

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        """This runbook's checks over its saved evidence (also for a run cut short)."""
        return check_run(history, events, SLO())

    def report_cut_short(self, run_dir: Path) -> bool:
        """Write the INCOMPLETE report of a run cut short whose evidence is in folders of its own
        (True); False: it is written from the run's own history.jsonl, judged by `judge`."""
        return False

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


class WithTuning(WithReconnect):
    """A runbook that migrates: its MigrationTuning built once from whichever of its fields are
    the tuning's (each declared with `tuned`, so meaning and default are the tuning's own)."""
    migration_timeout_s: float = tuned("timeout_s", 300.0)  # a runbook waits less than an operator
    _tuning: MigrationTuning = PrivateAttr()

    def model_post_init(self, ctx: Any) -> None:
        super().model_post_init(ctx)
        self._tuning = migration_tuning(**self._pick(MigrationTuning, timeout_s="migration_timeout_s"))

    @property
    def tuning(self) -> MigrationTuning:
        return self._tuning
