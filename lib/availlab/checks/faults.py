"""Runbook 40, the fault matrix: each fault judged on its own slice of the one history.

Each fault gets its own workload (its own run id and final read) between `fault-begin` and
`fault-end` marks; a fault's row composes the client checkers over its slice with what the fault
must leave behind (the VM running; for a backup fault, a thawed guest and no partial set) and its
own evidence that it struck (else UNKNOWN). The fault event names its family (migration, backup,
db), which decides what is expected. A fault requested but never run is UNKNOWN too.
"""

from __future__ import annotations

from typing import Any

from ..records import Rec
from .client import blackout_checker, connection_loss, lost_writes, outcomes
from .core import (
    OUTCOME,
    SLO,
    UNKNOWN,
    Check,
    Checker,
    Context,
    Results,
    checker,
    compose,
    could_not,
    evidence,
    judge,
    merge,
    verdict_of,
)

EXPECTED = {
    "migration": "VM keeps running (on the source, or on the target if the switchover happened); 0 lost writes",
    "backup": ("backup fails with a clear error, nothing catalogued, no partial set left, guest thawed; "
               "VM keeps running; 0 lost writes"),
    "db": ("clients see it, but every error is recognised as a lost connection (a write then is "
           "indeterminate, never failed), every client reconnects and goes on; 0 lost writes"),
}


def _slices(history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    cur: list[dict[str, Any]] | None = None
    for r in history:
        if r.get("type") == Rec.FAULT_BEGIN:
            cur = out.setdefault(r["fault"], [])
        elif r.get("type") == Rec.FAULT_END:
            cur = None
        elif cur is not None:
            cur.append(r)
    return out


def _vm_running(fe: dict[str, Any] | None) -> Checker:
    @checker(OUTCOME)
    def vm(ctx: Context) -> Check:
        return Check("vm", bool(fe) and fe is not None and fe.get("vm_state_after") == "running", {}, "")
    return vm


def _detail(fe: dict[str, Any] | None, key: str, want: object, shown: str) -> Checker:
    @checker(OUTCOME)
    def check(ctx: Context) -> Check:
        d = (fe or {}).get("details", {})
        return Check(key, d.get(key) == want, {}, str(d.get(shown)))
    return check


def _struck(fe: dict[str, Any] | None) -> Checker:
    """A fault proves it acted (events.faults: each fault states its own evidence); one that did
    not strike, or recorded no evidence, leaves its row UNKNOWN: the VM surviving nothing proves
    nothing."""
    @checker(OUTCOME)
    def struck(ctx: Context) -> Check:
        if fe and fe.get("struck") is True:
            return Check("struck", True, {}, str(fe.get("evidence", "")))
        why = (fe or {}).get("evidence") or "no evidence that it acted was recorded"
        return Check("struck", UNKNOWN, {}, f"fault did not strike: {why}")
    return struck


@checker(OUTCOME)
def _no_family(ctx: Context) -> Check:
    return Check("family", UNKNOWN, {}, "the fault event names no family: what to expect is unknown")


def fault_checkers(fe: dict[str, Any] | None) -> dict[str, Checker]:
    family = _family(fe)
    chosen: dict[str, Checker] = {
        "outcomes": connection_loss if family == "db" else outcomes, "lost-writes": lost_writes,
        "blackout": blackout_checker(against_slo=False), "vm": _vm_running(fe), "struck": _struck(fe)}
    if family == "backup":  # a backup fault also must not leave a frozen guest or half a set
        chosen["guest thawed"] = _detail(fe, "guest_thawed", True, "guest_freeze_status")
        chosen["no partial set"] = _detail(fe, "partial_sets_left", [], "partial_sets_left")
    if fe and family not in EXPECTED:
        chosen["family"] = _no_family
    return chosen


def _family(fe: dict[str, Any] | None) -> str:
    return str(fe.get("family")) if fe else "migration"


def _row(fault: str, fe: dict[str, Any] | None, parts: list[Check]) -> dict[str, Any]:
    by = {c.name: c.figures for c in parts}
    family = _family(fe)
    return {"fault": fault, "expected": EXPECTED.get(family, "unknown: no fault family recorded"), "action": fe.get("action") if fe else None,
            "vm_host_after": fe.get("vm_host_after") if fe else None,
            "completed": fe.get("action_ok") if fe else None,
            # results schema fields are only ever added: the name before backup faults
            "migration_completed": fe.get("action_ok") if fe and family == "migration" else None,
            "error": fe.get("action_error") if fe else None, "details": fe.get("details", {}) if fe else {},
            "struck": fe.get("struck") if fe else None, "evidence": fe.get("evidence", "") if fe else "",
            "failed_ops": by["outcomes"].get("failed_ops"), "info_ops": by["outcomes"].get("info_ops"),
            "lost_writes": by["lost-writes"].get("lost_writes"),
            "blackout_ms": by["blackout"].get("longest_blackout_ms"), "verdict": verdict_of(parts),
            "repairs": fe.get("repairs", []) if fe else []}


def _fault(fault: str, fe: dict[str, Any] | None, hist: list[dict[str, Any]]) -> Checker:
    """One fault's row: the client checkers and what the fault must leave behind, composed over
    its own slice of the history; the row itself rides in the check's figures to the table."""
    @checker(OUTCOME)
    def judged(ctx: Context) -> Check:
        window = [{"type": Rec.FAULT, "t0": fe["t0"], "t1": fe["t1"]}] if fe else []
        parts = compose(fault_checkers(fe))(Context(hist, [fe] if fe else [], ctx.slo, windows=window))
        row = _row(fault, fe, parts)
        why = [f"{c.name}: {c.message}" for c in parts if c.valid is not True and c.message]
        running = next(c.valid for c in parts if c.name == "vm") is True
        return Check(f"fault {fault}", merge(c.valid for c in parts), {ROW: row},
                     f"VM {'running on ' + str(row['vm_host_after']) if running else 'NOT running'}; "
                     f"{row['failed_ops']} failed, {row['info_ops']} indeterminate, {row['lost_writes']} lost; "
                     f"blackout {row['blackout_ms']} ms" + (f" -- {'; '.join(why)}" if why else ""))
    return judged


ROW = "row"  # a fault check's figure that becomes its row of figures.faults (and leaves the check)


def matrix_checkers(history: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Checker]:
    """The matrix as one composition: the evidence, a checker per fault run, and one per fault
    requested but never run (the run ended before it: interrupted, crashed)."""
    faults = {e["fault"]: e for e in events if e.get("type") == Rec.FAULT}
    slices = _slices(history)
    chosen: dict[str, Checker] = {"history": evidence}
    chosen.update({f"fault {fault}": _fault(fault, faults.get(fault), hist) for fault, hist in slices.items()})
    requested = next((r.get("faults", []) for r in history if r.get("type") == Rec.FAULTS_REQUESTED), list(slices))
    chosen.update({f"fault {fault}": could_not("requested but never run") for fault in requested if fault not in slices})
    if not slices:
        chosen["faults"] = could_not("no fault was run")
    return chosen


def matrix_figures(by: dict[str, Check], ctx: Context) -> dict[str, Any]:
    rows = [c.figures.pop(ROW) for c in by.values() if ROW in c.figures]
    all_ops = Context([r for h in _slices(ctx.history).values() for r in h], [], ctx.slo).ops
    return {"ops": len(all_ops), "ok_ops": sum(o.type == Rec.OK for o in all_ops),
            "failed_ops": sum(r["failed_ops"] or 0 for r in rows), "info_ops": sum(r["info_ops"] or 0 for r in rows),
            "lost_writes": sum(r["lost_writes"] or 0 for r in rows),
            "longest_blackout_ms": max((r["blackout_ms"] or 0 for r in rows), default=None),
            "migrations": [], "faults": rows}


def check_matrix(history: list[dict[str, Any]], events: list[dict[str, Any]], slo: SLO) -> Results:
    return judge(Context(history, events, slo), matrix_checkers(history, events), matrix_figures)
