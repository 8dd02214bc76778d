"""Runbook 20: backups under load, a DR restore, and what the restored VM holds."""

from __future__ import annotations

from typing import Any

from ..dialects import dialect
from ..records import Rec, freeze_windows
from .client import blackout, latency, outcomes
from .core import OUTCOME, SLO, UNKNOWN, Check, Context, Results, checker, evidence, judge
from .probe import probe


@checker(OUTCOME)
def rpo(ctx: Context) -> Check:
    """Writes acknowledged before the incremental backup's point in time must all be restored;
    later ones may be missing (that is the RPO) and are counted, not failed."""
    inc = [e for e in ctx.of_type(Rec.BACKUP) if e.get("kind") == "incremental"]
    reads = [r for r in ctx.marks(Rec.FINAL_READ) if r.get("vm")]
    if not inc or not reads:
        return Check("rpo", UNKNOWN, {}, "no incremental backup or no read of the restored VM")
    cutoff = inc[-1]["t_begin"]
    present = set(reads[-1]["keys"])
    acked = [o for o in ctx.ops if o.f == "write" and o.type == Rec.OK and o.t1 is not None]
    before = {o.key for o in acked if o.t1 is not None and o.t1 < cutoff}
    after = {o.key for o in acked if o.t1 is not None and o.t1 >= cutoff}
    lost = sorted(before - present)
    # the RPO as time: from the backup's point in time to the disaster (or the drill's restore)
    moment = ctx.of_type(Rec.HOST_LOST) or ctx.of_type(Rec.DRILL) or ctx.of_type(Rec.RESTORE)
    rpo_s = round(((moment[0].get("t0") or moment[0]["t"]) - cutoff) / 1e9, 2) if moment else None
    figs = {"acknowledged_before_backup": len(before), "lost_writes": len(lost), "lost_keys": lost[:20],
            "rpo_writes_missing": len(after - present), "acknowledged_after_backup": len(after), "rpo_s": rpo_s}
    return Check("rpo", len(lost) <= ctx.slo.max_lost_writes, figs,
                 f"{len(before) - len(lost)}/{len(before)} writes acknowledged before the backup point are "
                 f"restored; {figs['rpo_writes_missing']} later writes are missing (the RPO: "
                 f"{rpo_s} s of writes)")


def consistency_problems(rec: dict[str, Any] | None) -> list[str]:
    """What the restored database's answers (scenarios.dr.verify_restore) show wrong; [] when
    sound. Every question must have been answered: a missing answer is a problem, never a pass."""
    if not rec:
        return ["no consistency check"]
    problems = []
    table, index = rec.get("table_rows", rec.get("heap_rows")), rec.get("index_rows")
    if table is None or index is None:
        problems.append("the table and index counts were not recorded")
    elif table != index:
        problems.append(f"table and index disagree ({table} rows against {index})")
    if rec.get("database") and "integrity" in rec and rec["integrity"] is not None:
        problems += [f"integrity check: {p}" for p in dialect(rec["database"]).integrity_problems(rec["integrity"])]
    if not rec.get("values_checked"):
        problems.append("no restored row's value was checked")
    elif rec.get("value_mismatches"):
        problems.append(f"{rec['value_mismatches']} restored rows hold a value their client never wrote "
                        f"(e.g. {rec.get('value_mismatch_keys', [])[:3]})")
    return problems


@checker(OUTCOME)
def restore(ctx: Context) -> Check:
    """The full restore's database is consistent and its logical dump restorable; an instant restore
    of the same chain beside it, if the run made one, holds the same rows."""
    rest = [e for e in ctx.of_type(Rec.RESTORE) if e.get("mode", "full") == "full"]
    instant = [e for e in ctx.of_type(Rec.RESTORE) if e.get("mode") == "instant"]
    cons = ctx.marks(Rec.DB_CONSISTENCY)
    dump = ctx.marks(Rec.DUMP_READ)
    same = ctx.marks(Rec.INSTANT_READ)
    if not rest:
        return Check("restore", False, {}, "no restore completed")
    figs: dict[str, Any] = {"rto_s": rest[-1]["rto_s"], "restored_on": rest[-1]["host"],
                            "restore_copy_s": rest[-1].get("disk_s"),
                            "rto_instant_s": instant[-1]["rto_s"] if instant else None,
                            "move_off_s": instant[-1].get("move_off_s") if instant else None}
    problems = []
    if instant and not (same and same[-1]["ok"]):
        problems.append("the instant restore's rows differ from the full restore's" if same
                        else "the instant restore's rows were not compared")
    problems += consistency_problems(cons[-1] if cons else None)
    if dump:
        t0 = dump[-1]["t_dump0"]
        before_dump = {o.key for o in ctx.ops if o.f == "write" and o.type == Rec.OK and o.t1 is not None and o.t1 < t0}
        tool = dump[-1].get("tool", "pg_dump")
        missing = before_dump - set(dump[-1]["keys"])
        figs["dump_missing_writes"] = len(missing)
        figs["dump_tool"] = tool
        if missing:
            problems.append(f"{tool} restore misses {len(missing)} acknowledged writes")
    else:
        problems.append("the logical dump was not verified")
    return Check("restore", not problems, figs,
                 f"database answered {figs['rto_s']} s after the restore began (RTO)"
                 + (f"; {figs['rto_instant_s']} s when booted from the set (instant)" if instant else "")
                 + (f"; problems: {'; '.join(problems)}" if problems else f"; consistent; {figs['dump_tool']} verified"))


def _figures(by: dict[str, Check], ctx: Context) -> dict[str, Any]:
    backups, repl = ctx.of_type(Rec.BACKUP), ctx.of_type(Rec.REPLICATION)
    rpo_, rest, bl = by["rpo"].figures, by["restore"].figures, by["blackout"].figures
    return {
        "drill": bool(ctx.of_type(Rec.DRILL)), "rpo_s": rpo_.get("rpo_s"),
        "rto_s": rest.get("rto_s"), "rto_instant_s": rest.get("rto_instant_s"),
        "restore_copy_s": rest.get("restore_copy_s"), "move_off_s": rest.get("move_off_s"),
        "rpo_writes_missing": rpo_.get("rpo_writes_missing"),
        "freeze_windows_ms": [b.get("freeze_ms") for b in backups],
        "freeze_blackout_ms": bl.get("per_window_blackout_ms", []),
        "freeze_probe_blackout_ms": by["probe"].figures.get("per_window_probe_blackout_ms", []),
        "backups": [{"set_id": b["set_id"], "kind": b["kind"], "consistency": b["consistency"],
                     "size_mib": round(b["size_bytes"] / 2**20, 1), "duration_s": b["duration_s"],
                     "freeze_ms": b.get("freeze_ms")} for b in backups],
        "replication_mib_s": repl[-1]["mib_s"] if repl else None,
        "checksums_verified": bool(repl) and bool(ctx.of_type(Rec.RESTORE)),
    }


def check_dr_run(history: list[dict[str, Any]], events: list[dict[str, Any]], slo: SLO) -> Results:
    ctx = Context(history, events, slo, windows=freeze_windows(events))
    return judge(ctx, {"history": evidence, "outcomes": outcomes, "blackout": blackout, "latency": latency,
                       "rpo": rpo, "restore": restore, "probe": probe}, _figures)
