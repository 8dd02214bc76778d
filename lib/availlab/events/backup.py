"""Host-level backup of a running VM through libvirt's backup API (pull mode by default, see
pull.py; push mode for comparison), full, incremental or differential, application-consistent by
default.

The VSS sequence, with the lab's stand-ins: ask PostgreSQL to CHECKPOINT (VSS asks the SQL writer
to prepare), freeze the guest's filesystems through the guest agent, begin the backup (the
point in time: libvirt copies-before-write from here on, so the guest can thaw at once), thaw,
then copy while the database runs: read libvirt's NBD export into the set (pull), or let QEMU's
job write it (push). `crash_consistent` skips the CHECKPOINT and the freeze, for comparison.

A freeze is never left in place. libvirt waits AGENT_TIMEOUT_S for the agent (by default it would
block for good); whether the freeze answered or not, the thaw is retried until the agent reports
the guest thawed, for up to THAW_DEADLINE_S. An agent that does not answer the freeze may still
freeze late, after we gave up on it: that is why a failed freeze is followed by a thaw too. Behind
both, the guest's own freeze watchdog (lab/guest/freeze-watchdog) thaws after 10 s, as VSS does.

Nor is a pause. When the backup target fills up, a guest write whose old data copy-before-write
cannot save fails with ENOSPC, and QEMU's default write-error policy pauses the VM with that write
held (QEMU 7.2 offers push-mode backups no `on-cbw-error=break-snapshot`). Whether the job's own
copy or such a guest write meets the full target first is a race, so either may happen: a VM
paused on an I/O error during a backup is resumed once the job has ended (events/iopause.py).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ..clients.sql import run_sql
from ..dialects import DEFAULT_DATABASE, dialect
from ..errors import AvailLabError, BackupError, UsageError
from ..history import RecordSink, now_ns
from ..lab import identity
from ..lab.hypervisor import HypervisorAPI
from ..lab.providers import provider, running_host
from ..lab.state import HostState, LabState
from ..paths import fsync
from ..progress import step
from ..records import Rec
from . import checkpoints, jobs
from .backup_modes import (  # noqa: F401 - COPY_MIB_S, EXPORT_BITMAP: callers name them here too
    COPY_MIB_S,
    DISK,
    EXPORT_BITMAP,
    MODES,
    REGISTRY,
    BackupMode,
    Copy,
)
from .catalog import BackupSet, describe_files, keep_boot_files, list_sets, site_dir, write_set
from .iopause import IOPause

JOB_TIMEOUT_S = 1800
AGENT_TIMEOUT_S = 5
THAW_DEADLINE_S = 30


def _checkpoint_xml(name: str) -> str:
    root = ET.Element("domaincheckpoint")
    ET.SubElement(root, "name").text = name
    disks = ET.SubElement(root, "disks")
    ET.SubElement(disks, "disk", name=DISK, checkpoint="bitmap")
    ET.SubElement(disks, "disk", name="vdb", checkpoint="no")
    return ET.tostring(root, encoding="unicode")


def _thaw(hv: HypervisorAPI, vm: str, deadline_s: float,
          pause: IOPause | None = None) -> tuple[int | None, int, str]:
    """Thaw until the agent itself says "thawed": (when the thaw that worked returned, or None;
    attempts; last error). A VM paused on a write error cannot thaw: it is resumed first, and the
    thaw gets its own time afterwards."""
    end, attempts, last, extended = time.monotonic() + deadline_s, 0, "", False
    while True:
        attempts += 1
        try:
            hv.fs_thaw(vm)
            thawed_at = now_ns()
            if hv.agent_command(vm, {"execute": "guest-fsfreeze-status"}, AGENT_TIMEOUT_S) == "thawed":
                return thawed_at, attempts, ""
            last = "the agent still reports the guest frozen"
        except AvailLabError as exc:
            last = str(exc)
            if pause:
                try:
                    pause.release()
                except AvailLabError as stuck:  # paused for good: no thaw can reach the guest
                    return None, attempts, f"{last}; {stuck}"
                if pause.failed:  # the watcher found it paused for good
                    return None, attempts, f"{last}; {pause.failed}"
                if pause.resumed and not extended:  # resumed here or by the watcher
                    extended = True
                    end = max(end, time.monotonic() + 2 * AGENT_TIMEOUT_S)
                    continue
        if time.monotonic() > end:
            return None, attempts, last
        time.sleep(0.5)


def _progress(vm: str, kind: str) -> Callable[[int, int], None]:
    """Says every quarter of the disk passed, so a long copy is seen to move."""
    said = [0]

    def tell(done: int, size: int) -> None:
        quarter = 4 * done // size if size else 4
        if quarter > said[0]:
            said[0] = quarter
            if quarter < 4:
                step(f"backup of {vm} ({kind}): {25 * quarter}% of the disk done")
    return tell


SUFFIX = {"full": "full", "incremental": "inc", "differential": "diff"}  # of the set id


def _check_request(mode: str, copy_mib_s: int, incremental: bool, differential: bool) -> None:
    if mode not in MODES:
        raise UsageError(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
    if isinstance(copy_mib_s, bool) or not isinstance(copy_mib_s, int) or copy_mib_s < 0:
        raise UsageError(f"copy_mib_s: must be a whole number of MiB/s, 0 for no cap (got {copy_mib_s!r})")
    if incremental and differential:
        raise UsageError("incremental, differential: pick one (an incremental is since the last backup, "
                         "a differential since the last full)")


def _refuse_paused(hv: HypervisorAPI, vm: str) -> None:
    """A VM paused by its own failing writes, or by a migration, is not backed up: the backup's
    evidence would blame it for what it did not cause, or read a disk two hosts hold."""
    paused = hv.pause_reason(vm)
    if paused == "ioerror":
        raise BackupError(f"backup of {vm}: the VM is paused on a write error of its own "
                          f"({hv.disk_errors(vm) or 'disk'}); fix its storage first")
    if paused in ("migration", "postcopy", "postcopy-failed"):
        raise BackupError(f"backup of {vm}: the VM is paused by a migration ({paused}); back it up "
                          "once it runs on one host")


def _parent(st: LabState, hv: HypervisorAPI, vm: str, kind: str, host: str) -> BackupSet | None:
    """The set an incremental (the newest) or a differential (the newest full) builds on, whose
    checkpoint must be on the VM's disk where it runs now; None for a full backup."""
    if kind == "full":
        return None
    mine = [b for b in list_sets(st, "primary") if b.vm == vm and (kind == "incremental" or b.type == "full")]
    if not mine:
        raise UsageError(f"{kind}: {vm} has no {'backup' if kind == 'incremental' else 'full backup'} "
                         "yet; take a full backup first")
    parent = mine[-1]
    if parent.checkpoint not in hv.checkpoints(vm):
        raise BackupError(f"{kind}: checkpoint {parent.checkpoint} of {parent.id} is not on {vm}'s disk "
                          f"on {host} (its disk was replaced, or the set predates checkpoints kept "
                          "with the backups); take a full backup")
    return parent


@dataclass
class _Backup:
    """One backup under way: what its phases share."""
    c: Copy
    mode: BackupMode
    set_id: str
    root: Path  # the primary site; the set is renamed into it last
    ck: str  # the checkpoint this backup leaves for the next incremental
    parent: BackupSet | None
    consistent: bool
    database: str
    events: RecordSink | None
    pause: IOPause
    phases: list[dict] = field(default_factory=list)
    t0: int = field(default_factory=now_ns)
    began: bool = False  # backupBegin returned: the job, and its checkpoint, are ours to end
    t_begin: int = 0
    t_done: int = 0


def backup(st: LabState, vm: str, *, incremental: bool = False, differential: bool = False,
           consistent: bool = True, copy_mib_s: int = COPY_MIB_S, mode: str = MODES[0],
           events: RecordSink | None = None, before_copy: Callable[[Path], None] | None = None) -> BackupSet:
    """A full backup, an incremental one (since the VM's last backup) or a differential one
    (since its last full), on whichever host the VM runs now: the checkpoints of earlier backups
    follow the VM (see checkpoints.py), so a chain survives live migration.
    `before_copy(directory)` runs once the set's directory exists, before libvirt writes into
    it: the fault matrix uses it to put that directory on a volume too small for the copy.
    `mode` "pull" reads libvirt's NBD export into the set at `copy_mib_s` (pull.py); "push" has
    QEMU's backup job write the set, its copy capped at `copy_mib_s` (backup_modes.py)."""
    _check_request(mode, copy_mib_s, incremental, differential)
    provider(st).require("backup")
    REGISTRY[mode].require()
    jobs.recover(st, vm)  # what a backup of it that was killed left: its job, checkpoint, partial set
    host = st.hosts[running_host(st, vm)]
    kind = "incremental" if incremental else "differential" if differential else "full"
    with provider(st).connect(host) as hv:
        b = _start(st, hv, vm, host, kind, REGISTRY[mode], copy_mib_s, consistent, events)
        try:
            if before_copy:
                before_copy(b.c.work)
            b.mode.prepare(b.c)
            jobs.record(b.c.work, vm, host.name, b.ck, b.c.nbd_dir, b.c.scratch)  # a kill -9 from here on is recovered
            # everything that can be done before the freeze is: the watcher's connection and the
            # agent's timeout cost the host's libvirtd CPU it shares with the guest's vCPU
            with b.pause.watching():  # resumes a VM paused on a failed write
                _point_in_time(b)
                b.mode.copy(b.c, _progress(vm, kind))
                _wait_for_the_job(b)
            bset = _catalogue(b)
        except BaseException as exc:  # Ctrl-C too: no job left copying, no VM left paused
            _failed(b, exc)
    b.mode.leftovers(b.c)
    _said(b, bset)
    return bset


def _start(st: LabState, hv: HypervisorAPI, vm: str, host: HostState, kind: str, mode: BackupMode,
           copy_mib_s: int, consistent: bool, events: RecordSink | None) -> _Backup:
    """Everything decided before the backup's job: the VM's state, its chain, the set's name
    and directory; the start recorded."""
    _refuse_paused(hv, vm)
    adopted, dropped = checkpoints.adopt(st, hv, vm)  # the VM may have moved since its last backup
    if dropped:
        step(f"backup of {vm}: checkpoint(s) no longer on its disk, given up: {'; '.join(dropped)}")
    parent = _parent(st, hv, vm, kind, host.name)
    set_id = f"{vm}-{_dt.datetime.now().strftime('%Y%m%dT%H%M%S%f')[:-3]}-{SUFFIX[kind]}"
    root = site_dir(st, "primary")
    work = root / f"{set_id}.partial"
    work.mkdir(parents=True)
    c = Copy(st, hv, vm, host, kind, work, parent.checkpoint if parent else None, copy_mib_s,
             scratch=Path(host.directory) / "scratch" / f"{set_id}.qcow2")
    phases: list[dict] = []
    b = _Backup(c, mode, set_id, root, f"ck-{set_id}", parent, consistent,
                st.vms[vm].database if vm in st.vms else DEFAULT_DATABASE, events, IOPause(hv, vm, phases), phases)
    if events:
        events.write({"type": Rec.BACKUP_START, "t": b.t0, "vm": vm, "set_id": set_id, "kind": kind,
                      "host": host.name, "adopted_checkpoints": adopted, "copy_mib_s": copy_mib_s,
                      "mode": mode.name, "consistency": "application" if consistent else "crash"})
    return b


def _point_in_time(b: _Backup) -> None:
    """The VSS sequence: the database's checkpoint, the freeze, the job's begin (the point in
    time), the thaw. A freeze is never left in place, whatever failed."""
    hv, vm = b.c.hv, b.c.vm
    if b.consistent:
        hv.set_agent_timeout(vm, AGENT_TIMEOUT_S)
    prepare = dialect(b.database).prepare_backup
    if b.consistent and prepare:
        a = now_ns()
        run_sql(b.c.st, vm, prepare)
        b.phases.append({"phase": "db checkpoint", "t0": a, "t1": now_ns()})
    frozen = answered = begun = None
    try:
        if b.consistent:
            frozen = now_ns()
            try:
                hv.fs_freeze(vm)
                answered = now_ns()
            except AvailLabError as exc:
                raise BackupError(f"backup of {vm}: the guest agent did not freeze the filesystems "
                                  f"(it has {AGENT_TIMEOUT_S} s to answer), no backup taken ({exc})") from exc
        hv.backup_begin(vm, b.mode.xml(b.c), _checkpoint_xml(b.ck))
        begun = now_ns()
        b.began = True
        b.mode.after_begin(b.c)
        b.pause.arm()
        b.t_begin = now_ns()
    finally:
        if frozen is not None:  # never leave the guest frozen, even if the freeze "failed"
            thawed_at, attempts, why = _thaw(hv, vm, THAW_DEADLINE_S, b.pause)
            b.phases.append({"phase": "frozen", "t0": frozen, "t1": thawed_at or now_ns(),
                             "thawed": thawed_at is not None, "thaw_attempts": attempts,
                             # the window's parts: freeze answered, backup begun, thaw answered
                             "answered": answered, "begun": begun})
            if thawed_at is None:
                raise BackupError(f"backup of {vm}: the guest may still be FROZEN: no thaw was "
                                  f"acknowledged in {THAW_DEADLINE_S} s ({why}); the guest's "
                                  f"watchdog thaws it 10 s after the freeze")


def _wait_for_the_job(b: _Backup) -> None:
    hv, vm = b.c.hv, b.c.vm
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while hv.job_active(vm):
        if time.monotonic() > deadline:
            hv.abort_job(vm)
            raise BackupError(f"backup of {vm} did not finish in {JOB_TIMEOUT_S} s; aborted")
        if b.pause.failed:  # the watcher found the VM paused for good: no point waiting
            raise b.pause.failed
        time.sleep(0.05)


def _catalogue(b: _Backup) -> BackupSet:
    """A completed copy made a set: its files described and synced, then renamed in (last: after
    it, the set exists). A copy that did not complete is never catalogued (e.g. storage full)."""
    c, hv, vm = b.c, b.c.hv, b.c.vm
    b.t_done = now_ns()
    completed, why = b.mode.outcome(c)
    copy = "completed" if completed else f"failed during the copy: {why}"
    with contextlib.suppress(AvailLabError):
        b.pause.release()  # after a completed job too (see IOPause); a failure sets pause.failed
    if b.pause.failed:
        raise BackupError(f"backup of {vm} {copy}; {b.pause.failed}")
    if not completed:
        raise BackupError(f"backup of {vm} {copy}" + (f"; {b.pause.note}" if b.pause.resumed else ""))
    b.phases.append({"phase": "copy", "t0": b.t_begin, "t1": b.t_done})
    (c.work / "domain.xml").write_text(hv.domain_xml(vm, migratable=True))
    boot = keep_boot_files(c.work, (c.work / "domain.xml").read_text()) if c.kind == "full" else []
    checkpoints.keep(c.st, hv, vm, b.ck)  # before the set exists: a set always has its checkpoint kept
    bset = BackupSet(id=b.set_id, vm=vm, type=c.kind, parent=b.parent.id if b.parent else None,
                     checkpoint=b.ck, time=time.time(), consistency="application" if b.consistent else "crash",
                     files=describe_files(c.work, [f"{DISK}.qcow2", "domain.xml", *boot]), source_host=c.host.name,
                     address=c.st.vms[vm].address, t_begin=b.t_begin,
                     freeze_ms=next((round((p["t1"] - p["t0"]) / 1e6, 1) for p in b.phases if p["phase"] == "frozen"),
                                    None),
                     duration_s=round((b.t_done - b.t0) / 1e9, 3),
                     database=b.database, mode=b.mode.name, lab_id=identity.lab_id(c.st.lab) or "")
    for f in bset.files:  # on disk before it is catalogued: a crash must not leave a set of holes
        fsync(c.work / f["name"])
    write_set(c.work, bset)
    c.work.rename(b.root / b.set_id)
    fsync(b.root)
    bset.site, bset.directory = "primary", str(b.root / b.set_id)
    return bset


def _failed(b: _Backup, exc: BaseException) -> NoReturn:
    """No job left copying, no VM left paused, no partial set, no checkpoint anyone could build
    on; the failure recorded and raised, with what could not be undone."""
    c, hv, vm = b.c, b.c.hv, b.c.vm
    failure = exc
    still = jobs.end_job(hv, vm) if b.began else ""  # before backupBegin, a job is not ours to end
    with contextlib.suppress(AvailLabError):
        b.pause.release()  # whatever failed, the VM is not left paused by our backup
    extra = [str(b.pause.failed)] if b.pause.failed and str(b.pause.failed) not in str(exc) else []
    extra += [f"its backup job is STILL RUNNING: {still}{b.mode.left_for_job(c)}"] if still else []
    if isinstance(exc, AvailLabError) and extra:
        failure = BackupError(f"{exc}; and {'; '.join(extra)}")
    elif extra:  # interrupted: the exception stays, the news is said and recorded
        step(f"backup of {vm} interrupted; {'; '.join(extra)}")
    shutil.rmtree(c.work, ignore_errors=True)
    if not still:  # a job still running keeps its socket and scratch file
        b.mode.leftovers(c)
    if b.began:  # a failed set's checkpoint must not be anyone's parent
        with contextlib.suppress(AvailLabError):
            hv.delete_checkpoint(vm, b.ck)
        checkpoints.forget(c.st, vm, b.ck)
    if b.events:
        why = str(failure) if isinstance(failure, AvailLabError) else "; ".join(["interrupted", *extra])
        b.events.write({"type": Rec.BACKUP_FAILED, "t0": b.t0, "t1": now_ns(), "t": now_ns(), "vm": vm,
                        "set_id": b.set_id, "kind": c.kind, "phases": b.phases, "error": why})
    if failure is exc:
        raise exc
    raise failure from exc


def _said(b: _Backup, bset: BackupSet) -> None:
    c = b.c
    if b.events:
        b.events.write({"type": Rec.BACKUP, "t0": b.t0, "t1": b.t_done, "t": b.t_done, "vm": c.vm, "set_id": b.set_id,
                        "kind": c.kind, "consistency": bset.consistency, "phases": b.phases,
                        "freeze_ms": bset.freeze_ms, "size_bytes": bset.size_bytes,
                        "duration_s": bset.duration_s, "t_begin": b.t_begin, "ok": True, "mode": b.mode.name,
                        **({"read_bytes": c.copied.bytes, "extents": c.copied.extents,
                            "read_s": round(c.copied.seconds, 3)} if c.copied else {}),
                        **({"copy_uncapped": c.uncapped} if c.uncapped else {})})
    step(f"backup {b.set_id}: {c.kind}, {bset.consistency}-consistent, {bset.size_bytes / 2**20:.0f} MiB "
         f"in {bset.duration_s:.1f} s" + (f", frozen {bset.freeze_ms} ms" if bset.freeze_ms is not None else ""))
