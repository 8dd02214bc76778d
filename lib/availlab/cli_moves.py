"""`availlab vm migrate`: the live migration an operator runs by hand, with a progress line and
the same record a runbook keeps (its event in `--events FILE`, or all of it with `--json`); and
`availlab host drain / resume`, the planned-maintenance steps (events/drain.py)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .errors import AvailLabError, MigrationError

MiB = 2**20
ABORT_WAIT_S = 60.0  # after Ctrl-C: libvirt ends an aborted migration in well under a second here


class _Progress:
    """One line, redrawn on a terminal; a line a second elsewhere (a log, CI)."""

    def __init__(self, vm: str, target: str, out=sys.stderr):
        self.vm, self.target, self.out = vm, target, out
        self.tty = out.isatty()
        self.last = 0.0

    def __call__(self, s: dict | None) -> None:
        if s is None:  # the migration's watch ended: before its result is said
            self.end()
            return
        now = time.monotonic()
        if not self.tty and now - self.last < 1.0:
            return
        self.last = now
        total, left = s.get("memory_total") or 0, s.get("memory_remaining")
        done = f" {100 * (total - left) / total:3.0f}%" if total and left is not None else ""
        line = (f"{self.vm} -> {self.target}:{done} iteration {s.get('memory_iteration', 0)}, "
                f"{(left or 0) / MiB:.0f} MiB of {total / MiB:.0f} left, "
                f"{s.get('memory_bps', 0) / MiB:.0f} MiB/s, dirtying {s.get('memory_dirty_rate', 0)} pages/s")
        self.out.write(f"\r{line:<100}" if self.tty else line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
            self.out.flush()
        self.last = 0.0


def cmd_vm_migrate(args: argparse.Namespace, lab_name: Callable[[argparse.Namespace], str]) -> int:
    from .events.migration import live_migrate, migration_tuning
    from .events.tuning import MigrationTuning
    from .history import JsonlWriter
    from .lab import state

    tuning = migration_tuning(**{f: getattr(args, f) for f in MigrationTuning.model_fields
                                 if getattr(args, f, None) is not None})
    st = state.require_up(lab_name(args))
    progress = None if args.quiet_progress or getattr(args, "quiet", False) else _Progress(args.vm, args.to)
    writer = JsonlWriter(args.events) if args.events else None
    try:
        rec = _abortable(st, args.vm, lambda: live_migrate(st, args.vm, args.to, tuning, events=writer,
                                                          on_sample=progress))
    finally:
        if progress:
            progress.end()
        if writer:
            writer.close()
    if args.json:
        print(json.dumps(rec.to_event(), indent=2, default=str))
    elif rec.ok and rec.postcopy:  # libvirt keeps no statistics after post-copy (events/migration.py)
        pc = rec.postcopy
        print(f"{rec.vm}: {rec.source} -> {rec.target} in {rec.total_ms:.0f} ms, paused {rec.downtime_ms} ms "
              f"({rec.downtime_source}), post-copy after {pc['switch_after_ms']:.0f} ms for {pc['phase_ms']} ms, "
              f"{pc['pages_requested']} pages requested")
    elif rec.ok:
        print(f"{rec.vm}: {rec.source} -> {rec.target} in {rec.total_ms:.0f} ms, hypervisor downtime "
              f"{rec.downtime_ms} ms, {rec.stats.get('memory_iteration', '?')} iterations, "
              f"{rec.stats.get('memory_processed', 0) / MiB:.0f} MiB sent")
    else:
        print(f"{rec.vm}: migration {rec.source} -> {rec.target} FAILED: {rec.error}", file=sys.stderr)
    return 0 if rec.ok else 1


def _abortable(st, vm: str, migrate: Callable[[], Any]) -> Any:
    """The migration on a thread of its own, so Ctrl-C reaches us while libvirt's call blocks:
    then the VM's job is aborted on its source (the VM stays where it was) and the migration's own
    record says how it ended; a second Ctrl-C stops waiting for it."""
    from .lab import providers

    done, out = threading.Event(), {}

    def work() -> None:
        try:
            out["rec"] = migrate()
        except BaseException as exc:  # handed to the main thread, which raises it
            out["error"] = exc
        finally:
            done.set()

    source = providers.running_host(st, vm)
    threading.Thread(target=work, name="migrate", daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        print(f"availlab: interrupted; aborting the migration of {vm} (the VM stays on {source})",
              file=sys.stderr, flush=True)
        try:
            with providers.provider(st).connect(source) as hv:
                hv.abort_job(vm)
        except AvailLabError as exc:  # e.g. it had just ended: its record says how
            print(f"availlab: the abort was not taken: {exc}", file=sys.stderr, flush=True)
        if not done.wait(ABORT_WAIT_S):
            raise MigrationError(f"the migration of {vm} did not end {ABORT_WAIT_S:g} s after its abort; "
                                 f"`availlab vm jobinfo {vm}` shows its job") from None
    if "error" in out:
        raise out["error"]
    return out["rec"]


def cmd_vm_abort(args: argparse.Namespace, lab_name: Callable[[argparse.Namespace], str]) -> int:
    from .lab import providers, state

    st = state.require_up(lab_name(args))
    host = providers.running_host(st, args.vm)
    with providers.provider(st).connect(host) as hv:
        if not hv.job_active(args.vm):
            print(f"{args.vm}: no job runs on {host}; nothing to abort")
            return 1
        hv.abort_job(args.vm)
    print(f"{args.vm}: the job on {host} was asked to abort")
    return 0


def cmd_vm_jobinfo(args: argparse.Namespace, lab_name: Callable[[argparse.Namespace], str]) -> int:
    from .lab import providers, state

    st = state.require_up(lab_name(args))
    host = providers.running_host(st, args.vm)
    with providers.provider(st).observe(host) as hv:  # a question: a read-only connection
        stats = hv.job_stats(args.vm, completed=args.completed)
    if args.json:
        print(json.dumps({"vm": args.vm, "host": host, **stats}, indent=2, default=str))
    elif not stats.get("type"):
        print(f"{args.vm} on {host}: no {'completed ' if args.completed else ''}job")
    else:
        for k, v in sorted(stats.items()):
            print(f"{k:<28} {v}")
    return 0


def cmd_host(args: argparse.Namespace, lab_name: Callable[[argparse.Namespace], str]) -> int:
    from .events import drain
    from .history import JsonlWriter
    from .lab import state

    st = state.require_up(lab_name(args))
    writer = JsonlWriter(args.events) if args.events else None
    try:
        verb = drain.drain if args.host_verb == "drain" else drain.RESUMES["rebalance" if args.rebalance else "back"]
        moves = verb(st, args.host, events=writer, max_concurrent=args.max_concurrent)
    finally:
        if writer:
            writer.close()
    if args.json:
        print(json.dumps({"host": moves.host, "verb": args.host_verb, "ok": moves.ok, "skipped": moves.skipped,
                          "migrations": [r.to_event() for r in moves.records]}, indent=2, default=str))
    else:
        for r in moves.records:
            print(f"{r.vm}: {r.source} -> {r.target} " + (f"in {r.total_ms:.0f} ms, downtime {r.downtime_ms} ms"
                                                         if r.ok else f"FAILED: {r.error}"))
        print(f"host {moves.host}: {args.host_verb} " + ("done" if moves.ok else "STOPPED")
              + (f"; not moved: {', '.join(moves.skipped)}" if moves.skipped else ""))  # each says why
    return 0 if moves.ok else 1


# the flags `vm migrate` takes, one per MigrationTuning field (events/tuning.py declares them): a
# field added there is a flag here; these two keep the short names they had
FLAG_NAMES = {"bandwidth_mib_s": "--bandwidth", "timeout_s": "--timeout"}


def add_tuning_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per migration tuning field, typed and described by the model; unset flags leave
    the model's defaults (checked, with the field named, by migration_tuning)."""
    from .events.tuning import MigrationTuning

    for name, f in MigrationTuning.model_fields.items():
        flag = FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        what = f"{f.description} (default {f.default})"
        if f.annotation is bool:
            parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=f.description)
        else:
            parser.add_argument(flag, dest=name, type=cast(Callable[[str], Any], f.annotation), default=None,
                                metavar=name.upper(), help=what)


def add_host_parsers(sub, parser_class, lab_name: Callable[[argparse.Namespace], str]) -> None:
    host = sub.add_parser("host", help="planned maintenance: drain a host, then resume it").add_subparsers(
        dest="host_verb", required=True, parser_class=parser_class)
    for verb, what in (("drain", "live-migrate every VM off HOST (it then takes no VM until resumed)"),
                       ("resume", "bring back the VMs its drain moved, and take VMs again")):
        p = host.add_parser(verb, help=what)
        p.add_argument("host", help="a lab host (h1, h2, ...)")
        p.add_argument("--events", metavar="FILE", help="append the migrations' events (JSON lines) to FILE")
        p.add_argument("--max-concurrent", type=int, default=1, metavar="N",
                       help="live migrations at once (default: 1, one after another)")
        p.add_argument("--json", action="store_true", help="print every migration's record as JSON")
        if verb == "resume":
            p.add_argument("--rebalance", action="store_true", help="instead of bringing back what the drain moved, "
                                                                    "fill HOST from the busiest hosts until balanced")
        p.set_defaults(func=lambda a: cmd_host(a, lab_name), rebalance=False)


def add_vm_parsers(vm, lab_name: Callable[[argparse.Namespace], str]) -> None:
    m = vm.add_parser("migrate", help="live-migrate a VM to another host, with progress, recorded")
    m.add_argument("vm", help="a running VM of the lab")
    m.add_argument("--to", required=True, metavar="HOST", help="target host")
    add_tuning_flags(m)
    m.add_argument("--events", metavar="FILE", help="append the migration's events (JSON lines) to FILE")
    m.add_argument("--json", action="store_true", help="print the whole record as JSON")
    m.add_argument("--no-progress", dest="quiet_progress", action="store_true", help="no progress line")
    m.set_defaults(func=lambda a: cmd_vm_migrate(a, lab_name))
    a = vm.add_parser("abort", help="abort the job a VM runs (a migration), as virsh domjobabort")
    a.add_argument("vm", help="a running VM of the lab")
    a.set_defaults(func=lambda a: cmd_vm_abort(a, lab_name))
    j = vm.add_parser("jobinfo", help="the statistics of the job a VM runs (read-only), as virsh domjobinfo")
    j.add_argument("vm", help="a running VM of the lab")
    j.add_argument("--completed", action="store_true", help="the last completed job's statistics")
    j.add_argument("--json", action="store_true", help="the statistics as JSON")
    j.set_defaults(func=lambda a: cmd_vm_jobinfo(a, lab_name))
