"""`availlab` command line: thin argparse layer over the library; exit 2 for usage errors.

Every verb validates its input before touching the lab, prints progress on stderr and results
on stdout (`--json` where a script may want to read them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import cli_backups, cli_completion, cli_image, cli_maintenance, cli_moves, cli_run, cli_watch, names, paths
from .cli_image import DATABASES
from .dialects import DEFAULT_DATABASE
from .errors import AvailLabError, UsageError

if TYPE_CHECKING:
    from .clilog import Log


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep one message style
        self.print_usage(sys.stderr)
        print(f"availlab: error: {message}", file=sys.stderr)
        sys.exit(2)


def _lab_name(args: argparse.Namespace) -> str:
    return names.chosen_lab(args.lab)


def _topology(args: argparse.Namespace):
    from .lab.topology import load_topology, with_overrides

    path = Path(args.config) if args.config else paths.lab_dir() / "default.yaml"
    named = args.lab is not None or "AVAILLAB_LAB" in os.environ
    return with_overrides(load_topology(path), name=_lab_name(args) if named else None,
                          hosts=args.hosts, accel=args.accel)


def cmd_lab_up(args: argparse.Namespace) -> int:
    from .lab import providers as lab
    from .lab.providers import provider
    from .vm.create import revive_pending

    st = revive_pending(lab.up(_topology(args)))
    if args.json:
        print(json.dumps(lab.status(st.lab), indent=2, default=str))
        return 0
    print(provider(st).describe())
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    from .lab import providers as lab

    removed = lab.down(_lab_name(args))
    if args.json:
        print(json.dumps({"lab": _lab_name(args), "removed": removed}, indent=2))
        return 0
    if removed:
        print(f"lab {_lab_name(args)} down; removed:")
        for r in removed:
            print(f"  - {r}")
    else:
        print(f"lab {_lab_name(args)}: nothing to remove")
    return 0


STATUS_DOWN = 3  # as `systemctl status` says of a unit that is not running


def status_exit(s: dict) -> int:
    """`lab status` for scripts and monitors: 0 up and healthy, 1 up with problems (or failed, or
    half made), 3 down."""
    if s["status"] == "down":
        return STATUS_DOWN
    return 0 if s["status"] == "up" and not s.get("problems") else 1


def cmd_lab_status(args: argparse.Namespace) -> int:
    from .lab import providers as lab

    s = lab.status(_lab_name(args))
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return status_exit(s)
    print(f"lab {s['lab']}: {s['status']}")
    if s["status"] == "down":
        return STATUS_DOWN
    acc = s.get("accel") or {}
    print(f"accel: {acc.get('accel', '?')} ({acc.get('reason', '')})")
    print(f"shared storage: {s['shared_dir']}\nDR site: {s['dr_dir']}")
    print(f"{'HOST':<8}{'ADDRESS':<16}{'LIBVIRTD':<22}VMS")
    for h in s["hosts"]:
        pid = f"{h['daemon']} (pid {h['libvirtd_pid']})" if h["libvirtd_pid"] else h["daemon"]
        print(f"{h['name']:<8}{h['address']:<16}{pid:<22}{', '.join(h['vms']) or '-'}")
    if s["vms"]:
        print(f"{'VM':<10}{'HOST':<8}{'STATE':<12}ADDRESS")
        for v in s["vms"]:
            print(f"{v['name']:<10}{v['host']:<8}{v['state']:<12}{v['address'] or '-'}")
    for p in s.get("problems", []):
        print(f"problem: {p}")
    return status_exit(s)


def cmd_lab_discover(args: argparse.Namespace) -> int:
    from .lab.discover import discover

    out = Path(args.out) if args.out else None
    if out and out.exists() and not args.force:
        raise UsageError(f"{out} exists; --force overwrites it")
    text = discover(args.uri, args.name)
    if out is None:
        print(text, end="")
        return 0
    out.write_text(text)
    print(f"topology written to {out}; declare the VMs availlab may migrate in it, then: "
          f"availlab --lab {args.name} lab up --config {out}", file=sys.stderr)
    return 0


def cmd_lab_dsn(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .clients.sql import dsn_for
    from .lab import state

    st = state.require_up(_lab_name(args))
    # no login timeout in it: every ODBC client sets its own (pyodbc.connect(s, timeout=3)), and
    # psqlODBC refuses a string's timeout beside the client's
    dsn = replace(dsn_for(st, args.vm), connect_timeout_s=0)
    print(dsn.connection_string(show_secret=args.show_secret))
    notes = [] if args.show_secret else ["password hidden; add --show-secret to print it"]
    notes.append("no login timeout in it: set your client's, e.g. pyodbc.connect(s, timeout=3)")
    if st.client_namespace:
        notes.append(f"reachable only from the client namespace: ip netns exec {st.client_namespace} ...")
    print(f"({'; '.join(notes)})", file=sys.stderr)
    return 0


def cmd_vm_create(args: argparse.Namespace) -> int:
    from .vm import create as vm

    r = vm.create(_lab_name(args), args.name, args.host, memory_mib=args.memory, vcpus=args.vcpus,
                  database=args.database, cold=args.cold)
    if args.json:
        print(json.dumps(asdict(r), indent=2, default=str))
        return 0
    how = "restored from its booted template" if r.start == "template" else "after a cold boot"
    built = f" (template built first: {r.template_build_s:.1f} s, once per VM shape)" if r.template_build_s else ""
    print(f"VM {r.name} on {r.host} at {r.address}: {args.database} ready in {r.boot_to_db_s:.1f} s, {how}{built}")
    print(f"connect: availlab sql {r.name} \"SELECT version()\"   "
          f"(connection string: availlab lab dsn {r.name})")
    return 0


def cmd_vm_delete(args: argparse.Namespace) -> int:
    from .vm import create as vm

    for line in vm.delete(_lab_name(args), args.name):
        print(line)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from .clients.sql import run_sql
    from .lab import state

    rows = run_sql(state.require_up(_lab_name(args)), args.vm, args.statement)
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    return 0


def cmd_tips_list(args: argparse.Namespace) -> int:
    from .scenarios.dynamic import read_tips

    tips = read_tips(_lab_name(args))
    if args.json:
        print(json.dumps(tips, indent=2))
        return 0
    for t in tips:
        print(f"#{t['id']}  {t['action']:<8} {t['vm'] or '-':<8} -> {t['target'] or '-':<6} "
              f"applied={t['applied']}  {t['reason']}")
    if not tips:
        print("no tips")
    return 0


def cmd_tips_apply(args: argparse.Namespace) -> int:
    from .scenarios.dynamic import apply_saved_tip

    t = apply_saved_tip(_lab_name(args), args.tip_id)
    print(f"tip #{t['id']}: {t['vm']} -> {t['target']} {'applied' if t['applied'] else 'FAILED'}")
    return 0 if t["applied"] else 1


class _Version(argparse.Action):
    """--version, asked of git only when given: building the parser for every command must not."""

    def __init__(self, option_strings: list[str], dest: str, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(_version())
        parser.exit()


def _version() -> str:
    from .lab.provenance import availlab_build

    b = availlab_build()
    commit = f" (commit {b['commit'][:12]}{', modified' if b['dirty'] else ''})" if b["commit"] else ""
    return f"availlab {b['version']}{commit}"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="availlab", description=__doc__.splitlines()[0])
    p.add_argument("--lab", help=f"lab name (default: $AVAILLAB_LAB or {names.DEFAULT_LAB!r})")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("-v", "--debug", action="store_true",
                   help="an error's traceback and the libraries' debug lines on stderr (every command's "
                        "steps and errors are logged anyway: $AVAILLAB_LOG, default <state>/.logs/availlab.log)")
    p.add_argument("--version", action=_Version, help="availlab's version (and its commit)")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    lab = sub.add_parser("lab", help="bring the lab up or down, show it").add_subparsers(
        dest="lab_verb", required=True, parser_class=_Parser)
    up = lab.add_parser("up", help="create namespaces, switch, hosts with libvirtd, storage")
    up.add_argument("--config", help="topology YAML (default: lab/default.yaml)")
    up.add_argument("--hosts", type=int, help="number of hosts h1..hN (overrides the topology)")
    up.add_argument("--accel", choices=["auto", "kvm", "tcg"], help="override the topology's accel")
    up.add_argument("--json", action="store_true", help="print the lab's status as JSON")
    up.set_defaults(func=cmd_lab_up)
    dn = lab.add_parser("down", help="remove everything the lab created")
    dn.add_argument("--json", action="store_true", help="print what was removed as JSON")
    dn.set_defaults(func=cmd_lab_down)
    st = lab.add_parser("status", help="hosts, VMs, where each VM runs, accelerator")
    st.add_argument("--json", action="store_true", help="the status as JSON")
    st.set_defaults(func=cmd_lab_status)
    dis = lab.add_parser("discover", help="write a remote topology from a cluster's libvirt URIs (read-only)")
    dis.add_argument("--uri", action="append", required=True, metavar="URI",
                     help="a host's libvirt URI, e.g. qemu+ssh://root@hv1/system; once per host")
    dis.add_argument("--name", default="cluster", help="the lab name to write into it (default: cluster)")
    dis.add_argument("-o", "--out", help="write the topology to this file (default: print it)")
    dis.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    dis.set_defaults(func=cmd_lab_discover)
    dsn = lab.add_parser("dsn", help="ODBC connection string of a VM's database")
    dsn.add_argument("vm", help="a VM of the lab")
    dsn.add_argument("--show-secret", action="store_true", help="include the password")
    dsn.set_defaults(func=cmd_lab_dsn)

    vm = sub.add_parser("vm", help="database VMs").add_subparsers(
        dest="vm_verb", required=True, parser_class=_Parser)
    c = vm.add_parser("create", help="define and start a database VM, wait for the database")
    c.add_argument("name", help="the new VM's name (lower case, digits, dashes)")
    c.add_argument("--host", required=True, help="the lab host to start it on (h1, h2, ...)")
    c.add_argument("--memory", type=int, help="MiB (default from topology vm.memory_mib)")
    c.add_argument("--vcpus", type=int, help="virtual CPUs (default from topology vm.vcpus)")
    c.add_argument("--database", choices=DATABASES, default=DEFAULT_DATABASE,
                   help="database server in the guest (default: postgresql)")
    c.add_argument("--cold", action="store_true",
                   help="boot it cold instead of restoring the booted template of its shape")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=cmd_vm_create)
    d = vm.add_parser("delete", help="power off, undefine and delete a VM's disks")
    d.add_argument("name", help="the VM to delete, with its disks")
    d.set_defaults(func=cmd_vm_delete)
    cli_moves.add_vm_parsers(vm, _lab_name)

    q = sub.add_parser("sql", help="run one SQL statement on a VM from the client namespace")
    q.add_argument("vm", help="a VM of the lab")
    q.add_argument("statement", help="one SQL statement; its rows are printed")
    q.set_defaults(func=cmd_sql)

    cmd_run = cli_run.add_parsers(sub)
    cli_backups.add_parsers(sub, _Parser)
    cli_watch.add_parsers(sub, cmd_run)
    cli_maintenance.add_parsers(sub, cmd_run, cli_run.add_output_options)
    cli_moves.add_host_parsers(sub, _Parser, _lab_name)

    tp = sub.add_parser("tips", help="PRO tips raised by the dynamic-resources controller").add_subparsers(
        dest="tips_verb", required=True, parser_class=_Parser)
    tl = tp.add_parser("list", help="tips of the lab, applied or pending")
    tl.add_argument("--json", action="store_true", help="the tips as JSON")
    tl.set_defaults(func=cmd_tips_list)
    ta = tp.add_parser("apply", help="approve a pending tip: carry out its migration")
    ta.add_argument("tip_id", type=int, help="the tip's number, from tips list")
    ta.set_defaults(func=cmd_tips_apply)

    cli_image.add_parsers(sub, _Parser)
    _globals_after_the_verb(p)
    cli_completion.add_parsers(sub, p)
    return p


def _globals_after_the_verb(parser: argparse.ArgumentParser) -> None:
    """`availlab lab status --lab x` as well as `availlab --lab x lab status`: every verb also takes
    the global options, which then override nothing unless given there (SUPPRESS)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in subs:
        for child in set(sub.choices.values()):
            _globals_after_the_verb(child)
    if not subs:
        taken = {o for a in parser._actions for o in a.option_strings}
        if "--lab" not in taken:
            parser.add_argument("--lab", default=argparse.SUPPRESS, help="lab name (also before the verb)")
        if "--debug" not in taken:
            parser.add_argument("-v", "--debug", action="store_true", default=argparse.SUPPRESS,
                                help="tracebacks and debug lines on stderr (also before the verb)")
        if "--quiet" not in taken:
            parser.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                                help="no progress lines on stderr (also before the verb)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from . import clilog
    from .progress import set_quiet

    set_quiet(args.quiet)
    with clilog.session(argv, args.debug) as log:
        code = _run(args, log)
        clilog.LOG.info("exit %d", code)
        return code


def _run(args: argparse.Namespace, log: Log) -> int:
    from .clilog import failed

    try:
        return args.func(args)
    except UsageError as exc:
        failed(exc, 2, log, args.debug)
        print(f"availlab: error: {exc}", file=sys.stderr)
        return 2
    except AvailLabError as exc:
        more = failed(exc, 1, log, args.debug)
        print(f"availlab: {type(exc).__name__}: {exc}{more}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        failed(exc, 130, None, False)
        print("availlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `availlab … | head`: the reader has what it wanted; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE
    except Exception as exc:  # a bug: its traceback on stderr as always, and in the log
        failed(exc, 1, None, False)
        raise


if __name__ == "__main__":
    sys.exit(main())
