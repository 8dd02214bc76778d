"""`availlab watch` and `availlab mark`: judge what someone else's tool does to a database VM.

`watch` is runbook 50 (runbooks/50-watch.ipynb) with its parameters taken from flags, run the way
`availlab run` runs any runbook: the same report, verdict and exit code. The operator's command
goes after `--`: `availlab watch --vm sql1 -- virsh -c URI migrate --live sql1 URI2`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable

from . import paths
from .cli_run import add_output_options
from .errors import UsageError

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def duration_s(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"a duration like 90s, 10m or 1h (got {text!r})")
    return float(m.group(1)) * UNITS[m.group(2)]


def watch_params(args: argparse.Namespace) -> list[list[str]]:
    """The flags as runbook 50's parameters (`-p NAME VALUE`), each checked there by its model."""
    command = [a for a in args.command if a != "--"] if args.command else []
    given = {"vm": args.vm, "command": command, "command_cwd": os.getcwd() if command else None, "duration_s": args.duration if args.duration is not None
             else (0.0 if command else None), "clients": args.clients, "rate": args.rate,
             "max_blackout_ms": args.max_blackout_ms, "warmup_s": args.warmup, "cooldown_s": args.cooldown,
             "watcher": "" if args.watcher == "none" else args.watcher, "dsn": args.dsn, "database": args.database,
             "password_file": args.password_file, "password_env": args.password_env,
             "keep_table": True if args.keep else None, "read_only": True if args.read_only else None}
    return [[k, json.dumps(v) if not isinstance(v, str) else repr(v)] for k, v in given.items() if v is not None]


def cmd_mark(args: argparse.Namespace) -> int:
    from .scenarios.observe import mark

    rec = mark(args.run, args.text)
    print(f"marked {args.run}: {rec['text']}")
    return 0


def add_parsers(sub: argparse._SubParsersAction, run: Callable[[argparse.Namespace], int]) -> None:
    w = sub.add_parser("watch", help="clients on a running VM while another tool moves or backs it up "
                                     "(runbook 50); the tool's command after --",
                       description="Watch a running database VM: clients and a probe record every operation, a "
                                   "read-only watcher what the hypervisor did; then the checks and the report. "
                                   "Give a duration (--for), a command to run after --, or both.")
    w.add_argument("--vm", default="sql1", help="the lab VM to watch (default: sql1); it must be running. "
                                                "With --dsn: the name the run gives the database")
    w.add_argument("--dsn", help="any database instead of a lab VM: its ODBC connection string "
                                 "('Server=db1;Port=5432;Database=app;UID=watcher', or 'DSN=name;Database=app;UID=…'), "
                                 "never with the password")
    w.add_argument("--database", help="with --dsn: postgresql, mariadb or sqlserver (default: postgresql)")
    pw = w.add_mutually_exclusive_group()
    pw.add_argument("--password-file", metavar="FILE", help="with --dsn: the password, in a file of mode 0600")
    pw.add_argument("--password-env", metavar="VARIABLE", help="with --dsn: or in this environment variable")
    w.add_argument("--read-only", action="store_true", help="no table, no writes, every operation a SELECT 1 (a user "
                                                            "without write rights); lost writes are then not checked")
    w.add_argument("--keep", action="store_true", help="with --dsn: keep availlab's table (availlab_kv) afterwards; "
                                                       "by default the watch drops it at the end")
    w.add_argument("--for", dest="duration", type=duration_s, metavar="DURATION",
                   help="watch at least this long: 90s, 10m, 1h (default: 60s, or while the command runs)")
    w.add_argument("--clients", type=int, help="client connections (default: 2)")
    w.add_argument("--rate", type=float, help="operations per second per client (default: 50; 0: flat out)")
    w.add_argument("--max-blackout-ms", type=float, help="SLO for every outage, announced or not (default: 1000)")
    w.add_argument("--warmup", type=duration_s, metavar="DURATION", help="clients run this long first (default: 3s)")
    w.add_argument("--cooldown", type=duration_s, metavar="DURATION", help="and this long after (default: 3s)")
    w.add_argument("--watcher", default="libvirt", choices=("libvirt", "none"),
                   help="read-only watcher of the hypervisor (default: libvirt)")
    w.add_argument("--json", action="store_true", help="print the run's folder, verdict and exit code as JSON")
    w.add_argument("--out", metavar="DIR", help="the runs folder (default: $AVAILLAB_RUNS, else runs/ in the "
                                                "checkout when inside it, else runs/ here)")
    w.add_argument("--junit", metavar="PATH", help="also copy the run's junit.xml here (for the CI's test report)")
    add_output_options(w)
    w.add_argument("command", nargs=argparse.REMAINDER, help="-- then the operator's command and its arguments")

    def cmd_watch(args: argparse.Namespace) -> int:
        if args.command and args.command[0] != "--":
            raise UsageError(f"watch: put the command after -- (got {args.command[0]!r})")
        ns = argparse.Namespace(**vars(args), runbook=str(paths.project_root() / "runbooks" / "50-watch.ipynb"),
                                param=watch_params(args))
        return run(ns)

    w.set_defaults(func=cmd_watch)
    m = sub.add_parser("mark", help="add an operator's note to a watch that is running ('migration started')")
    m.add_argument("run", help="the run folder `availlab watch` printed")
    m.add_argument("text", help="what happened")
    m.set_defaults(func=cmd_mark)
