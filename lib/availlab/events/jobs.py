"""A backup that availlab started and that no longer runs: found, and its leftovers ended.

`kill -9` of a pull-mode backup leaves libvirt's backup job holding the domain (every later
migration or backup fails with "cannot acquire state change lock (held by
monitor=remoteDispatchDomainBackupBegin)"), an NBD export, a scratch file, the set's `.partial`
directory and a checkpoint that no set will ever be the child of. So the set's `.partial`
directory holds a job record (`.job.json`: the process that owns it, with its start time so a
reused PID is not taken for it, the host, the checkpoint, the export's files). The next backup or
migration of the VM reads the records: a job whose process still runs is refused as busy; one
whose process is gone is aborted, and its checkpoint, export, scratch file and directory removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import AvailLabError, BackupError
from ..lab.hypervisor import HypervisorAPI
from ..lab.providers import provider
from ..lab.state import LabState, primary_backups_dir
from ..progress import step
from ..waiting import wait_until
from . import checkpoints

RECORD = ".job.json"


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the PID, who it is."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def record(work: Path, vm: str, host: str, checkpoint: str, nbd_dir: Path | None, scratch: Path) -> None:
    """Say, inside the set being written, who runs its job (written before backupBegin)."""
    paths.write_atomic(work / RECORD, json.dumps({
        "vm": vm, "host": host, "pid": os.getpid(), "start": _start_time(os.getpid()), "checkpoint": checkpoint,
        "nbd_dir": str(nbd_dir or ""), "scratch": str(scratch)}) + "\n")


def end_job(hv: HypervisorAPI, vm: str, wait_s: float = 30) -> str:
    """Abort a backup's job if it still runs; "" once it has ended, else why not."""
    last = [""]

    def ended() -> bool:
        try:
            if not hv.job_active(vm):
                return True
            hv.abort_job(vm)
        except AvailLabError as exc:  # each attempt on its own: one refusal must not end the tries
            last[0] = str(exc)
        return False

    return "" if wait_until(ended, wait_s) else (last[0] or f"still active after {wait_s:g} s of aborts")


def _records(st: LabState, vm: str) -> list[tuple[Path, dict[str, Any]]]:
    root = primary_backups_dir(st.lab)
    out = []
    for work in sorted(root.glob("*.partial")) if root.is_dir() else []:
        try:
            rec = json.loads((work / RECORD).read_text())
        except (OSError, ValueError):
            continue  # no record: not a job's (an older version's, or one that never began)
        if isinstance(rec, dict) and rec.get("vm") == vm:
            out.append((work, rec))
    return out


def recover(st: LabState, vm: str, running_ok: bool = False) -> list[str]:
    """End what a backup of `vm` that died left behind; what was done. A backup still running
    (its process alive) is refused, the caller would fight it for the domain; or, `running_ok`
    (a migration: libvirt itself refuses it then, and the run records that), left alone."""
    done: list[str] = []
    for work, rec in _records(st, vm):
        pid = rec.get("pid")
        if isinstance(pid, int) and rec.get("start") and _start_time(pid) == rec["start"]:
            if running_ok:
                continue
            raise BackupError(f"{vm}: a backup of it is running (pid {pid}, set {work.name}); wait for it "
                              "or stop that process first")
        host = rec.get("host") if rec.get("host") in st.hosts else None
        if host:
            left = ""
            with contextlib.suppress(AvailLabError), provider(st).connect(st.hosts[host]) as hv:
                if hv.job_active(vm):
                    left = end_job(hv, vm)
                    if not left:
                        done.append(f"its job on {host} aborted")
                if rec.get("checkpoint") and hv.delete_checkpoint(vm, rec["checkpoint"]):
                    done.append(f"checkpoint {rec['checkpoint']} deleted")
            if left:  # the record stays: the next command tries again
                raise BackupError(f"{vm}: a backup whose process (pid {pid}) is gone left its job running on "
                                  f"{host}, and it could not be aborted: {left}")
        if rec.get("checkpoint"):
            checkpoints.forget(st, vm, rec["checkpoint"])
        if rec.get("nbd_dir"):
            shutil.rmtree(rec["nbd_dir"], ignore_errors=True)
        if rec.get("scratch"):
            Path(rec["scratch"]).unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        done.append(f"{work.name} removed")
        step(f"{vm}: a backup whose process (pid {pid}) is gone had left: {'; '.join(done)}")
    return done
