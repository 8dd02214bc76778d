"""The run's record vocabulary: every record type written to history.jsonl and events.jsonl,
declared once, and the files that hold them.

Writers (clients/, events/, scenarios/) and readers (checks/, metrics.py, report/) name a record
by its member here, never by a string of their own, so a type renamed or added is one line, and
a unit test refuses a record type spelled anywhere else. `Rec` is a StrEnum: a member is its
string in JSON and compares equal to it, so histories written before stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class Rec(StrEnum):
    # history.jsonl: the clients' operations (Jepsen's invoke and its completion)
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"  # certainly did not happen
    INFO = "info"  # may have happened (a write on a connection that died)
    # history.jsonl: the run's marks and what the clients and the probe saw
    CLOCK = "clock"
    ENVIRONMENT = "environment"
    WORKLOAD_START = "workload-start"
    WARM = "warm"
    WORKLOAD_STOP = "workload-stop"
    CLIENT_START = "client-start"
    CLIENT_INFO = "client-info"
    CLIENT_STOP = "client-stop"
    SERVER_IDENTITY = "server-identity"
    FINAL_READ = "final-read"
    PROBE_START = "probe-start"
    PROBE_MODE = "probe-mode"
    PROBE = "probe"
    TCP = "tcp"
    PROBE_STOP = "probe-stop"
    FAULTS_REQUESTED = "faults-requested"
    FAULT_BEGIN = "fault-begin"
    FAULT_END = "fault-end"
    INSTANT_READ = "instant-read"
    DUMP_READ = "dump-read"
    DB_CONSISTENCY = "db-consistency"
    INTERRUPTED = "interrupted"
    # events.jsonl: what was done to the VM and its hosts while the clients ran
    MIGRATION_START = "migration-start"
    MIGRATION = "migration"
    BACKUP_START = "backup-start"
    BACKUP = "backup"
    BACKUP_FAILED = "backup-failed"
    FREEZE = "freeze"  # a backup's frozen phase, as a window (freeze_windows)
    REPLICATION = "replication"
    HOST_LOST = "host-lost"
    DRILL = "drill"
    RESTORE = "restore"
    DUMP = "dump"
    FAULT = "fault"
    DIRTIER_START = "dirtier-start"
    DIRTIER_STOP = "dirtier-stop"
    OVERLOAD_START = "overload-start"
    OVERLOAD_STOP = "overload-stop"
    VM_STARTED = "vm-started"
    SAMPLE = "sample"
    MONITOR_ERROR = "monitor-error"
    TIP = "tip"
    TIP_APPROVED = "tip-approved"
    TIP_APPLIED = "tip-applied"


COMPLETIONS = (Rec.OK, Rec.FAIL, Rec.INFO)  # what ends an invoke

# the events that open and close a window in which something is done to the VM: the probe runs
# fast inside them (clients/probe.py); kind of window -> its opening and closing records
OPENS = {Rec.MIGRATION_START: Rec.MIGRATION, Rec.BACKUP_START: Rec.BACKUP}
CLOSES = {Rec.MIGRATION: Rec.MIGRATION, Rec.BACKUP: Rec.BACKUP, Rec.BACKUP_FAILED: Rec.BACKUP}


def freeze_windows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The backups' frozen phases, the windows a backup's client gaps are attributed to."""
    return [{"type": Rec.FREEZE, "t0": p["t0"], "t1": p["t1"]} for e in events if e.get("type") == Rec.BACKUP
            for p in e.get("phases", []) if p.get("phase") == "frozen"]


def windows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every window in which the VM was moved or frozen: the migrations, then the backups' frozen
    phases (what the timeline shades, and what a client gap is set against)."""
    return [*(e for e in events if e.get("type") == Rec.MIGRATION), *freeze_windows(events)]


@dataclass(frozen=True)
class RunFiles:
    """A run folder's evidence files, named once."""

    directory: Path
    HISTORY = "history.jsonl"
    EVENTS = "events.jsonl"

    @property
    def history(self) -> Path:
        return Path(self.directory) / self.HISTORY

    @property
    def events(self) -> Path:
        return Path(self.directory) / self.EVENTS

    def exist(self) -> bool:
        return self.history.exists() or self.events.exists()
