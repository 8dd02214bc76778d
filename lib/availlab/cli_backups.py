"""The backup verbs of the command line: `backup`, `replicate`, `restore`, `move-off` (the end of
an instant restore), `backups list` and `backups prune`. Apart from cli.py only to keep both
short; same conventions (exit 2 for usage errors, results on stdout, progress on stderr, `--json`
where a script may read them)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from .events.backup_modes import COPY_MIB_S, MODES


def _json(doc: object) -> int:
    print(json.dumps(doc, indent=2, default=str))
    return 0


def _lab(args: argparse.Namespace):
    from .lab import state
    from .names import chosen_lab

    return state.require_up(chosen_lab(args.lab))


def cmd_backup(args: argparse.Namespace) -> int:
    from .events.backup import backup

    b = backup(_lab(args), args.vm, incremental=args.incremental, differential=args.differential,
               **({} if args.copy_mib_s is None else {"copy_mib_s": args.copy_mib_s}),
               consistent=not args.crash_consistent, mode=args.mode)
    if args.json:
        return _json(b.public())
    print(f"{b.id}  {b.type}  {b.mode}  {b.consistency}-consistent  {b.size_bytes / 2**20:.1f} MiB  "
          f"{b.duration_s:.1f} s" + (f"  frozen {b.freeze_ms} ms" if b.freeze_ms is not None else ""))
    return 0


def cmd_replicate(args: argparse.Namespace) -> int:
    from .events.replicate import replicate

    r = replicate(_lab(args), args.set_id)
    if args.json:
        return _json(asdict(r))
    print(f"replicated {', '.join(r.set_ids) or 'nothing (already at the DR site)'}: "
          f"{r.bytes_copied / 2**20:.1f} MiB in {r.seconds:.1f} s; checksums verified")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .events.restore import restore

    if args.no_move_off and not args.instant:
        raise UsageError("--no-move-off: only with --instant (a full restore reads no set afterwards)")

    r = restore(_lab(args), args.set_id, args.host, name=args.name,
                replace=args.replace, site=args.site, instant=args.instant,
                move_off=not args.no_move_off)
    if args.json:
        return _json(asdict(r))
    print(r.summary())
    return 0


def cmd_move_off(args: argparse.Namespace) -> int:
    from .events.instant import move_off
    from .lab.providers import running_host

    st = _lab(args)
    move_off(st, running_host(st, args.vm), args.vm)
    print(f"{args.vm} reads no backup set: the sets it was restored from may be pruned or deleted")
    return 0


def cmd_backups_list(args: argparse.Namespace) -> int:
    from .events.catalog import list_sets

    sets = list_sets(_lab(args), args.site)
    if args.json:
        print(json.dumps([b.public() for b in sets], indent=2))
        return 0
    print(f"{'ID':<36}{'SITE':<9}{'TYPE':<13}{'CONSISTENCY':<13}{'MiB':>8}  PARENT")
    for b in sets:
        print(f"{b.id:<36}{b.site:<9}{b.type:<13}{b.consistency:<13}{b.size_bytes / 2**20:>8.1f}  {b.parent or '-'}")
    return 0


def cmd_backups_prune(args: argparse.Namespace) -> int:
    from .events.retention import prune

    p = prune(_lab(args), args.site, args.keep, apply=args.apply)
    if args.json:
        print(json.dumps({"site": p.site, "keep": p.keep, "applied": p.applied, "freed_bytes": p.freed_bytes,
                          "kept": [b.id for b in p.kept], "removed": [b.id for b in p.removed]}, indent=2))
        return 0
    verb = "removed" if p.applied else "would remove"
    for b in p.removed:
        print(f"{verb}  {b.id}  {b.type}  {b.size_bytes / 2**20:.1f} MiB")
    for b in p.kept:
        print(f"keep          {b.id}  {b.type}")
    print(f"{p.site} site, newest {p.keep} per VM and what they build on: {len(p.kept)} kept, {len(p.removed)} "
          f"{verb} ({p.freed_bytes / 2**20:.1f} MiB)" + ("" if p.applied or not p.removed else "; --apply removes them"))
    return 0


def add_parsers(sub, parser_class: type[argparse.ArgumentParser]) -> None:
    bk = sub.add_parser("backup", help="host-level backup of a running VM (libvirt pull mode)")
    bk.add_argument("vm", help="a running VM of the lab")
    kind = bk.add_mutually_exclusive_group()  # one kind of backup (default: full)
    kind.add_argument("--incremental", action="store_true", help="since the VM's last backup")
    kind.add_argument("--differential", action="store_true", help="since the VM's last full backup")
    bk.add_argument("--copy-mib-s", type=int, help=f"cap on the copy in MiB/s (default {COPY_MIB_S}; 0: none): of "
                                                    "the data read in pull mode, of the disk's virtual size in push mode")
    bk.add_argument("--mode", choices=MODES, default=MODES[0],
                    help="pull (default): availlab reads libvirt's NBD export, old data saved to a scratch file "
                         "on the host; push: QEMU's job writes the set (a longer client gap, docs/backup.md)")
    bk.add_argument("--crash-consistent", action="store_true",
                    help="no CHECKPOINT and no filesystem freeze (for comparison)")
    bk.add_argument("--json", action="store_true", help="print the result as JSON")
    bk.set_defaults(func=cmd_backup)
    rp = sub.add_parser("replicate", help="copy a backup set (and its parents) to the DR site, verified")
    rp.add_argument("set_id", help="a backup set's id, from backups list")
    rp.add_argument("--json", action="store_true", help="print the result as JSON")
    rp.set_defaults(func=cmd_replicate)
    rs = sub.add_parser("restore", help="restore a VM from a backup chain on a host")
    rs.add_argument("set_id", help="the set to restore (its chain of parents comes with it)")
    rs.add_argument("--host", required=True, help="the lab host to restore the VM on")
    rs.add_argument("--name", help="VM name (default: the backed-up VM's)")
    rs.add_argument("--replace", action="store_true", help="overwrite an existing VM of that name")
    rs.add_argument("--site", choices=["dr", "primary"], default="dr", help="where the set is read")
    rs.add_argument("--instant", action="store_true",
                    help="boot from the set through an overlay (RTO = boot), then move the data off it")
    rs.add_argument("--no-move-off", action="store_true",
                    help="with --instant: leave the VM reading the set (prune keeps it; "
                         "`availlab move-off VM` later)")
    rs.add_argument("--json", action="store_true", help="print the result as JSON")
    rs.set_defaults(func=cmd_restore)
    mo = sub.add_parser("move-off", help="finish an instant restore: copy its data off the backup set")
    mo.add_argument("vm", help="a VM restored instantly (still reading its backup set)")
    mo.set_defaults(func=cmd_move_off)
    bl = sub.add_parser("backups", help="backup sets").add_subparsers(
        dest="backups_verb", required=True, parser_class=parser_class)
    ls = bl.add_parser("list", help="backup sets at the primary and DR sites")
    ls.add_argument("--site", choices=["primary", "dr"], help="only this site's sets (default: both)")
    ls.add_argument("--json", action="store_true", help="the sets as JSON")
    ls.set_defaults(func=cmd_backups_list)
    pr = bl.add_parser("prune", help="keep each VM's newest N sets (and what they build on); dry run by default")
    pr.add_argument("--site", choices=["primary", "dr"], required=True, help="the site to prune")
    pr.add_argument("--keep", type=int, required=True, help="restore points kept per VM (at least 1)")
    pr.add_argument("--apply", action="store_true", help="remove them (without it: only say what would go)")
    pr.add_argument("--json", action="store_true", help="what is kept and removed, as JSON")
    pr.set_defaults(func=cmd_backups_prune)
