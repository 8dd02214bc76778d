"""`availlab run` and `availlab report`: a runbook executed with its parameters checked first, and
one page over many runs. Split from cli.py, which stays the verbs of the lab itself."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from . import names
from .errors import AvailLabError, UsageError


def cmd_report(args: argparse.Namespace) -> int:
    from .report.trends import write_trends
    from .scenarios.params import RUNBOOKS

    def normalize(runbook: str, given: dict) -> dict:
        """An interrupted run's `-p` values through its runbook's model: defaults and types."""
        model = RUNBOOKS.get(runbook)
        if model is None:
            return given
        try:
            return {**given, **model.parse({k: v for k, v in given.items() if k in model.model_fields}).model_dump()}
        except (AvailLabError, ValueError):
            return given

    out, rows, bad = write_trends(args.runs, args.out, args.by, normalize)
    for b in bad:
        print(f"availlab: skipped {b}", file=sys.stderr)
    if args.json:
        verdicts = Counter(r.verdict for r in rows)
        print(json.dumps({"page": str(out), "runs": len(rows), "verdicts": dict(sorted(verdicts.items())),
                          "unreadable": bad}, indent=2))
        return 0
    print(f"{out}: {len(rows)} runs" + (f", {len(bad)} unreadable folder(s) named on the page" if bad else ""))
    return 0


def _params_file(path: str | None) -> dict[str, object]:
    """`run -f params.yaml`: a mapping of parameter names to values (checked by the runbook's model
    like `-p`, which overrides it name by name)."""
    if not path:
        return {}
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"-f {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"-f {path}: not YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        raise UsageError(f"-f {path}: a mapping of parameter names to values, e.g. `migrations: 6`")
    return dict(doc)


def _list_params(runbook: str) -> int:
    from .scenarios.params import for_notebook
    from .scenarios.runbook import declared_parameters, resolve

    nb = resolve(runbook)
    model = for_notebook(nb)
    if model is None:  # a notebook of one's own: what papermill reads from its parameters cell
        for name, info in declared_parameters(nb).items():
            print(f"{name:<26} {info.get('inferred_type_name', ''):<8} {info.get('default', '')}  {info.get('help', '')}")
        return 0
    for name, f in model.model_fields.items():
        kind = getattr(f.annotation, "__name__", str(f.annotation))
        print(f"{name:<26} {kind:<8} {f.get_default(call_default_factory=True)!r:<16} {f.description or ''}")
    return 0


def add_output_options(p: argparse.ArgumentParser) -> None:
    """Where a run's figures go besides its folder (`run` and `watch` alike)."""
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve the run's figures for Prometheus on 127.0.0.1:N/metrics while it runs")
    p.add_argument("--metrics-textfile", metavar="PATH",
                   help="when the run ends, write its figures, verdict and SLOs for node_exporter's textfile "
                        "collector (e.g. /var/lib/node_exporter/textfile/availlab.prom)")
    p.add_argument("--metrics-push", metavar="URL",
                   help="when the run ends, push its figures, verdict and SLOs to a Pushgateway "
                        "(job availlab, grouped by lab, runbook and vm)")


def cmd_run(args: argparse.Namespace) -> int:
    from .scenarios.runbook import HARNESS_ERROR, parse_value, run

    if getattr(args, "list_params", False):
        return _list_params(args.runbook)
    params: dict[str, object] = _params_file(getattr(args, "file", None))
    given: set[str] = set()
    for name, value in args.param or []:
        if name in given:
            raise UsageError(f"parameter {name!r} given twice")
        given.add(name)
        params[name] = parse_value(value)
    if args.lab is not None and "lab" not in params:
        params["lab"] = names.chosen_lab(args.lab)
    try:
        r = run(args.runbook, params, progress=not args.quiet, metrics_port=args.metrics_port,
                runs_root=Path(args.out).resolve() if getattr(args, "out", None) else None)
    except UsageError:
        raise
    except AvailLabError as exc:  # the harness, not the system under test: no verdict
        print(f"availlab: {type(exc).__name__}: {exc}", file=sys.stderr)
        return HARNESS_ERROR
    if r.verdict:  # a short run's figures for collectors that come after it: the textfile, a Pushgateway
        from .metrics import export

        for line in export(r.run_dir, getattr(args, "metrics_textfile", None), getattr(args, "metrics_push", None)):
            print(f"availlab: {line}", file=sys.stderr)
    junit = getattr(args, "junit", None)
    if junit and (r.run_dir / "junit.xml").is_file():  # where the CI collects test reports
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r.run_dir / "junit.xml", junit)
    if getattr(args, "json", False):  # the same facts, for a pipeline; messages stay on stderr
        print(json.dumps({"runbook": r.runbook, "run_folder": str(r.run_dir), "notebook": str(r.notebook),
                          "verdict": r.verdict or None, "verdict_by_kind": r.verdict_by_kind, "exit_code": r.exit_code,
                          "report": str(r.run_dir / "report.html") if r.verdict else None, "error": r.error or None},
                         indent=2))
    else:
        print(f"run folder: {r.run_dir}\nexecuted notebook: {r.notebook}")
    if r.verdict and not getattr(args, "json", False):
        by = r.verdict_by_kind
        kinds = f" (outcomes {by['outcome']}, timings {by['timing']})" if by and r.verdict != "INCOMPLETE" else ""
        print(f"verdict: {r.verdict}{kinds}  report: {r.run_dir / 'report.html'}")
    if r.error == "interrupted" and r.verdict == "INCOMPLETE":
        print(f"availlab: runbook {r.runbook} interrupted; partial report (INCOMPLETE) in {r.run_dir}",
              file=sys.stderr)
    elif r.error == "interrupted":  # after its report: the verdict stands, what followed did not run
        print(f"availlab: runbook {r.runbook} interrupted after its report (verdict {r.verdict or 'none'}); "
              f"the steps after it did not run", file=sys.stderr)
    elif not r.ok and (not r.verdict or r.crashed_after_verdict):
        print(f"availlab: runbook {r.runbook} did not complete: {r.error}", file=sys.stderr)
    return r.exit_code


def add_parsers(sub: argparse._SubParsersAction) -> Callable[[argparse.Namespace], int]:
    """The `run` and `report` verbs; returns cmd_run, which `availlab watch` runs runbook 50 with."""
    r = sub.add_parser("run", help="execute a runbook with papermill into runs/<runbook>/<time>/")
    r.add_argument("runbook", help="a notebook's path, or one of availlab's runbooks by name (e.g. 10-live-migration)")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="runbook parameter (repeatable); values are Python literals or strings")
    r.add_argument("-f", "--file", metavar="PARAMS.yaml", help="parameters from a YAML mapping (-p overrides)")
    r.add_argument("--list-params", action="store_true", help="print the runbook's parameters (type, default, "
                                                              "meaning) and exit")
    r.add_argument("--json", action="store_true", help="print the run's folder, verdict and exit code as JSON")
    r.add_argument("--out", metavar="DIR", help="the runs folder (default: $AVAILLAB_RUNS, else runs/ in the checkout when "
                                                "inside it, else runs/ here): "
                                                "the run goes to DIR/<runbook>/<time>/")
    r.add_argument("--junit", metavar="PATH", help="also copy the run's junit.xml here (for the CI's test report)")
    add_output_options(r)
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="one page over many runs: verdicts over time, migrations, tunings side by side")
    rep.add_argument("runs", nargs="+", type=Path, help="run folders, or folders of them (e.g. runs/10-live-migration)")
    rep.add_argument("--out", type=Path, help="the page (default: trends.html in the first folder of runs)")
    rep.add_argument("--by", action="append", metavar="PARAMETER",
                     help="group runs by this parameter (repeatable; default: every tuning that differs)")
    rep.add_argument("--json", action="store_true", help="print the page's path, the runs and their verdicts as JSON")
    rep.set_defaults(func=cmd_report)
    return cmd_run
