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
    # events.jsonl of a watch (scenarios/observe.py): what another tool did, as availlab saw it
    COMMAND_START = "command-start"  # the operator's command availlab ran for them (`watch -- CMD`)
    COMMAND = "command"  # ... and how it ended: a window, with its exit code and output file
    MARK = "mark"  # an operator's word while the run went on (`availlab mark RUN TEXT`)
    WATCH_START = "watch-start"  # a read-only watcher of the hypervisor began (events/watchers.py)
    WATCH_EVENT = "watch-event"  # what it saw happen to the VM: suspended, resumed, started, moved
    WATCH_STOP = "watch-stop"
    PAUSED = "paused"  # a window in which the hypervisor held the VM paused, from its own events
    # events.jsonl of a rolling maintenance (scenarios/rolling.py), beside each VM's own folder
    HOST_DRAIN = "host-drain"  # one host emptied: a window, with the moves it made
    HOST_EMPTY = "host-empty"  # what ran on it when its maintenance began (nothing, or it is not empty)
    MAINTENANCE = "maintenance"  # the maintenance itself: a window, its action and what proves it was done
    HOST_RESUME = "host-resume"  # its VMs brought back: a window, with the moves it made
    ROLLOUT = "rollout"  # the plan and how far it got: hosts done, hosts not done, where each VM ended


COMPLETIONS = (Rec.OK, Rec.FAIL, Rec.INFO)  # what ends an invoke

# the events that open and close a window in which something is done to the VM: the probe runs
# fast inside them (clients/probe.py); kind of window -> its opening and closing records
OPENS = {Rec.MIGRATION_START: Rec.MIGRATION, Rec.BACKUP_START: Rec.BACKUP, Rec.COMMAND_START: Rec.COMMAND}
CLOSES = {Rec.MIGRATION: Rec.MIGRATION, Rec.BACKUP: Rec.BACKUP, Rec.BACKUP_FAILED: Rec.BACKUP,
          Rec.COMMAND: Rec.COMMAND}


def freeze_windows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The backups' frozen phases, the windows a backup's client gaps are attributed to."""
    return [{"type": Rec.FREEZE, "t0": p["t0"], "t1": p["t1"]} for e in events if e.get("type") == Rec.BACKUP
            for p in e.get("phases", []) if p.get("phase") == "frozen"]


def paused_windows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The windows in which a watcher saw the VM paused: from a `suspended` event to the next
    `resumed` (on any host: a migration resumes it on the target; the target's `started` comes
    before the pause, when the incoming VM is created paused). A migration's pause is the
    hypervisor's downtime, seen from outside the tool that migrated."""
    out, opened = [], None
    for e in sorted((e for e in events if e.get("type") == Rec.WATCH_EVENT), key=lambda e: e["t"]):
        if e.get("event") == "suspended" and opened is None:
            opened = e
        elif e.get("event") == "resumed" and opened is not None:
            out.append({"type": Rec.PAUSED, "t0": opened["t"], "t1": e["t"], "host": opened.get("host"),
                        "resumed_on": e.get("host"), "why": opened.get("detail"),
                        "ms": round((e["t"] - opened["t"]) / 1e6, 1)})
            opened = None
    return out


def windows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every window in which the VM was moved or frozen: the migrations, then the backups' frozen
    phases, then, in a watch, the operator's command and the pauses a watcher saw (what the
    timeline shades, and what a client gap is set against)."""
    return [*(e for e in events if e.get("type") in (Rec.MIGRATION, Rec.COMMAND)), *freeze_windows(events),
            *paused_windows(events)]


@dataclass(frozen=True)
class RunFiles:
    """A run folder's evidence files, named once."""

    directory: Path
    HISTORY = "history.jsonl"
    EVENTS = "events.jsonl"
    RESULTS = "results.json"

    @property
    def history(self) -> Path:
        return Path(self.directory) / self.HISTORY

    @property
    def events(self) -> Path:
        return Path(self.directory) / self.EVENTS

    @property
    def results(self) -> Path:
        return Path(self.directory) / self.RESULTS

    def exist(self) -> bool:
        return self.history.exists() or self.events.exists()
