"""Runbook 30, dynamic resources: did a tip fire, did the mode keep its promise, did it help?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..records import Rec
from .client import latency, lost_writes, outcomes
from .core import OUTCOME, SLO, TIMING, UNKNOWN, Check, Context, Results, checker, evidence, judge, percentile


class RuleLike(Protocol):
    threshold: float
    sustained_s: float


def check_dynamic(history: list[dict[str, Any]], events: list[dict[str, Any]], slo: SLO, rules: Sequence[RuleLike],
                  mode: str, interval_s: float, settle_s: float = 2.0) -> Results:
    ctx = Context(history, events, slo)
    ops = ctx.ops
    t_hog = next((e["t"] for e in events if e.get("type") == Rec.OVERLOAD_START), None)
    warm = next((r["t"] for r in history if r.get("type") == Rec.WARM), 0)
    tips = ctx.of_type(Rec.TIP)
    migs = [e for e in ctx.of_type(Rec.MIGRATION) if e.get("ok")]
    starts = ctx.of_type(Rec.MIGRATION_START)
    approvals = ctx.of_type(Rec.TIP_APPROVED)
    relief = migs[0]["t1"] if migs and t_hog and migs[0]["t0"] > t_hog else None

    def lat(a: int, b: int) -> list[float]:
        return [o.latency_ms for o in ops if o.type == Rec.OK and a <= o.t0 < b and o.latency_ms]

    end = max((o.t1 or o.t0) for o in ops) if ops else 0
    p95 = {"p95_before_ms": percentile(lat(warm, t_hog or end), 95),
           "p95_during_ms": percentile(lat(t_hog or end, relief or end), 95),
           "p95_after_ms": percentile(lat(relief + int(settle_s * 1e9), end), 95) if relief else None}
    threshold = min(r.threshold for r in rules)
    sustained = min(r.sustained_s for r in rules)

    def crossing() -> int | None:
        """When a host's sampled CPU first crossed the threshold after the overload began."""
        return next((s["t"] for s in events if s.get("type") == Rec.SAMPLE and t_hog and s["t"] >= t_hog
                     and any(h["cpu"] > threshold for h in s["hosts"].values())), None)

    @checker(OUTCOME)
    def tips_check(ctx: Context) -> Check:
        """The outcome: a tip fired, and the mode's promise about moves was kept."""
        if not tips:
            return Check("tips", False, {}, "no tip fired during the overload")
        figs = {"tips": len(tips)}
        moving = [t for t in tips if t.get("action") == "migrate"] or tips
        if mode == "automatic":
            first = moving[0]
            after = [m for m in migs if m["t0"] >= first["t"] and m["source"] == first["host"]]
            if not after:
                tried = [e for e in starts if e["t"] >= first["t"] and e.get("source") == first["host"]]
                return Check("tips", False, figs, "automatic mode, but " + (
                    "the migration that followed the tip failed" if tried else "no migration followed the tip"))
            return Check("tips", True, figs, f"a tip fired and {after[0]['vm']} was moved "
                         f"{after[0]['source']} -> {after[0]['target']} ({len(tips)} tip(s))")
        early = [s for s in starts if not approvals or s["t"] < approvals[0]["t"]]
        if early:
            return Check("tips", False, figs, f"manual mode, but {len(early)} migration(s) began without approval")
        if approvals and not [m for m in migs if m["t0"] >= approvals[0]["t"]]:
            return Check("tips", False, figs, "manual mode: the approved migration did not complete")
        return Check("tips", True, figs, "manual mode: nothing moved before approval"
                     + ("; the approved move completed" if approvals else ""))

    @checker(TIMING)
    def tip_latency(ctx: Context) -> Check:
        """The timing: how soon after the host crossed the threshold the move began."""
        allowed = sustained + 2 * interval_s
        if mode != "automatic":
            return Check("tip-latency", True, {}, "manual mode: the operator decides when", TIMING)
        t_cross = crossing()
        moves = [e for e in starts if tips and e["t"] >= tips[0]["t"]]
        if not moves or t_cross is None:
            return Check("tip-latency", UNKNOWN, {}, "no automatic move after a sampled crossing to time", TIMING)
        lag = (moves[0]["t"] - t_cross) / 1e9
        return Check("tip-latency", lag <= allowed, {"crossing_to_migration_s": round(lag, 2)},
                     f"migration began {lag:.1f} s after the host crossed {threshold:g}% "
                     f"(allowed {allowed:g} s: sustained-for + 2 samples)", TIMING)

    @checker(TIMING)
    def recovery(ctx: Context) -> Check:
        if relief is None:
            if mode == "manual" and not approvals:
                return Check("recovery", True, p95, "no tip was applied: nothing to recover", TIMING)
            return Check("recovery", UNKNOWN, p95, "the overload was never relieved: nothing to compare", TIMING)
        if p95["p95_after_ms"] is None or p95["p95_during_ms"] is None:
            return Check("recovery", UNKNOWN, p95, "no operation completed during the overload or "
                         "after the move: nothing to compare", TIMING)
        ok = p95["p95_after_ms"] < p95["p95_during_ms"]
        return Check("recovery", ok, p95, f"p95 {p95['p95_before_ms']} ms before, {p95['p95_during_ms']} ms "
                     f"during the overload, {p95['p95_after_ms']} ms after the move", TIMING)

    def figures(by: dict[str, Check], ctx: Context) -> dict[str, Any]:
        t0 = min((o.t0 for o in ops), default=0)
        return {"max_blackout_ms": None, **p95,
                "tips": [{"time": round((t["time"] - t0) / 1e9, 2), "rule": t["rule"], "host": t["host"],
                          "vm": t["vm"], "action": t["action"], "target": t["target"], "reason": t["reason"],
                          "applied": any(e.get("type") == Rec.TIP_APPLIED and e["tip"] == t["id"] and e["ok"]
                                         for e in events)}
                         for t in tips]}

    return judge(ctx, {"history": evidence, "outcomes": outcomes, "lost-writes": lost_writes, "tips": tips_check,
                       "tip-latency": tip_latency, "recovery": recovery, "latency": latency}, figures)
