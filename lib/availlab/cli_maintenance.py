"""`availlab maintenance`: runbook 60 from the command line (every host in turn drained, maintained,
resumed, while the lab's database VMs serve), its flags handed over as the runbook's parameters,
each checked there by its model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from . import paths
from .dialects import DEFAULT_DATABASE
from .errors import UsageError
from .events.drain import RESUMES
from .events.maintenance import ACTIONS


def _vms(text: str) -> dict[str, str]:
    """'sql1=postgresql,sql3=mariadb' (or 'sql1,sql2': PostgreSQL) -> {name: database}."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, db = item.partition("=")
        if name in out:
            raise argparse.ArgumentTypeError(f"VM {name!r} named twice")
        out[name] = db or DEFAULT_DATABASE
    if not out:
        raise argparse.ArgumentTypeError("name at least one VM (sql1=postgresql,sql3=mariadb)")
    return out


def maintenance_params(args: argparse.Namespace) -> list[list[str]]:
    given = {"hosts": args.create_hosts, "vms": args.vms,
             "order": [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None,
             "action": args.action, "on_failure": args.on_failure, "max_concurrent": args.max_concurrent,
             "resume": args.resume, "clients": args.clients, "rate": args.rate, "max_blackout_ms": args.max_blackout_ms}
    return [[k, json.dumps(v) if not isinstance(v, str) else repr(v)] for k, v in given.items() if v is not None]


def add_parsers(sub: argparse._SubParsersAction, run: Callable[[argparse.Namespace], int],
                output_options: Callable[[argparse.ArgumentParser], None]) -> None:
    m = sub.add_parser("maintenance", help="every host in turn drained, maintained and resumed while the VMs "
                                           "serve (runbook 60)",
                       description="A rolling maintenance: each host drained (its VMs live-migrated to the least "
                                   "loaded other host), proven empty, maintained (--action), resumed (its VMs "
                                   "brought back), then the next host; each VM has its own clients all along. "
                                   "On a remote cluster only --action none (drain and resume).")
    m.add_argument("--hosts", metavar="H1,H2", help="the hosts to maintain, in this order (default: every host, "
                                                    "fewest VMs first)")
    m.add_argument("--vms", type=_vms, metavar="NAME=DB,…", help="the database VMs, created from templates if missing "
                                                               "(default: sql1=postgresql,sql2=postgresql,sql3=mariadb)")
    m.add_argument("--max-concurrent", type=int, metavar="N", help="live migrations at once within a host's drain "
                                                                   "or resume (default: 1)")
    m.add_argument("--resume", choices=tuple(RESUMES), help="after its maintenance a host gets back exactly the VMs "
                                                         "it had (back, default) or is filled from the busiest "
                                                         "hosts until balanced (rebalance)")
    m.add_argument("--action", choices=tuple(ACTIONS), help="the maintenance of an emptied host (default: restart-daemon)")
    m.add_argument("--on-failure", choices=("stop", "continue"), help="after a host's round fails: stop (drain no "
                                                                      "further host; default) or go on with the next")
    m.add_argument("--create-hosts", type=int, metavar="N", help="hosts of the lab if it is not up (default: 3)")
    m.add_argument("--clients", type=int, help="client connections per VM (default: 2)")
    m.add_argument("--rate", type=float, help="operations per second per client (default: 50; 0: flat out)")
    m.add_argument("--max-blackout-ms", type=float, help="SLO for every VM's longest gap")
    m.add_argument("--yes", action="store_true", help="confirm an action on a lab's hosts (required for any action "
                                                      "but none)")
    m.add_argument("--json", action="store_true", help="print the run's folder, verdict and exit code as JSON")
    m.add_argument("--out", metavar="DIR", help="the runs folder (default: $AVAILLAB_RUNS, else runs/ in the "
                                                "checkout when inside it, else runs/ here)")
    m.add_argument("--junit", metavar="PATH", help="also copy the run's junit.xml here (for the CI's test report)")
    output_options(m)

    def cmd_maintenance(args: argparse.Namespace) -> int:
        if (args.action or "restart-daemon") != "none" and not args.yes:
            raise UsageError(f"maintenance: --action {args.action or 'restart-daemon'} acts on each host of the lab "
                             "in turn (restart-daemon: its libvirtd, restart-host: the whole host, its VMs moved off "
                             "first); say --yes (or --action none to drain and resume only)")
        ns = argparse.Namespace(**vars(args), param=maintenance_params(args),
                                runbook=str(paths.project_root() / "runbooks" / "60-rolling-maintenance.ipynb"))
        return run(ns)

    m.set_defaults(func=cmd_maintenance)
