"""Execute a runbook (parameterised notebook) with papermill into its own run folder.

`runs/<runbook>/<timestamp>/` gets the executed notebook; runbooks write their evidence
(history, events, results, report) beside it. Parameters are checked against the runbook's model
(availlab.scenarios.params) before anything runs: an unknown name, a wrong type or a bad value is a usage
error that names the parameter, not a failure ten minutes into a lab run.
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import names, paths
from ..errors import AvailLabError, UsageError
from ..interrupt import run_interruptibly
from ..lab import state
from ..progress import follow, step
from ..records import Rec, RunFiles

KERNEL = "availlab"
PROGRESS_LOG = "progress.log"  # the runbook's step lines, shown live and kept


EXIT_CODES = {"PASS": 0, "FAIL": 1, "UNKNOWN": 3, "INCOMPLETE": 130}
USAGE_ERROR = 2  # a bad parameter: refused before anything ran
HARNESS_ERROR = 4  # the harness broke (a crash, a lab it could not use): no verdict, or one not to act on


@dataclass(frozen=True)
class RunResult:
    """How a run ended, for the CLI's exit code: the verdict in results.json, or why there is none."""
    runbook: str
    run_dir: Path
    notebook: Path
    ok: bool
    error: str = ""

    def _results(self) -> dict:
        """results.json as the runbook left it; {} if it wrote none (or something unreadable)."""
        try:
            doc = json.loads((self.run_dir / "results.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    @property
    def verdict(self) -> str:
        """The verdict in results.json, if the runbook wrote one."""
        return str(self._results().get("verdict") or "")

    @property
    def verdict_by_kind(self) -> dict:
        """{"outcome": …, "timing": …} from results.json; empty if the runbook wrote none."""
        by = self._results().get("verdict_by_kind")
        return by if isinstance(by, dict) and {"outcome", "timing"} <= set(by) else {}

    @property
    def crashed_after_verdict(self) -> bool:
        """The runbook wrote its verdict and then failed on something else (a repair step after
        the report, say): the verdict stands in results.json, but the run did not complete."""
        return bool(self.verdict) and not self.ok and self.error != "interrupted" \
            and not self.error.startswith("VerdictError")

    @property
    def exit_code(self) -> int:
        """A CI acts on it: 0 PASS, 1 FAIL (an SLO or an outcome breached), 3 UNKNOWN (evidence
        missing), 2 a usage error raised inside the runbook (a bad parameter value), 4 the harness
        broke (the runbook failed without a verdict, or after it), 130 interrupted."""
        if self.error == "interrupted":  # whatever results.json says: the run was cut short
            return EXIT_CODES["INCOMPLETE"]
        if self.crashed_after_verdict:
            return HARNESS_ERROR
        if self.verdict:
            return EXIT_CODES.get(self.verdict, HARNESS_ERROR)
        if self.error.startswith(("UsageError", "TopologyError")):
            return USAGE_ERROR
        return 0 if self.ok else HARNESS_ERROR


def parse_value(text: str) -> object:
    """`-p clients 8` gives 8, `-p plan ping-pong` a string, `-p x "[1, 2]"` a list."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters cell as papermill reads it (names, types, defaults)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def _type_ok(value: object, inferred: str | None, default: str) -> bool:
    if inferred in (None, "None", "") or default == "None":
        return True
    expect = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
              "list": (list, tuple), "dict": (dict,)}.get(inferred)
    if expect is None:
        return True
    if inferred in ("int", "float") and isinstance(value, bool):
        return False
    return isinstance(value, expect)


def validate_parameters(notebook: Path, params: dict[str, object],
                        declared: dict[str, dict] | None = None) -> dict[str, object]:
    """The `-p` values, checked and coerced before papermill starts: by the runbook's model (every
    parameter, with what the run builds from them), or for a notebook of the user's own by the
    types papermill reads from its parameters cell. Returns the values to pass on."""
    from .params import for_notebook

    model = for_notebook(notebook)
    if model is not None:  # its `lab` field checks the name too
        config = model.parse(params)
        up = state.load(config.lab)
        if config.lab_must_be_up and (up is None or up.status != "up"):
            raise UsageError(f"parameter 'lab': lab {config.lab!r} is not up; {model.NOTEBOOK} observes a lab that "
                             f"runs and brings up nothing (`availlab --lab {config.lab} lab up` first)")
        if up is not None and up.status == "up":  # the notebook checks again once its lab is up
            config.preflight(list(up.hosts))
        elif up is None and config.lab != "default" and "hosts" not in params:
            # `-p lab prod` may mean a remote cluster that is not up yet: never build a local lab
            # of that name unless told how
            raise UsageError(f"parameter 'lab': lab {config.lab!r} is not up, and a run builds a local lab only "
                             f"when told how: add `-p hosts N` for a local lab of N hosts, or bring it up first "
                             f"(`availlab --lab {config.lab} lab up [--config TOPOLOGY]`, e.g. a remote cluster)")
        return {k: getattr(config, k) for k in params}
    if "lab" in params:
        names.lab_name(params["lab"], "parameter 'lab'")
    declared = declared if declared is not None else declared_parameters(notebook)
    for name, value in params.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UsageError(f"parameter {name!r}: {notebook.name} has no such parameter "
                             f"(it takes: {known})")
        info = declared[name]
        if not _type_ok(value, info.get("inferred_type_name"), info.get("default", "")):
            raise UsageError(f"parameter {name!r}: expected {info['inferred_type_name']} "
                             f"(default {info['default']}), got {type(value).__name__} {value!r}")
    return params


def resolve(notebook: str | Path) -> Path:
    """A runbook by its path, or by its name among availlab's own (`10-live-migration`): an
    installed copy keeps them where a user would not look (paths.project_root)."""
    nb = Path(notebook)
    if nb.is_file():
        return nb
    ours = paths.project_root() / "runbooks"
    for name in (nb.name, f"{nb.name}.ipynb"):
        if len(nb.parts) == 1 and (ours / name).is_file():
            return ours / name
    known = ", ".join(sorted(p.stem for p in ours.glob("*.ipynb")))
    raise UsageError(f"runbook {notebook} not found: give a notebook's path or one of availlab's runbooks ({known})")


def run(notebook: str | Path, params: dict[str, object] | None = None,
        runs_root: Path | None = None, progress: bool = True, metrics_port: int | None = None) -> RunResult:
    """Execute the runbook into its own run folder with papermill; an interrupt still leaves a
    partial, checked report (INCOMPLETE), and a kernel that died is a failed run, named. With
    `metrics_port`, the run's figures are served for Prometheus on 127.0.0.1 while it runs."""
    nb = resolve(notebook)
    declared = declared_parameters(nb)
    params = validate_parameters(nb, dict(params or {}), declared)
    if params.get("run_dir"):  # as the user meant it, from where they stand: papermill runs elsewhere
        params["run_dir"] = str(Path(str(params["run_dir"])).resolve())
    root = runs_root or paths.runs_root()
    made = [d for d in (root, root / nb.stem) if not d.exists()]
    run_dir = paths.new_run_dir(root / nb.stem)  # its own, even for two runs started in one second
    with contextlib.ExitStack() as stack:
        if metrics_port is not None:  # a port taken is refused, and the folders made for it removed
            evidence = _evidence_dir(params, run_dir)
            if "run_dir" not in declared:
                step(f"metrics: {nb.name} takes no run_dir parameter, so its evidence may not be in "
                     f"{evidence}: the endpoint may stay empty")
            try:
                stack.callback(_serve_metrics(evidence, metrics_port, _metric_labels(nb, params, declared)))
            except UsageError:
                for d in (run_dir, *reversed(made)):  # empty, and made by this call
                    with contextlib.suppress(OSError):
                        d.rmdir()
                raise
        if "run_dir" in declared:
            params.setdefault("run_dir", str(run_dir))
        step(f"run folder: {params.get('run_dir') or run_dir}")  # before it runs: `availlab mark RUN` needs it
        paths.point_latest(run_dir)
        return _execute(nb, run_dir / nb.name, run_dir, params, declared, progress)


def _evidence_dir(params: dict[str, object], run_dir: Path) -> Path:
    """Where the notebook writes its evidence: its run_dir parameter or the folder `run` made."""
    return Path(str(params["run_dir"])) if params.get("run_dir") else run_dir


def _metric_labels(nb: Path, params: dict[str, object], declared: dict[str, dict]) -> dict[str, str]:
    """What the live endpoint's samples are labelled with, as the ended run's are (run_labels):
    the run's own values of lab and vm."""
    from ..names import chosen_lab

    got = run_values(params, declared, nb.stem, ("lab", "vm", "vms"))
    vm = None if got.get("vms") else got.get("vm")  # several VMs (runbook 60): each its own, as after the run
    return {"lab": str(got.get("lab") or chosen_lab(None)), "runbook": nb.stem, **({"vm": str(vm)} if vm else {})}


def _serve_metrics(run_dir: Path, port: int, labels: dict[str, str]) -> Callable[[], None]:
    from ..metrics import serve

    if not 1 <= port <= 65535:
        raise UsageError(f"--metrics-port: {port} is not a TCP port (1-65535)")
    try:
        server = serve(run_dir, port, labels=labels)
    except OSError as exc:
        raise UsageError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    step(f"metrics: http://127.0.0.1:{port}/metrics (Prometheus text format) while the run lasts")

    def stop() -> None:
        server.shutdown()
        server.server_close()
    return stop


def _execute(nb: Path, out: Path, run_dir: Path, params: dict[str, object], declared: dict[str, dict],
             progress: bool) -> RunResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .params import for_notebook

    evidence = _evidence_dir(params, run_dir)
    evidence.mkdir(parents=True, exist_ok=True)
    ours = for_notebook(nb) is not None  # its steps say what it does; a notebook of one's own: the cell counter
    try:
        with follow(evidence / PROGRESS_LOG, show=progress):
            run_interruptibly(lambda km_class: papermill.execute_notebook(
                str(nb), str(out), parameters=params, kernel_name=KERNEL, progress_bar=progress and not ours,
                log_output=False, cwd=str(paths.project_root()), kernel_manager_class=km_class))
    except PapermillExecutionError as exc:
        return RunResult(nb.stem, run_dir, out, False, f"{exc.ename}: {exc.evalue}")
    except KeyboardInterrupt:
        write_incomplete(run_dir, nb.stem, params, declared)
        return RunResult(nb.stem, run_dir, out, False, "interrupted")
    except Exception as exc:  # kernel died, missing kernel spec: still a failed run, named
        if isinstance(exc, AvailLabError):
            raise
        return RunResult(nb.stem, run_dir, out, False, f"{type(exc).__name__}: {exc}")
    return RunResult(nb.stem, run_dir, out, True)


def run_slo(params: dict, declared: dict[str, dict], runbook: str = "") -> dict:
    """The SLO fields this run was judged by: the runbook's defaults under its `-p` values."""
    from ..checks import SLO

    return run_values(params, declared, runbook, SLO.model_fields)


def run_values(params: dict, declared: dict[str, dict], runbook: str, names: Iterable[str]) -> dict:
    """The run's values of `names`: its runbook's model under the `-p` values, or for a notebook
    of the user's own, each `-p` value, else the notebook's declared default (left out where it
    has neither, or a default that is not a literal)."""
    from .params import RUNBOOKS

    model = RUNBOOKS.get(runbook)
    if model is not None:
        config = model.parse(params)
        return {k: getattr(config, k) for k in names if k in model.model_fields}
    out: dict = {}
    for name in names:
        if name in params:
            out[name] = params[name]
        elif name in declared:
            try:
                out[name] = ast.literal_eval(str(declared[name].get("default")))
            except (ValueError, SyntaxError):
                continue
    return out


def write_incomplete(run_dir: Path, runbook: str, params: dict, declared: dict[str, dict] | None = None) -> None:
    """An interrupted run still leaves its evidence: what the history holds is checked and
    reported, under the verdict INCOMPLETE (the kernel, and with it the clients, are gone),
    against the SLO the run was started with, not the default one."""
    import time

    from ..checks import check_run, slo
    from ..history import read_jsonl
    from ..report import write_run
    from .params import RUNBOOKS

    files = RunFiles(run_dir)
    hist = files.history
    if (run_dir / "results.json").exists():
        return
    model = RUNBOOKS.get(runbook)  # judged by the runbook's own checks; a notebook of one's own as runbook 10
    config = model.parse(params) if model else None
    if (config and config.report_cut_short(run_dir)) or not hist.exists():
        return
    slo_ = slo(**run_slo(params, declared or {}, runbook))
    history, events = read_jsonl(hist), read_jsonl(files.events)
    history.append({"type": Rec.INTERRUPTED, "t": time.monotonic_ns()})
    results = config.judge(history, events) if config else check_run(history, events, slo_)
    results.verdict = "INCOMPLETE"
    write_run(run_dir, runbook, results, history, events, {**params, "interrupted": True}, hist.stat().st_mtime)
