"""Migration tuning: libvirt's knobs for one live migration, declared once (pure: no libvirt)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from ..validation import build


class MigrationTuning(BaseModel):
    """How a live migration is asked of libvirt: the one declaration of these knobs, from which
    `availlab vm migrate`'s flags are made (cli_moves.py) and runbook 10's fields are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bandwidth_mib_s: int = Field(0, ge=0, le=100_000, description="bandwidth cap in MiB/s (0: unlimited)")
    max_downtime_ms: int = Field(0, ge=0, le=60_000, description="libvirt's downtime limit in ms (0: its default, 300)")
    auto_converge: bool = Field(False, description="throttle the guest's vCPUs if memory does not converge")
    postcopy: bool = Field(False, description="switch to post-copy after postcopy_after_s of pre-copy")
    postcopy_after_s: float = Field(1.0, ge=0, le=600, description="pre-copy time before the switch to post-copy")
    parallel_connections: int = Field(0, ge=0, le=16, description="parallel migration connections (0: one, else 2+)")
    compressed: bool = Field(False, description="compress memory pages (xbzrle)")
    copy_storage: bool = Field(False, description="shared-nothing: copy the VM's disk layer to the target's storage")
    timeout_s: float = Field(600, gt=0, le=7200, description="abort (and record) a migration still running after this")


def migration_tuning(**kw: object) -> MigrationTuning:
    t = build(MigrationTuning, kw, "migration tuning")
    if t.parallel_connections == 1:
        raise UsageError("migration tuning:\n  parallel_connections: use 0 (off) or 2 and more")
    return t
