"""The backup -> DR -> restore scenario (runbooks/20-backup-restore.ipynb), step by step.

plan (parameters) -> act: backups under load, replication, loss of the primary host, restore at
the DR site -> record (history.jsonl, events.jsonl) -> check (no failed client op during backups,
every write acknowledged before the incremental backup's point in time present after restore,
the database consistent, its logical dump restorable) -> report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..checks.dr import consistency_problems
from ..clients.dbdump import Dump, restore_into_scratch
from ..clients.sql import run_sql
from ..clients.worker import value_for
from ..clients.workload import WorkloadSpec, under_load
from ..dialects import TABLE, dialect
from ..errors import UsageError
from ..events.backup import COPY_MIB_S, MODES
from ..events.catalog import BackupSet
from ..events.nemesis import Nemeses, Stage
from ..events.ops import Backup, LogicalDump, Wait
from ..events.replicate import Replication, replicate
from ..events.restore import Restored, restore
from ..history import JsonlWriter, clock_anchor, now_ns
from ..lab import hostd, local, providers, state
from ..lab.providers import provider
from ..lab.topology import Topology
from ..progress import step
from ..records import Rec
from ..vm.create import remove_files
from .lab_view import Lab
from .params import BackupRestore
from .run import Run


@dataclass
class BackupRun:
    """The two sets and the logical dump (pg_dump, mariadb-dump) taken under load: the restore and
    its checks need all three."""
    full: BackupSet
    incremental: BackupSet
    dump: Dump
    run_id: str

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {b.id} | {b.type} | {b.consistency} | {b.size_bytes / 2**20:.1f} | "
                         f"{b.duration_s:.2f} | {b.freeze_ms if b.freeze_ms is not None else 'n/a'} |"
                         for b in (self.full, self.incremental))
        return ("| set | type | consistency | MiB | seconds | frozen (ms) |\n|---|---|---|---|---|---|\n" + rows
                + f"\n\n{self.dump.tool}: {self.dump.size_bytes / 2**10:.0f} KiB in {(self.dump.t1 - self.dump.t0) / 1e9:.1f} s.")


def backups_under_load(run: Run, lab: Lab, vm: str, spec: WorkloadSpec, *, warmup_s: float = 3.0,
                       between_s: float = 5.0, cooldown_s: float = 2.0, consistent: bool = True,
                       copy_mib_s: int = COPY_MIB_S, mode: str = MODES[0]) -> BackupRun:
    """Clients run throughout the nemeses: full backup, more writes, incremental backup, logical dump."""
    st = lab.st
    with JsonlWriter(run.history_path) as hist, JsonlWriter(run.events_path) as ev:
        hist.write(clock_anchor())
        full_backup = Backup(consistent=consistent, copy_mib_s=copy_mib_s, mode=mode)
        nemeses = Nemeses(Stage(st=st, vm=vm, events=ev),
                          [full_backup, Wait(between_s), replace(full_backup, incremental=True), LogicalDump(run.directory)])
        # the final read is of the restored VM (verify_restored), after the DR restore
        with under_load(st, vm, spec, hist, warmup_s=warmup_s, cooldown_s=cooldown_s, final_read=False,
                        nemeses=nemeses) as wl:
            full, _, inc, dump = nemeses.invoke()
    return BackupRun(full, inc, dump, wl.run_id)


def replicate_to_dr(run: Run, lab: Lab, set_id: str) -> Replication:
    """Copy the chain to the DR site and record its throughput (an RTO input)."""
    t0 = now_ns()
    r = replicate(lab.st, set_id)
    with JsonlWriter(run.events_path) as ev:
        ev.write({"type": Rec.REPLICATION, "t0": t0, "t1": now_ns(), "t": now_ns(), "sets": r.set_ids,
                  "bytes": r.bytes_copied, "seconds": round(r.seconds, 3), "mib_s": round(r.mib_s, 1)})
    return r


def default_restore_host(lab: Lab, lost: str) -> str:
    """A DR-site host if the topology has one, else any surviving host (in a drill, `lost` is the
    host the VM runs on: the drill's VM goes beside it, never onto it)."""
    st = lab.st
    topo = Topology.model_validate(st.topology)
    dr = [h.name for h in topo.hosts if h.site == "dr" and h.name != lost]
    rest = [h for h in st.hosts if h != lost]
    if not (dr or rest):
        raise UsageError("restore_host: the lab has no host besides the lost one")
    return (dr or rest)[0]


def lose_host(run: Run, lab: Lab, vm: str) -> str:
    """Disaster: the VM's host and the VM's disk are gone. Its VMs are powered off and
    undefined, their disks deleted, its libvirtd stopped (by PID). Returns the lost host."""
    st = lab.st
    provider(st).require("fault")
    where = providers.locate_vm(st, vm)
    if where is None:
        raise UsageError(f"vm: {vm!r} is not defined on any host")
    h = st.hosts[where[0]]
    t0 = now_ns()
    lost = []
    with provider(st).connect(h) as hv:
        for d in hv.domains():
            hv.destroy(d.name)
            hv.undefine(d.name)
            lost.append(d.name)
            if d.name in st.vms:
                Path(st.vms[d.name].disk).unlink(missing_ok=True)
    # The VMs that went down with the host are gone for good: the lab forgets them, so that the
    # next runbook creates them again instead of tripping over a name whose disk no longer exists
    # (the restore adds `vm`, under its own name or another). Their console logs are left in place.
    with state.update(lab.name) as fresh:
        for name in lost:
            if name in fresh.vms:
                remove_files(fresh.vms.pop(name), console=False)  # the config disk holds the DB password
        fresh.lost_hosts = sorted({*fresh.lost_hosts, h.name})  # emptied by us: a restore elsewhere need not wait for it
    pid = local.host_daemon(h).pid()
    if pid:
        hostd.stop_pid(pid, f"libvirtd of {h.name}")
    with JsonlWriter(run.events_path) as ev:
        ev.write({"type": Rec.HOST_LOST, "t": now_ns(), "t0": t0, "t1": now_ns(), "host": h.name, "vm": vm,
                  "vms_lost": lost})
    step(f"host {h.name} lost: its VMs ({', '.join(lost) or 'none'}) destroyed, their disks deleted, "
         "libvirtd stopped")
    lab.refresh()
    return h.name


def disaster_or_drill(run: Run, lab: Lab, vm: str, drill: bool) -> str:
    """The host the restore must avoid: the lost one, or, in a drill, the one the VM still runs on."""
    if drill:
        host = providers.running_host(lab.st, vm)
        with JsonlWriter(run.events_path) as ev:
            ev.write({"type": Rec.DRILL, "t": now_ns(), "vm": vm, "host": host})
        step(f"restore drill: {vm} keeps running on {host}; nothing is lost")
        return host
    return lose_host(run, lab, vm)


@dataclass(frozen=True)
class RestoreAs:
    """The names the run's restores take, settled before anything changes."""
    name: str  # the restored VM ('' : the backed-up VM's own name)
    replace: bool  # a leftover of an earlier drill of that name is replaced
    instant: str  # the instant restore's VM ('' : none)

    def _repr_markdown_(self) -> str:
        return (f"The restore will be named `{self.name or 'as the VM'}`"
                + (f", the instant one `{self.instant}`" if self.instant else "") + ".")


def restore_names(lab: Lab, config: BackupRestore) -> RestoreAs:
    """The restored VMs' names (`<vm>-drill` in a drill, `<name>-instant` beside it). A VM left
    under one of them by a run that failed half-way is replaced only if it is itself a restore
    (the lab's state says which set it came from); any other VM of that name is refused now."""
    name, instant = config.restored_names()
    replace = bool(config.drill and not config.restore_name)
    on = providers.running_host(lab.st, config.vm)
    if config.restore_host and config.restore_host == on:  # lost in a disaster; in a drill, the original's
        raise UsageError(f"restore_host: {on!r} is where {config.vm} runs, the host the run "
                         + ("keeps the original on" if config.drill else "loses")
                         + "; name another host (or leave it empty); nothing was changed")
    for n, ours in ((name, replace), (instant, True)):
        v = lab.st.vms.get(n) if n and n != config.vm else None  # the VM itself: a disaster takes it
        if v is not None and not (ours and v.restored_from):
            raise UsageError(f"restore_name: VM {n!r} exists" + (" and is not a restore" if ours else "")
                             + ": the run will not replace it (delete it, or choose another restore_name / vm)")
    return RestoreAs(name, replace, instant)


def restore_at_dr(run: Run, lab: Lab, set_id: str, host: str, name: str = "", instant: bool = False,
                  replace: bool = False) -> Restored:
    """Restore the set on the DR host and time it until the database answers: that time is the RTO.
    `replace`: a drill's VM left by a drill that failed half-way is replaced, not refused."""
    r = restore(lab.st, set_id, host, name=name or None, instant=instant, replace=replace)
    lab.refresh()  # the restored VM is the lab's now
    phases = [{"phase": f"restore{' instant' if instant else ''} (RTO)", "t0": r.t0, "t1": r.t_ready}]
    if r.t_moved_off:
        phases.append({"phase": "move off the set", "t0": r.t_ready, "t1": r.t_moved_off})
    with JsonlWriter(run.events_path) as ev:
        ev.write({"type": Rec.RESTORE, "t0": r.t0, "t1": r.t_moved_off or r.t_ready, "t": r.t_ready, "vm": r.name,
                  "host": r.host, "sets": r.set_ids, "rto_s": r.rto_s, "mode": r.mode, "disk_s": r.disk_s,
                  "move_off_s": r.move_off_s, "phases": phases})
    return r


@dataclass
class InstantBeside:
    """An instant restore beside the full one: the report shows both RTOs of the same chain."""
    restored: Restored
    full: Restored
    same_rows: bool

    def _repr_markdown_(self) -> str:
        r, full = self.restored, self.full
        return (f"Instant restore **{r.name}**: database answered after **{r.rto_s} s** (full restore: "
                f"**{full.rto_s} s**, of which {full.disk_s} s copying the chain); its data moved off the set "
                f"{r.move_off_s} s later; same rows as the full restore: {'yes' if self.same_rows else '**NO**'}; "
                "removed.")


def instant_restore_beside(run: Run, lab: Lab, set_id: str, full: Restored, name: str) -> InstantBeside:
    """Restore the same chain again, instantly, beside the full restore: both RTOs in one run.
    Its rows must be the full restore's; it is removed afterwards, even when it failed half-way
    (the DR host's memory is for the restored database)."""
    from ..vm.create import delete

    try:
        # a leftover of a failed run was checked by restore_names: only a restore is replaced
        r = restore_at_dr(run, lab, set_id, full.host, name, instant=True, replace=True)
        q = f"SELECT k FROM {TABLE}"
        same = sorted(run_sql(lab.st, r.name, q, timeout_s=120)) == sorted(run_sql(lab.st, full.name, q, timeout_s=120))
        with JsonlWriter(run.history_path) as hist:
            hist.write({"type": Rec.INSTANT_READ, "t": now_ns(), "ok": same, "vm": r.name})
    finally:
        if name in lab.refresh().st.vms:
            delete(lab.name, name)
            lab.refresh()
    return InstantBeside(r, full, same)


@dataclass
class Verification:
    """What the restored database holds, recorded for the rpo and restore checks."""
    keys: int
    consistent: bool
    dump_keys: int
    detail: str

    def _repr_markdown_(self) -> str:
        return self.detail


def verify_restore(run: Run, lab: Lab, restored: Restored, bk: BackupRun) -> Verification:
    """Read back what the restored database holds; ask it the questions that tell a sound database
    from a damaged one; restore the logical dump into a scratch database on it. The answers land
    in the history as they were given, and the restore check (checks.dr) judges them."""
    st = lab.st
    vm = restored.name
    d = dialect(st.vms[vm].database)
    rows = run_sql(st, vm, d.rows_of_run, (bk.run_id,), timeout_s=120)
    keys = [r[0] for r in rows]
    wrong = sorted(k for k, v in rows if v != value_for(k))  # a value no client wrote under its key
    seq = run_sql(st, vm, d.count_by_table, timeout_s=120)
    idx = run_sql(st, vm, d.count_by_index, timeout_s=120)
    integrity = ([[str(x) for x in r] for r in run_sql(st, vm, d.integrity_check, timeout_s=300)]
                 if d.integrity_check else None)
    db = restore_into_scratch(st, vm, bk.dump)
    dump_keys = [r[0] for r in run_sql(st, vm, d.keys_of_run, (bk.run_id,), database=db)]
    rec = {"type": Rec.DB_CONSISTENCY, "t": now_ns(), "database": d.name, "table_rows": seq[0][0],
           "index_rows": idx[0][0], "integrity": integrity, "values_checked": len(rows),
           "value_mismatches": len(wrong), "value_mismatch_keys": wrong[:20]}
    with JsonlWriter(run.history_path) as hist:
        hist.write({"type": Rec.FINAL_READ, "t": now_ns(), "ok": True, "vm": vm, "run_id": bk.run_id, "keys": keys})
        hist.write(rec)
        hist.write({"type": Rec.DUMP_READ, "t": now_ns(), "ok": True, "keys": dump_keys, "t_dump0": bk.dump.t0,
                    "tool": bk.dump.tool})
    problems = consistency_problems(rec)
    return Verification(len(keys), not problems, len(dump_keys),
                        f"Restored database holds {len(keys)} rows of this run, each with the value its client "
                        f"wrote ({len(wrong)} not); table and index agree ({seq[0][0]} and {idx[0][0]} rows)"
                        + (f"; {d.integrity_check}: {'OK' if not d.integrity_problems(integrity or []) else 'PROBLEMS'}"
                           if d.integrity_check else "")
                        + f"; the {bk.dump.tool} restored into `{db}` holds {len(dump_keys)} rows.")


def end(lab: Lab, restored: Restored, avoided: str, drill: bool) -> str:
    """After a drill its VM goes (what it proved is in the report); after a disaster the lost
    host's daemon comes back, empty."""
    if not drill:
        return repair_host(lab, avoided)
    from ..vm.create import delete

    delete(lab.name, restored.name)
    lab.refresh()
    return f"restore drill done: {restored.name} removed from {restored.host}"


def repair_host(lab: Lab, host: str) -> str:
    """Bring the lost host's daemon back (empty), so the lab is whole for the next runbook."""
    provider(lab.st).require("rebuild", problems=f"host {host} is not availlab's to restart")
    local.restart_daemons(lab.st)
    st = lab.refresh().st
    return f"host {host} is back (libvirtd pid {local.host_daemon(st.hosts[host]).pid()}), with no VMs"
