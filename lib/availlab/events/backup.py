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
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from ..clients.sql import run_sql
from ..dialects import DEFAULT_DATABASE, dialect
from ..errors import AvailLabError, BackupError, UsageError
from ..history import JsonlWriter, now_ns
from ..lab import identity
from ..lab.providers import provider, running_host
from ..lab.state import LabState
from ..lab.virt import Hypervisor
from ..paths import fsync
from ..progress import step
from ..records import Rec
from . import checkpoints, jobs, pull
from .catalog import BackupSet, describe_files, keep_boot_files, list_sets, site_dir, write_set
from .iopause import IOPause

DISK = "vda"
JOB_TIMEOUT_S = 1800
# The copy's cap. Unbounded, the job starves the guest's own I/O until it is done: clients waited
# through the whole copy of a full backup (0.6-0.8 s). Measured under 4 clients, median / max
# longest client gap: 773 / 838 ms unbounded, 731 / 967 at 1000 MiB/s, 341 / 476 at 400, 256 / 315
# at 100 (migrations in the same runs: 165-407 ms). The cap counts the disk's virtual size.
COPY_MIB_S = 300
# Pull mode (pull.py) is the default: its clients' longest gap was a quarter to a half of a
# migration's, push mode's 1.4-2.3x one (docs/backup.md). Push stays for comparison (bench/backup.py) and for what pull cannot reach.
MODES = ("pull", "push")
EXPORT_BITMAP = "availlab-since-parent"  # the NBD name of an incremental's dirty bitmap
AGENT_TIMEOUT_S = 5
THAW_DEADLINE_S = 30


def _backup_xml(mode: str, target: Path, parent_checkpoint: str | None, socket: Path | None = None,
                scratch: Path | None = None) -> str:
    """Push: libvirt writes the set at `target`. Pull: libvirt exports the disk over NBD at
    `socket`, saving old data in `scratch` before the guest overwrites it, until the job ends."""
    root = ET.Element("domainbackup", mode=mode)
    if parent_checkpoint:
        ET.SubElement(root, "incremental").text = parent_checkpoint
    if mode == "pull":
        ET.SubElement(root, "server", transport="unix", socket=str(socket))
    disks = ET.SubElement(root, "disks")
    d = ET.SubElement(disks, "disk", name=DISK, backup="yes", type="file")
    if mode == "pull":
        d.set("exportname", DISK)
        if parent_checkpoint:
            d.set("exportbitmap", EXPORT_BITMAP)
        ET.SubElement(d, "scratch", file=str(scratch))
    else:
        ET.SubElement(d, "target", file=str(target))
        ET.SubElement(d, "driver", type="qcow2")
    ET.SubElement(disks, "disk", name="vdb", backup="no")  # the read-only config disk
    return ET.tostring(root, encoding="unicode")


def _checkpoint_xml(name: str) -> str:
    root = ET.Element("domaincheckpoint")
    ET.SubElement(root, "name").text = name
    disks = ET.SubElement(root, "disks")
    ET.SubElement(disks, "disk", name=DISK, checkpoint="bitmap")
    ET.SubElement(disks, "disk", name="vdb", checkpoint="no")
    return ET.tostring(root, encoding="unicode")


def _thaw(hv: Hypervisor, vm: str, deadline_s: float,
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


def _pull_leftovers(nbd_dir: Path, scratch: Path) -> None:
    """libvirt removes the scratch file when the job ends; an ended job that left it, or a socket
    directory, is ours to remove."""
    shutil.rmtree(nbd_dir, ignore_errors=True)
    scratch.unlink(missing_ok=True)


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


def _refuse_paused(hv: Hypervisor, vm: str) -> None:
    """A VM paused by its own failing writes, or by a migration, is not backed up: the backup's
    evidence would blame it for what it did not cause, or read a disk two hosts hold."""
    paused = hv.pause_reason(vm)
    if paused == "ioerror":
        raise BackupError(f"backup of {vm}: the VM is paused on a write error of its own "
                          f"({hv.disk_errors(vm) or 'disk'}); fix its storage first")
    if paused in ("migration", "postcopy", "postcopy-failed"):
        raise BackupError(f"backup of {vm}: the VM is paused by a migration ({paused}); back it up "
                          "once it runs on one host")


def _parent(st: LabState, hv: Hypervisor, vm: str, kind: str, host: str) -> BackupSet | None:
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


def backup(st: LabState, vm: str, *, incremental: bool = False, differential: bool = False,
           consistent: bool = True, copy_mib_s: int = COPY_MIB_S, mode: str = MODES[0],
           events: JsonlWriter | None = None, before_copy: Callable[[Path], None] | None = None) -> BackupSet:
    """A full backup, an incremental one (since the VM's last backup) or a differential one
    (since its last full), on whichever host the VM runs now: the checkpoints of earlier backups
    follow the VM (see checkpoints.py), so a chain survives live migration.
    `before_copy(directory)` runs once the set's directory exists, before libvirt writes into
    it: the fault matrix uses it to put that directory on a volume too small for the copy.
    `mode` "pull" reads libvirt's NBD export into the set at `copy_mib_s` (pull.py); "push" has
    QEMU's backup job write the set, its copy capped at `copy_mib_s`."""
    _check_request(mode, copy_mib_s, incremental, differential)
    provider(st).require("backup")
    if mode == "pull":
        pull.require()
    jobs.recover(st, vm)  # what a backup of it that was killed left: its job, checkpoint, partial set
    host = st.hosts[running_host(st, vm)]
    database = st.vms[vm].database if vm in st.vms else DEFAULT_DATABASE
    with provider(st).connect(host) as hv:
        _refuse_paused(hv, vm)
        kind = "incremental" if incremental else "differential" if differential else "full"
        adopted, dropped = checkpoints.adopt(st, hv, vm)  # the VM may have moved since its last backup
        if dropped:
            step(f"backup of {vm}: checkpoint(s) no longer on its disk, given up: {'; '.join(dropped)}")
        parent = _parent(st, hv, vm, kind, host.name)
        set_id = f"{vm}-{_dt.datetime.now().strftime('%Y%m%dT%H%M%S%f')[:-3]}-{SUFFIX[kind]}"
        root = site_dir(st, "primary")
        work = root / f"{set_id}.partial"
        work.mkdir(parents=True)
        ck = f"ck-{set_id}"
        # pull mode: the export's socket (a short path: sun_path holds 107 bytes) and the scratch
        # file on the host's own storage, never in the set (a full set volume must not stall the guest)
        nbd_dir: Path | None = None  # made inside the try below, so its cleanup covers it
        scratch = Path(host.directory) / "scratch" / f"{set_id}.qcow2"
        phases: list[dict] = []
        pause = IOPause(hv, vm, phases)
        t0 = now_ns()
        if events:
            events.write({"type": Rec.BACKUP_START, "t": t0, "vm": vm, "set_id": set_id, "kind": kind,
                          "host": host.name, "adopted_checkpoints": adopted, "copy_mib_s": copy_mib_s, "mode": mode,
                          "consistency": "application" if consistent else "crash"})
        began, uncapped, copied = False, "", None
        try:
            if before_copy:
                before_copy(work)
            if mode == "pull":
                nbd_dir = Path(tempfile.mkdtemp(prefix="availlab-nbd-"))
                scratch.parent.mkdir(parents=True, exist_ok=True)
                host_command = provider(st).host_command(host)
            jobs.record(work, vm, host.name, ck, nbd_dir, scratch)  # a kill -9 from here on is recovered
            # everything that can be done before the freeze is: the watcher's connection and the
            # agent's timeout cost the host's libvirtd CPU it shares with the guest's vCPU
            with pause.watching(host.name, host.uri):  # resumes a VM paused on a failed write
                if consistent:
                    hv.set_agent_timeout(vm, AGENT_TIMEOUT_S)
                prepare = dialect(database).prepare_backup
                if consistent and prepare:
                    a = now_ns()
                    run_sql(st, vm, prepare)
                    phases.append({"phase": "db checkpoint", "t0": a, "t1": now_ns()})
                frozen = answered = begun = None
                try:
                    if consistent:
                        frozen = now_ns()
                        try:
                            hv.fs_freeze(vm)
                            answered = now_ns()
                        except AvailLabError as exc:
                            raise BackupError(f"backup of {vm}: the guest agent did not freeze the filesystems "
                                              f"(it has {AGENT_TIMEOUT_S} s to answer), no backup taken ({exc})") from exc
                    hv.backup_begin(vm, _backup_xml(mode, work / f"{DISK}.qcow2", parent.checkpoint if parent else None,
                                                    nbd_dir / "nbd.sock" if nbd_dir else None, scratch),
                                    _checkpoint_xml(ck))
                    begun = now_ns()
                    began = True
                    if copy_mib_s and mode == "push":  # before the thaw: the copy must not take the guest's I/O
                        try:
                            hv.set_copy_speed(vm, DISK, copy_mib_s)
                        except AvailLabError as exc:  # the job may have ended at once (its target full):
                            uncapped = str(exc)       # its own outcome says why, below; never hidden by this
                            step(f"backup of {vm}: the copy runs uncapped: {exc}")
                    pause.arm()
                    t_begin = now_ns()
                finally:
                    if frozen is not None:  # never leave the guest frozen, even if the freeze "failed"
                        thawed_at, attempts, why = _thaw(hv, vm, THAW_DEADLINE_S, pause)
                        phases.append({"phase": "frozen", "t0": frozen, "t1": thawed_at or now_ns(),
                                       "thawed": thawed_at is not None, "thaw_attempts": attempts,
                                       # the window's parts: freeze answered, backup begun, thaw answered
                                       "answered": answered, "begun": begun})
                        if thawed_at is None:
                            raise BackupError(f"backup of {vm}: the guest may still be FROZEN: no thaw was "
                                              f"acknowledged in {THAW_DEADLINE_S} s ({why}); the guest's "
                                              f"watchdog thaws it 10 s after the freeze")
                if mode == "pull":
                    try:
                        copied = pull.copy_export(nbd_dir / "nbd.sock", DISK, work / f"{DISK}.qcow2",
                                                  bitmap=EXPORT_BITMAP if parent else None, mib_s=copy_mib_s,
                                                  host_command=host_command, progress=_progress(vm, kind))
                    except BackupError as exc:  # said like push mode's copy failures
                        gone = ""
                        with contextlib.suppress(AvailLabError):  # never hides the copy's own error
                            gone = "" if hv.job_active(vm) else "its backup job ended before the copy did; "
                        raise BackupError(f"backup of {vm} failed during the copy: {gone}{exc}") from exc
                    still = jobs.end_job(hv, vm)  # a pull job ends when its reader says so
                    if still:
                        raise BackupError(f"backup of {vm}: the copy completed but its job did not end: {still}")
                deadline = time.monotonic() + JOB_TIMEOUT_S
                while hv.job_active(vm):
                    if time.monotonic() > deadline:
                        hv.abort_job(vm)
                        raise BackupError(f"backup of {vm} did not finish in {JOB_TIMEOUT_S} s; aborted")
                    if pause.failed:  # the watcher found the VM paused for good: no point waiting
                        raise pause.failed
                    time.sleep(0.05)
            t_done = now_ns()
            completed, why = hv.finished_job(vm) if mode == "push" else (True, "")
            copy = "completed" if completed else f"failed during the copy: {why}"
            with contextlib.suppress(AvailLabError):
                pause.release()  # after a completed job too (see IOPause); a failure sets pause.failed
            if pause.failed:
                raise BackupError(f"backup of {vm} {copy}; {pause.failed}")
            if not completed:  # never catalogue a copy that did not finish (e.g. storage full)
                raise BackupError(f"backup of {vm} {copy}" + (f"; {pause.note}" if pause.resumed else ""))
            phases.append({"phase": "copy", "t0": t_begin, "t1": t_done})
            (work / "domain.xml").write_text(hv.domain_xml(vm, migratable=True))
            boot = keep_boot_files(work, (work / "domain.xml").read_text()) if kind == "full" else []
            checkpoints.keep(st, hv, vm, ck)  # before the set exists: a set always has its checkpoint kept
            bset = BackupSet(id=set_id, vm=vm, type=kind, parent=parent.id if parent else None,
                             checkpoint=ck, time=time.time(), consistency="application" if consistent else "crash",
                             files=describe_files(work, [f"{DISK}.qcow2", "domain.xml", *boot]), source_host=host.name,
                             address=st.vms[vm].address, t_begin=t_begin,
                             freeze_ms=next((round((p["t1"] - p["t0"]) / 1e6, 1) for p in phases if p["phase"] == "frozen"), None),
                             duration_s=round((t_done - t0) / 1e9, 3),
                             database=database, mode=mode, lab_id=identity.lab_id(st.lab) or "")
            for f in bset.files:  # on disk before it is catalogued: a crash must not leave a set of holes
                fsync(work / f["name"])
            write_set(work, bset)
            work.rename(root / set_id)  # last: after it, the set exists
            fsync(root)
        except BaseException as exc:  # Ctrl-C too: no job left copying, no VM left paused
            failure = exc
            still = jobs.end_job(hv, vm) if began else ""  # before backupBegin, a job is not ours to end
            with contextlib.suppress(AvailLabError):
                pause.release()  # whatever failed, the VM is not left paused by our backup
            extra = [str(pause.failed)] if pause.failed and str(pause.failed) not in str(exc) else []
            extra += [f"its backup job is STILL RUNNING: {still}" + (
                f" (its NBD socket in {nbd_dir} and scratch file {scratch} are left for it)" if nbd_dir else "")
            ] if still else []
            if isinstance(exc, AvailLabError) and extra:
                failure = BackupError(f"{exc}; and {'; '.join(extra)}")
            elif extra:  # interrupted: the exception stays, the news is said and recorded
                step(f"backup of {vm} interrupted; {'; '.join(extra)}")
            shutil.rmtree(work, ignore_errors=True)
            if nbd_dir and not still:  # a job still running keeps its socket and scratch file
                _pull_leftovers(nbd_dir, scratch)
            if began:  # a failed set's checkpoint must not be anyone's parent
                with contextlib.suppress(AvailLabError):
                    hv.delete_checkpoint(vm, ck)
                checkpoints.forget(st, vm, ck)
            if events:
                why = str(failure) if isinstance(failure, AvailLabError) else "; ".join(["interrupted", *extra])
                events.write({"type": Rec.BACKUP_FAILED, "t0": t0, "t1": now_ns(), "t": now_ns(), "vm": vm,
                              "set_id": set_id, "kind": kind, "phases": phases, "error": why})
            if failure is exc:
                raise
            raise failure from exc
    if nbd_dir:
        _pull_leftovers(nbd_dir, scratch)
    bset.site, bset.directory = "primary", str(root / set_id)
    if events:
        events.write({"type": Rec.BACKUP, "t0": t0, "t1": t_done, "t": t_done, "vm": vm, "set_id": set_id,
                      "kind": kind, "consistency": bset.consistency, "phases": phases,
                      "freeze_ms": bset.freeze_ms, "size_bytes": bset.size_bytes,
                      "duration_s": bset.duration_s, "t_begin": t_begin, "ok": True, "mode": mode,
                      **({"read_bytes": copied.bytes, "extents": copied.extents, "read_s": round(copied.seconds, 3)}
                         if copied else {}),
                      **({"copy_uncapped": uncapped} if uncapped else {})})
    step(f"backup {set_id}: {kind}, {bset.consistency}-consistent, {bset.size_bytes / 2**20:.0f} MiB "
         f"in {bset.duration_s:.1f} s" + (f", frozen {bset.freeze_ms} ms" if bset.freeze_ms is not None else ""))
    return bset
