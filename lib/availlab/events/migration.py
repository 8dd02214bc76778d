"""Live migration as an event: tuned through libvirt, observed at >=10 Hz, phases recorded.

One peer-to-peer live migration through the one libvirt module, with the tuning a DBA asks about
(bandwidth, max downtime, auto-converge, post-copy, parallel connections, compression, copying
storage for shared-nothing hosts). While it runs, a poller samples the source's job statistics
at 20 Hz and libvirt's own events mark the iterations and the switchover; afterwards the
completed statistics are read on the destination (libvirt keeps them there). A failed migration
is recorded and returned, not raised: the run goes on to check and report it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import durations
from ..errors import AvailLabError, DomainNotFoundError, MigrationError, UsageError
from ..history import RecordSink, now_ns
from ..lab import state
from ..lab.hypervisor import JOB_COMPLETED_KEYS, JOB_SAMPLE_KEYS, HypervisorAPI, MigrateRequest
from ..lab.providers import provider, running_host
from ..lab.state import LabState
from ..progress import step
from ..records import Rec
from ..vm.domain_xml import child
from . import jobs
from .phases import migration_phases
from .tuning import MigrationTuning, migration_tuning  # noqa: F401 - callers name them here too

POLL_HZ = 20


@dataclass
class MigrationRecord:
    vm: str
    source: str
    target: str
    t0: int
    t1: int
    ok: bool
    error: str = ""
    downtime_ms: float | None = None
    total_ms: float | None = None
    phases: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    tuning: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)  # filled when the migration failed
    downtime_source: str = ""  # "libvirt" (its job statistics) or "lifecycle events" (suspend -> resume)
    postcopy: dict = field(default_factory=dict)  # switch time, pages requested, the post-copy phase

    def to_event(self) -> dict:
        return {"type": Rec.MIGRATION, "t": self.t1, **asdict(self)}


class _Observer:
    """Collects libvirt events and job-stat samples for one migration (threads write, we read)."""

    def __init__(self, vm: str, src: HypervisorAPI, tuning: MigrationTuning,
                 on_sample: Callable[[dict | None], None] | None = None):
        self.vm, self.src, self.tuning, self.on_sample = vm, src, tuning, on_sample
        self.iterations: list[tuple[int, int]] = []
        self.suspended: int | None = None
        self.resumed: int | None = None
        self.postcopy_at: int | None = None
        self.aborted_at: int | None = None
        self.postcopy_seen: int | None = None  # libvirt's own word that post-copy ran (not just asked)
        self.samples: list[dict] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"jobstats-{vm}", daemon=True)

    def on_event(self, kind: str, detail, t: int) -> None:
        if kind == "iteration":
            self.iterations.append((int(detail), t))
            return
        event, why = detail
        if why == "postcopy" and event in ("suspended", "resumed"):
            self.postcopy_seen = self.postcopy_seen or t
        if event == "suspended" and why in ("migrated", "postcopy"):
            self.suspended = self.suspended or t
        elif event == "resumed" and why in ("migrated", "postcopy"):
            self.resumed = self.resumed or t

    def start(self, t0: int) -> None:
        self._t0 = t0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.on_sample:
            with contextlib.suppress(Exception):
                self.on_sample(None)  # the watch ended: a progress display ends its line

    def _poll(self) -> None:
        period = 1.0 / POLL_HZ
        while not self._stop.is_set():
            t = now_ns()
            try:
                raw = self.src.job_stats(self.vm)
            except DomainNotFoundError:
                return  # the source domain is gone: the migration finished (expected)
            except AvailLabError:
                raw = {}  # e.g. no job data yet while connecting: keep watching (timeout)
            if raw.get("type", 0):
                self.samples.append({"t": t, **{k: raw[k] for k in JOB_SAMPLE_KEYS if k in raw}})
                if self.on_sample:
                    try:
                        self.on_sample(self.samples[-1])
                    except Exception:  # noqa: BLE001 - a broken progress display must not stop the watch
                        self.on_sample = None
            if self.aborted_at is None and (t - self._t0) / 1e9 > self.tuning.timeout_s:
                try:  # a migration that never converges must not hang the run: abort, record
                    self.src.abort_job(self.vm)
                    self.aborted_at = now_ns()
                    self.errors.append(f"did not complete within timeout_s={self.tuning.timeout_s:g}; aborted")
                except AvailLabError as exc:
                    self.errors.append(f"timeout, and abort failed: {exc}")
                    self.aborted_at = -1
            if (self.tuning.postcopy and self.postcopy_at is None
                    and (t - self._t0) / 1e9 >= self.tuning.postcopy_after_s
                    and raw.get("memory_iteration", 0) >= 1):
                try:
                    self.src.start_postcopy(self.vm)
                    self.postcopy_at = now_ns()
                except AvailLabError as exc:
                    self.errors.append(str(exc))
                    self.postcopy_at = -1
            self._stop.wait(period)


def postcopy_figures(rec: MigrationRecord, switched: int, resumed: int | None) -> dict:
    """What a post-copy migration did that libvirt does not report once it is over: when it
    switched (libvirt's post-copy event), how many pages the target asked the source for (the last job-statistics sample,
    taken while the source still answered), and the post-copy phase (target running, faulting
    pages from the source: the brownout) with what had been sent when the samples ended."""
    last = rec.samples[-1] if rec.samples else {}
    requests = max((s["memory_postcopy_requests"] for s in rec.samples if "memory_postcopy_requests" in s),
                   default=None)  # None: this libvirt did not say, not "no pages"
    return {"switch_after_ms": round((switched - rec.t0) / 1e6, 1),
            "pages_requested": requests,
            "phase_ms": round((rec.t1 - resumed) / 1e6, 1) if resumed else None,
            "sent_mib_at_last_sample": round(last.get("memory_processed", 0) / 2**20, 1) if last else None}


def _qemu_img(vm: str, *args: str) -> str:
    """qemu-img for copy_storage's target layer; its failure is a MigrationError naming the VM
    and qemu-img's own words, like every other way a migration can fail."""
    try:
        return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        why = (getattr(exc, "stderr", "") or str(exc)).strip()
        raise MigrationError(f"{vm}: copy_storage: qemu-img {args[0]} failed: {why}") from None


def home_disk(st: LabState, vm: str) -> Path:
    """Where a lab VM's disk lives on the shared storage (vm.create puts it there)."""
    return Path(st.shared_dir) / "vms" / vm / "disk.qcow2"


def _target_disk(st: LabState, vm: str, target: str, src_xml: str, dest: Path | None = None) -> tuple[Path, str]:
    """Shared-nothing: a fresh overlay (same template base) on the target host's own storage (or
    at `dest`), and the destination XML pointing vda at it. Only the VM's own layer crosses the wire."""
    try:
        info = json.loads(_qemu_img(vm, "info", "-U", "--output=json", st.vms[vm].disk))
    except ValueError as exc:
        raise MigrationError(f"{vm}: copy_storage: qemu-img info gave no JSON ({exc})") from None
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    if not backing:
        raise MigrationError(f"{vm}: disk has no template base; copy_storage needs one")
    dest = dest or Path(st.hosts[target].directory) / "images" / f"{vm}.qcow2"
    with state.locked(st.lab):  # the path is the lab's, and no other command's file of the moment
        if any(Path(v.disk) == dest for v in state.require_up(st.lab).vms.values()):
            raise MigrationError(f"{vm}: copy_storage: {dest} is a VM's disk in the lab's state; not replaced")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        _qemu_img(vm, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, str(dest))
    root = ET.fromstring(src_xml)
    for disk in root.findall("devices/disk"):
        if child(disk, "target").get("dev") == "vda":
            child(disk, "source").set("file", str(dest))
    return dest, ET.tostring(root, encoding="unicode")


def live_migrate(st: LabState, vm: str, target: str, tuning: MigrationTuning | None = None,
                 events: RecordSink | None = None,
                 on_sample: Callable[[dict | None], None] | None = None,
                 allow_drained: bool = False, disk_to: Path | None = None) -> MigrationRecord:
    """`on_sample(sample)` sees each job-stats sample as it is taken (a progress display), from
    the watching thread, and None once the watch has ended. A host drained for maintenance
    (events/drain.py) is no target, but for its own resume (`allow_drained`)."""
    tuning = tuning or MigrationTuning()
    prov = provider(st)
    prov.may_change(vm, "migrate")
    jobs.recover(st, vm, running_ok=True)  # a backup killed mid-way holds the domain's job lock until aborted
    source = _source_for(st, vm, target, allow_drained)
    unsafe = prov.unsafe_migration(vm, tuning.copy_storage)
    rec = MigrationRecord(vm, source, target, 0, 0, False, tuning=tuning.model_dump())
    obs, new_disk = _migrate(st, rec, tuning, unsafe, events, on_sample, disk_to)
    if obs is None:  # refused before it began, recorded
        return rec
    if rec.ok and new_disk is not None:
        old = Path(st.vms[vm].disk)
        with state.update(st.lab) as fresh:  # under the lock: the old path may be taken again at once
            fresh.vms[vm].disk = st.vms[vm].disk = str(new_disk)
            if old != new_disk:
                old.unlink(missing_ok=True)
    _figures(rec, obs)
    if not rec.ok:
        rec.diagnostics = prov.diagnostics(source, target)
    if events:
        events.write(rec.to_event())
    if rec.ok:
        tuned = ", ".join(sorted(tuning.model_dump(exclude_defaults=True)))  # "": libvirt's defaults
        durations.record("migration", (rec.t1 - rec.t0) / 1e9, tuned)
        if rec.downtime_ms is not None:
            durations.record("migration_downtime", rec.downtime_ms / 1e3, tuned)
        step(f"migrated {vm} to {target}: {(rec.t1 - rec.t0) / 1e6:.0f} ms, "
             f"hypervisor downtime {rec.downtime_ms} ms, {len(obs.iterations)} iterations")
    else:
        step(f"migration of {vm} to {target} FAILED: {rec.error}")
    return rec


def _source_for(st: LabState, vm: str, target: str, allow_drained: bool) -> str:
    """Where the VM runs, once the target is known to be one it may go to."""
    if target not in st.hosts:
        raise UsageError(f"target: unknown host {target!r} (hosts: {', '.join(st.hosts)})")
    fresh = state.load(st.lab) or st  # a drain by another command meanwhile counts
    if target in fresh.lost_hosts:
        raise UsageError(f"target: {target} was lost (a DR drill emptied it); pick another host")
    if target in fresh.drained and not allow_drained:
        raise UsageError(f"target: {target} is drained for maintenance; `availlab host resume {target}` "
                         "takes VMs there again")
    if not provider(st).reachable(st.hosts[target]):
        raise UsageError(f"target: the libvirtd of {target} is down; `availlab lab up` repairs the lab")
    source = running_host(st, vm)
    if source == target:
        raise UsageError(f"target: {vm} already runs on {target}; pick another host")
    return source


def _request(st: LabState, target: str, tuning: MigrationTuning, unsafe: bool) -> MigrateRequest:
    return MigrateRequest(address=st.hosts[target].address or None, bandwidth_mib_s=tuning.bandwidth_mib_s,
                          parallel_connections=tuning.parallel_connections, auto_converge=tuning.auto_converge,
                          postcopy=tuning.postcopy, compressed=tuning.compressed, unsafe=unsafe,
                          copy_disks=("vda",) if tuning.copy_storage else ())


def _migrate(st: LabState, rec: MigrationRecord, tuning: MigrationTuning, unsafe: bool,
             events: RecordSink | None, on_sample: Callable[[dict | None], None] | None,
             disk_to: Path | None) -> tuple[_Observer | None, Path | None]:
    """The migration itself, watched from both hosts: (its observer, the disk a copy_storage
    migration wrote), or (None, None) when it was refused before it began (recorded in `rec`)."""
    prov, vm, target = provider(st), rec.vm, rec.target
    request = _request(st, target, tuning, unsafe)
    dst_h = st.hosts[target]
    with prov.connect(st.hosts[rec.source]) as src, prov.connect(dst_h) as dst:
        rec.flags = src.migration_flags(request)
        new_disk = None
        if tuning.copy_storage:
            try:
                new_disk, dest_xml = _target_disk(st, vm, target, src.domain_xml(vm, migratable=True), disk_to)
            except MigrationError as exc:  # recorded like any failed migration: the plan goes on
                rec.t0 = rec.t1 = now_ns()
                rec.error, rec.total_ms = str(exc), 0.0
                if events:
                    events.write(rec.to_event())
                step(f"migration of {vm} to {target} FAILED before it began: {rec.error}")
                return None, None
            request = replace(request, dest_xml=dest_xml)
        if tuning.max_downtime_ms:
            src.set_max_downtime(vm, tuning.max_downtime_ms)
        obs = _Observer(vm, src, tuning, on_sample)
        handles = (src.on_domain_events(vm, obs.on_event), dst.on_domain_events(vm, obs.on_event))
        step(f"migrating {vm}: {rec.source} -> {target} ({'|'.join(rec.flags)})")
        rec.t0 = now_ns()
        if events:
            events.write({"type": Rec.MIGRATION_START, "t": rec.t0, "vm": vm, "source": rec.source,
                          "target": target, "flags": rec.flags, "tuning": rec.tuning})
        obs.start(rec.t0)
        try:
            # peer-to-peer: the source's libvirtd connects to the target itself, by the target's peer URI
            src.migrate(vm, dst_h.peer_uri or dst_h.uri, request)
            rec.ok = True
        except AvailLabError as exc:
            rec.error = str(exc)
            if "unsafe" in rec.error.lower():
                rec.error += prov.unsafe_hint
        rec.t1 = now_ns()
        if obs.aborted_at:
            rec.ok = False
        obs.stop()
        time.sleep(0.05)  # let the event thread deliver the target's last lifecycle event
        src.remove_callbacks(handles[0])
        dst.remove_callbacks(handles[1])
        if rec.ok:
            _completed(rec, dst)
    return obs, new_disk


def _completed(rec: MigrationRecord, dst: HypervisorAPI) -> None:
    """The target's account of a migration that returned: its statistics, and the VM running."""
    try:
        stats = dst.job_stats(rec.vm, completed=True)
        rec.stats = {k: stats[k] for k in JOB_COMPLETED_KEYS if k in stats}
    except AvailLabError as exc:
        rec.stats = {"error": str(exc)}
    running = [d for d in dst.domains() if d.name == rec.vm and d.state == "running"]
    if not running:
        rec.ok, rec.error = False, f"migration returned but {rec.target} does not run {rec.vm}"


def _figures(rec: MigrationRecord, obs: _Observer) -> None:
    """The record's figures from libvirt's statistics and the observer's events."""
    if obs.errors:
        rec.error = "; ".join(obs.errors + ([rec.error] if rec.error else []))
    rec.samples = obs.samples
    rec.downtime_ms, rec.downtime_source = rec.stats.get("downtime"), "libvirt" if "downtime" in rec.stats else ""
    ran_postcopy = obs.postcopy_seen is not None and obs.postcopy_at is not None and obs.postcopy_at > 0
    if (rec.downtime_ms is None and rec.ok and ran_postcopy and obs.suspended and obs.resumed
            and obs.resumed >= obs.suspended):
        # after post-copy libvirt keeps no completed statistics on either side (the source
        # domain is gone, the target has none): the pause is measured from libvirt's own events
        rec.downtime_ms = round((obs.resumed - obs.suspended) / 1e6, 1)
        rec.downtime_source = "lifecycle events"
    rec.total_ms = rec.stats.get("time_elapsed") or round((rec.t1 - rec.t0) / 1e6, 1)
    # asked for is not done: a pre-copy that converged first never switched
    pc = obs.postcopy_seen if ran_postcopy else None
    if pc is not None:
        rec.postcopy = postcopy_figures(rec, pc, obs.resumed)
    rec.phases = migration_phases(rec.t0, rec.t1, obs.iterations, obs.suspended, obs.resumed, pc)


def bring_home(st: LabState, vm: str) -> MigrationRecord | None:
    """A VM that a copy_storage migration left on a host's own storage moves back onto the lab's
    shared storage (a copy_storage migration to another host, its disk written at its home path),
    so the next run finds the lab as runs expect it; None when it is there already."""
    disk, home = Path(st.vms[vm].disk), home_disk(st, vm)
    if not provider(st).offers("copy_storage") or disk == home:
        return None
    here = running_host(st, vm)
    to = next((h for h in st.hosts if h != here and h not in st.drained and h not in st.lost_hosts
               and provider(st).reachable(st.hosts[h])), None)
    if to is None:
        raise MigrationError(f"{vm}: its disk {disk} is on {here}'s own storage and no other host can take it "
                             "back onto the shared storage")
    step(f"{vm}: its disk is on {here}'s own storage (a copy_storage run); moving it back onto the shared "
         f"storage through {to}")
    rec = live_migrate(st, vm, to, MigrationTuning(copy_storage=True), disk_to=home)
    if not rec.ok:
        raise MigrationError(f"{vm}: could not move its disk back onto the shared storage: {rec.error}")
    return rec
