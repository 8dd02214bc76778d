"""Runbook 60's model: a rolling maintenance of every host, several database VMs under load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..checks import Results
from ..checks.rolling import check_rolling
from ..dialects import DEFAULT_DATABASE, MARIADB, dialect
from ..errors import UsageError
from ..events.maintenance import ACTIONS
from .params_base import WithTuning, slo_field, tuned

DEFAULT_VMS = {"sql1": DEFAULT_DATABASE, "sql2": DEFAULT_DATABASE, "sql3": MARIADB.name}  # both lab images


class RollingMaintenance(WithTuning):
    """Runbook 60: every host in turn drained, maintained and refilled while several VMs serve."""
    NOTEBOOK = "60-rolling-maintenance"
    HOST_FIELDS = ("host",)
    hosts: int = Field(3, description="hosts to create if the lab is not up")
    vm: str = Field("sql1", description="unused here: the run's VMs are `vms`")
    host: str = Field("h1", description="where the first of `vms` is created if missing (the others: the next hosts)")
    vms: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_VMS),
                                description="database VMs (name: postgresql|mariadb|sqlserver), each with its own "
                                            "clients; created from templates if missing (postgresql, mariadb)")
    order: list[str] = Field(default_factory=list, description="hosts in the order maintained "
                                                               "(empty: every host, fewest VMs first)")
    max_concurrent: int = Field(1, ge=1, le=16, description="live migrations at once within a host's drain or "
                                                             "resume (Nova's max_concurrent_live_migrations)")
    resume: Literal["back", "rebalance"] = Field("back", description="after its maintenance a host gets back "
                                                                     "exactly the VMs it had, or is filled from the "
                                                                     "busiest hosts until balanced")
    action: str = Field("restart-daemon", description=f"maintenance of an emptied host: {' | '.join(ACTIONS)}")
    on_failure: Literal["stop", "continue"] = Field("stop", description="after a host's round fails: stop (drain "
                                                                        "no further host) or continue")
    clients: int = Field(2, description="workload client processes per VM, one connection each")
    rate: float = Field(50.0, description="ops/s per client (0: flat out)")
    warmup_s: float = Field(2.0, ge=0, description="each VM's clients run this long before the first drain")
    cooldown_s: float = Field(2.0, ge=0, description="and this long after the last resume")
    # three VMs and their clients share the reference machine's 2 cores under TCG: about twice the
    # worst per-VM blackout seen (876 ms over 5 runs, 300-880 ms), rounded up (docs/slo.md)
    max_blackout_ms: float = slo_field("max_blackout_ms", 2000.0, scope=" for every VM")
    max_failed_ops: int = slo_field("max_failed_ops", scope=" for every VM")
    max_lost_writes: int = slo_field("max_lost_writes", scope=" for every VM")
    max_downtime_ms: int = tuned("max_downtime_ms")
    auto_converge: bool = tuned("auto_converge")

    @field_validator("vms")
    @classmethod
    def _vms(cls, v: dict[str, str]) -> dict[str, str]:
        from ..vm.create import validate_name

        if not v:
            raise ValueError("name at least one VM")
        for name, db in v.items():  # a VM to create needs a lab image: vm create says so (a cluster's need not)
            try:
                validate_name(name)
                dialect(db)
            except UsageError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return v

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        if v not in ACTIONS:
            raise ValueError(f"unknown {v!r} (known: {', '.join(ACTIONS)})")
        return v

    def preflight(self, hosts: list[str]) -> None:
        from .rolling import host_order  # the one rule for an order, here before anything changes

        super().preflight(hosts)
        try:
            host_order({}, hosts, self.order)
        except UsageError as exc:
            raise UsageError(f"parameter 'order': {str(exc).removeprefix('order: ')}; nothing was changed") from None

    def placements(self, hosts: list[str]) -> dict[str, str]:
        """Where each VM is created if missing: the first on `host`, the next ones on the next hosts."""
        start = hosts.index(self.host) if self.host in hosts else 0
        return {vm: hosts[(start + i) % len(hosts)] for i, vm in enumerate(self.vms)}

    def judge(self, history: list[dict[str, Any]], events: list[dict[str, Any]]) -> Results:
        """The rollout's own checks over the run's events; each VM's evidence is in a folder of its
        own, judged with it by steps.judge_rollout (this is what a run cut short still shows)."""
        return check_rolling(events, {}, self.slo)[0]

    def report_cut_short(self, run_dir: Path) -> bool:
        from .rolling import report_cut_short  # each VM's evidence is in a folder of its own

        return report_cut_short(Path(run_dir), self)

    def _repr_markdown_(self) -> str:
        w, s = self.workload, self.slo
        return (f"Every host of lab `{self.lab}` in turn ({', '.join(self.order) or 'fewest VMs first'}): drained, "
                f"**{self.action}**, resumed ({self.resume}; {self.max_concurrent} migration(s) at once), "
                f"while {len(self.vms)} VMs serve "
                f"({', '.join(f'`{v}` {d}' for v, d in self.vms.items())}), {w.clients} clients each at "
                f"{w.rate:g} ops/s. On a failed round: {self.on_failure}. PASS needs, for every VM: blackout ≤ "
                f"{s.max_blackout_ms:g} ms, failed ops ≤ {s.max_failed_ops}, lost writes ≤ {s.max_lost_writes}; "
                "and every host drained, empty while maintained, resumed, every VM back where it ran "
                "(with resume rebalance: the VMs spread evenly).")
