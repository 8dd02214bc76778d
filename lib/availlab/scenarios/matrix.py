"""The fault matrix (runbooks/40-fault-matrix.ipynb): every fault with clients running, one table.

Each fault gets its own workload (its own run id and final read) between `fault-begin` and
`fault-end` marks in the one history.jsonl; `checks.faults` splits the history at those marks
and judges each fault on its own slice: where the VM runs afterwards, failed/indeterminate ops,
lost acknowledged writes, blackout.
"""

from __future__ import annotations

from ..clients.workload import WorkloadSpec, under_load
from ..errors import UsageError
from ..events.faults import FAULTS
from ..events.nemesis import Nemeses, Stage
from ..events.ops import Strike
from ..history import JsonlWriter, clock_anchor, now_ns
from ..records import Rec
from .lab_view import Lab
from .run import Run


class Matrix(list):
    """One row per fault run, for the notebook to show before the checks judge them."""
    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {r.fault} | {r.action}: {'completed' if r.action_ok else 'failed'} | {r.vm_host_after} "
                         f"({r.vm_state_after}) | {'; '.join(r.repairs) or '-'} |" for r in self)
        return "| fault | what it hit | VM afterwards | repairs |\n|---|---|---|---|\n" + rows


def validate_faults(faults: list[str]) -> list[str]:
    """Every name a registered fault, and at least one: refused before the lab is touched."""
    bad = [f for f in faults if f not in FAULTS]
    if bad or not faults:
        raise UsageError(f"faults: unknown {bad} (faults: {', '.join(FAULTS)})" if bad
                         else "faults: give at least one fault")
    return list(faults)


def run_matrix(run: Run, lab: Lab, vm: str, faults: list[str], spec: WorkloadSpec,
               warmup_s: float = 2.0, cooldown_s: float = 2.0, cut_s: float = 5.0) -> Matrix:
    """Each fault with its own workload between fault-begin and fault-end marks, so each is judged
    on its own slice."""
    out = Matrix()
    with JsonlWriter(run.history_path) as hist, JsonlWriter(run.events_path) as ev:
        hist.write(clock_anchor())
        hist.write({"type": Rec.FAULTS_REQUESTED, "t": now_ns(), "faults": validate_faults(faults)})
        for fault in faults:
            st = lab.refresh().st  # a fault may have restarted a daemon or moved the VM
            nemeses = Nemeses(Stage(st=st, vm=vm, events=ev), [Strike(fault, cut_s=cut_s)])
            hist.write({"type": Rec.FAULT_BEGIN, "t": now_ns(), "fault": fault})
            with under_load(st, vm, spec, hist, warmup_s=warmup_s, cooldown_s=cooldown_s, nemeses=nemeses):
                out.extend(nemeses.invoke())
            hist.write({"type": Rec.FAULT_END, "t": now_ns(), "fault": fault})
    return out
