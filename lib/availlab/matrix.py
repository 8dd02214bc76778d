"""The fault matrix (runbooks/40-fault-matrix.ipynb): every fault with clients running, one table.

Each fault gets its own workload (its own run id and final read) between `fault-begin` and
`fault-end` marks in the one history.jsonl; the checker splits the history at those marks and
judges each fault on its own slice: where the VM runs afterwards, failed/indeterminate ops, lost
acknowledged writes, blackout.
"""

from __future__ import annotations

import time

from . import lab, state
from .checker import (SLO, TIMING, UNKNOWN, Check, Results, check_blackout, check_lost_writes, check_outcomes, guarded,
                      pair_ops, verdict_of)
from .clients import Workload, WorkloadSpec
from .errors import UsageError
from .dialects import dialect
from .events.faults import BACKUP_FAULTS, DB_FAULTS, FAULTS, MIGRATION_FAULTS, inject
from .history import JsonlWriter, clock_anchor, now_ns, read_jsonl
from .scenario import Run

EXPECTED_MIGRATION = "VM keeps running (on the source, or on the target if the switchover happened); 0 lost writes"
EXPECTED_BACKUP = ("backup fails with a clear error, nothing catalogued, no partial set left, guest thawed; "
                   "VM keeps running; 0 lost writes")
EXPECTED_DB = ("clients see it, but every error is recognised as a lost connection (a write then is "
               "indeterminate, never failed), every client reconnects and goes on; 0 lost writes")


def expected(fault: str) -> str:
    return (EXPECTED_BACKUP if fault in BACKUP_FAULTS else EXPECTED_DB if fault in DB_FAULTS
            else EXPECTED_MIGRATION)


def check_connection_loss(ops: list, history: list[dict], t_fault: int | None) -> Check:
    """After the server ends the sessions: each error must be one the profile recognises as a
    lost connection (else a real statement error, or a wrongly judged write, hides in the noise),
    and every client that lost its connection must complete an operation after its last error."""
    db = next((r.get("database") for r in history if r.get("type") == "workload-start"), "postgresql")
    d = dialect(db or "postgresql")
    bad = [o for o in ops if o.type != "ok"]
    unrecognised = [o for o in bad if not d.is_connection_error(o.sqlstate, o.error or "")]
    failed_writes = [o for o in bad if o.f == "write" and o.type == "fail"]
    hit = {o.client for o in bad}
    last_error = {c: max(o.t1 or o.t0 for o in bad if o.client == c) for c in hit}
    recovered = {o.client for o in ops if o.type == "ok" and o.client in hit and o.t0 >= last_error[o.client]}
    figs = {"ops": len(ops), "failed_ops": sum(o.type == "fail" for o in bad),
            "info_ops": sum(o.type == "info" for o in bad), "unrecognised": len(unrecognised),
            "clients_hit": len(hit), "errors": sorted({f"{o.sqlstate}: {(o.error or '')[:120]}" for o in bad})[:5]}
    if t_fault is None or not ops:
        return Check("outcomes", UNKNOWN, figs, "no fault or no operation recorded")
    problems = ([f"{len(unrecognised)} errors not recognised as a lost connection: "
                 f"{sorted({(o.sqlstate, (o.error or '')[:80]) for o in unrecognised})[:3]}"] if unrecognised else [])
    problems += [f"{len(failed_writes)} writes judged failed"] if failed_writes else []
    problems += [f"clients {sorted(hit - recovered)} never recovered"] if hit - recovered else []
    msg = (f"{d.name}: {len(bad)} client-visible errors on {len(hit)} clients, all recognised as lost "
           f"connections; every client reconnected" if not problems else "; ".join(problems))
    return Check("outcomes", not problems, figs, msg)


class Matrix(list):
    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {r.fault} | {r.action}: {'completed' if r.action_ok else 'failed'} | {r.vm_host_after} "
                         f"({r.vm_state_after}) | {'; '.join(r.repairs) or '-'} |" for r in self)
        return "| fault | what it hit | VM afterwards | repairs |\n|---|---|---|---|\n" + rows


def validate_faults(faults: list[str]) -> list[str]:
    bad = [f for f in faults if f not in FAULTS]
    if bad or not faults:
        raise UsageError(f"faults: unknown {bad} (faults: {', '.join(FAULTS)})" if bad
                         else "faults: give at least one fault")
    return list(faults)


def run_matrix(run: Run, lab_name: str, vm: str, faults: list[str], spec: WorkloadSpec,
               warmup_s: float = 2.0, cooldown_s: float = 2.0, cut_s: float = 5.0) -> Matrix:
    out = Matrix()
    with JsonlWriter(run.history_path) as hist, JsonlWriter(run.events_path) as ev:
        hist.write(clock_anchor())
        for fault in validate_faults(faults):
            st = state.require_up(lab_name)
            here = lab.locate_vm(st, vm)[0]
            target = next(h for h in st.hosts if h != here)
            hist.write({"type": "fault-begin", "t": now_ns(), "fault": fault})
            wl = Workload(st, vm, spec, hist)
            wl.start()
            try:
                time.sleep(warmup_s)
                hist.write({"type": "warm", "t": now_ns()})
                out.append(inject(st, vm, target, fault, ev, cut_s=cut_s))
                time.sleep(cooldown_s)
            finally:
                wl.stop()
            wl.final_read()
            hist.write({"type": "fault-end", "t": now_ns(), "fault": fault})
    return out


def _slices(history: list[dict]) -> dict[str, list[dict]]:
    out, cur = {}, None
    for r in history:
        if r.get("type") == "fault-begin":
            cur = out.setdefault(r["fault"], [])
        elif r.get("type") == "fault-end":
            cur = None
        elif cur is not None:
            cur.append(r)
    return out


def check_matrix(history: list[dict], events: list[dict], slo: SLO) -> Results:
    faults = {e["fault"]: e for e in events if e.get("type") == "fault"}
    rows, checks = [], []
    for fault, hist in _slices(history).items():
        ops = pair_ops(hist)
        fe = faults.get(fault)
        window = [{"t0": fe["t0"], "t1": fe["t1"]}] if fe else []
        t_fault = (fe.get("injected_at") or fe.get("t0")) if fe else None
        outcomes = ((lambda: check_connection_loss(ops, hist, t_fault)) if fault in DB_FAULTS
                    else (lambda: check_outcomes(ops, slo)))
        parts = [guarded("outcomes", outcomes),
                 guarded("lost-writes", lambda: check_lost_writes(ops, hist, slo)),
                 # the blackout is a figure here, not a verdict: a fault's own timeouts set it
                 guarded("blackout", lambda: check_blackout(ops, hist, window, SLO(max_blackout_ms=1e9)), TIMING)]
        running = bool(fe) and fe.get("vm_state_after") == "running"
        parts.append(Check("vm", running, {}, ""))
        if fault in BACKUP_FAULTS:  # a backup fault also must not leave a frozen guest or half a set
            d = fe.get("details", {}) if fe else {}
            parts.append(Check("guest thawed", d.get("guest_thawed") is True, {}, str(d.get("guest_freeze_status"))))
            parts.append(Check("no partial set", d.get("partial_sets_left") == [], {}, str(d.get("partial_sets_left"))))
        verdict = verdict_of(parts)
        by = {c.name: c.figures for c in parts}
        rows.append({"fault": fault, "expected": expected(fault), "action": fe.get("action") if fe else None,
                     "vm_host_after": fe.get("vm_host_after") if fe else None,
                     "completed": fe.get("action_ok") if fe else None,
                     # results schema fields are only ever added: the name before backup faults
                     "migration_completed": fe.get("action_ok") if fe and fault in MIGRATION_FAULTS else None,
                     "error": fe.get("action_error") if fe else None,
                     "details": fe.get("details", {}) if fe else {},
                     "failed_ops": by["outcomes"].get("failed_ops"), "info_ops": by["outcomes"].get("info_ops"),
                     "lost_writes": by["lost-writes"].get("lost_writes"),
                     "blackout_ms": by["blackout"].get("max_blackout_ms"), "verdict": verdict,
                     "repairs": fe.get("repairs", []) if fe else []})
        valid = True if verdict == "PASS" else ("unknown" if verdict == "UNKNOWN" else False)
        why = [f"{c.name}: {c.message}" for c in parts if c.valid is not True and c.message]
        checks.append(Check(f"fault {fault}", valid, {}, f"VM {'running on ' + str(rows[-1]['vm_host_after']) if running else 'NOT running'}; "
                                f"{rows[-1]['failed_ops']} failed, {rows[-1]['info_ops']} indeterminate, "
                                f"{rows[-1]['lost_writes']} lost; blackout {rows[-1]['blackout_ms']} ms"
                                + (f" -- {'; '.join(why)}" if why else "")))
    if not rows:
        checks.append(Check("faults", "unknown", {}, "no fault was run"))
    all_ops = pair_ops([r for h in _slices(history).values() for r in h])
    figures = {"ops": len(all_ops), "ok_ops": sum(o.type == "ok" for o in all_ops),
               "failed_ops": sum(r["failed_ops"] or 0 for r in rows), "info_ops": sum(r["info_ops"] or 0 for r in rows),
               "lost_writes": sum(r["lost_writes"] or 0 for r in rows),
               "max_blackout_ms": max((r["blackout_ms"] or 0 for r in rows), default=None),
               "migrations": [], "faults": rows}
    return Results(verdict_of(checks), checks, figures)


def check(run: Run, slo: SLO) -> Results:
    return check_matrix(read_jsonl(run.history_path), read_jsonl(run.events_path), slo)
