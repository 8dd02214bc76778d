"""Runbook 30, dynamic resources: did a tip fire, did the mode keep its promise, did it help?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from ..records import Rec
from .client import latency, lost_writes, outcomes
from .core import OUTCOME, SLO, TIMING, UNKNOWN, Check, Context, Results, checker, evidence, judge, percentile


class RuleLike(Protocol):
    threshold: float
    sustained_s: float


@dataclass(frozen=True)
class _Overload:
    """What runbook 30's checks read from the evidence: the overload, the tips, the moves."""
    mode: str
    interval_s: float
    threshold: float  # the lowest rule's: a crossing of any rule counts
    sustained_s: float
    events: list[dict[str, Any]]
    t_hog: int | None
    tips: list[dict[str, Any]]
    migs: list[dict[str, Any]]  # completed migrations
    starts: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    relief: int | None  # when the first move after the overload completed
    p95: dict[str, float | None]

    def crossing(self) -> int | None:
        """When a host's sampled CPU first crossed the threshold after the overload began."""
        return next((s["t"] for s in self.events if s.get("type") == Rec.SAMPLE and self.t_hog
                     and s["t"] >= self.t_hog and any(h["cpu"] > self.threshold for h in s["hosts"].values())), None)


def _overload(ctx: Context, rules: Sequence[RuleLike], mode: str, interval_s: float, settle_s: float) -> _Overload:
    ops = ctx.ops
    t_hog = next((e["t"] for e in ctx.events if e.get("type") == Rec.OVERLOAD_START), None)
    warm = next((r["t"] for r in ctx.history if r.get("type") == Rec.WARM), 0)
    migs = [e for e in ctx.of_type(Rec.MIGRATION) if e.get("ok")]
    relief = migs[0]["t1"] if migs and t_hog and migs[0]["t0"] > t_hog else None

    def lat(a: int, b: int) -> list[float]:
        return [o.latency_ms for o in ops if o.type == Rec.OK and a <= o.t0 < b and o.latency_ms]

    end = max((o.t1 or o.t0) for o in ops) if ops else 0
    p95 = {"p95_before_ms": percentile(lat(warm, t_hog or end), 95),
           "p95_during_ms": percentile(lat(t_hog or end, relief or end), 95),
           "p95_after_ms": percentile(lat(relief + int(settle_s * 1e9), end), 95) if relief else None}
    return _Overload(mode, interval_s, min(r.threshold for r in rules), min(r.sustained_s for r in rules),
                     ctx.events, t_hog, ctx.of_type(Rec.TIP), migs, ctx.of_type(Rec.MIGRATION_START),
                     ctx.of_type(Rec.TIP_APPROVED), relief, p95)


def _tips(o: _Overload, ctx: Context) -> Check:
    """The outcome: a tip fired, and the mode's promise about moves was kept."""
    if not o.tips:
        return Check("tips", False, {}, "no tip fired during the overload")
    figs = {"tips": len(o.tips)}
    moving = [t for t in o.tips if t.get("action") == "migrate"] or o.tips
    if o.mode == "automatic":
        first = moving[0]
        after = [m for m in o.migs if m["t0"] >= first["t"] and m["source"] == first["host"]]
        if not after:
            tried = [e for e in o.starts if e["t"] >= first["t"] and e.get("source") == first["host"]]
            return Check("tips", False, figs, "automatic mode, but " + (
                "the migration that followed the tip failed" if tried else "no migration followed the tip"))
        return Check("tips", True, figs, f"a tip fired and {after[0]['vm']} was moved "
                     f"{after[0]['source']} -> {after[0]['target']} ({len(o.tips)} tip(s))")
    early = [s for s in o.starts if not o.approvals or s["t"] < o.approvals[0]["t"]]
    if early:
        return Check("tips", False, figs, f"manual mode, but {len(early)} migration(s) began without approval")
    if o.approvals and not [m for m in o.migs if m["t0"] >= o.approvals[0]["t"]]:
        return Check("tips", False, figs, "manual mode: the approved migration did not complete")
    return Check("tips", True, figs, "manual mode: nothing moved before approval"
                 + ("; the approved move completed" if o.approvals else ""))


def _tip_latency(o: _Overload, ctx: Context) -> Check:
    """The timing: how soon after the host crossed the threshold the move began."""
    allowed = o.sustained_s + 2 * o.interval_s
    if o.mode != "automatic":
        return Check("tip-latency", True, {}, "manual mode: the operator decides when", TIMING)
    t_cross = o.crossing()
    moves = [e for e in o.starts if o.tips and e["t"] >= o.tips[0]["t"]]
    if not moves or t_cross is None:
        return Check("tip-latency", UNKNOWN, {}, "no automatic move after a sampled crossing to time", TIMING)
    lag = (moves[0]["t"] - t_cross) / 1e9
    return Check("tip-latency", lag <= allowed, {"crossing_to_migration_s": round(lag, 2)},
                 f"migration began {lag:.1f} s after the host crossed {o.threshold:g}% "
                 f"(allowed {allowed:g} s: sustained-for + 2 samples)", TIMING)


def _recovery(o: _Overload, ctx: Context) -> Check:
    """The timing: the response time after the move against during the overload."""
    p95 = o.p95
    if o.relief is None:
        if o.mode == "manual" and not o.approvals:
            return Check("recovery", True, p95, "no tip was applied: nothing to recover", TIMING)
        return Check("recovery", UNKNOWN, p95, "the overload was never relieved: nothing to compare", TIMING)
    after, during = p95["p95_after_ms"], p95["p95_during_ms"]
    if after is None or during is None:
        return Check("recovery", UNKNOWN, p95, "no operation completed during the overload or "
                     "after the move: nothing to compare", TIMING)
    return Check("recovery", after < during, p95, f"p95 {p95['p95_before_ms']} ms before, {during} ms "
                 f"during the overload, {after} ms after the move", TIMING)


def _figures(o: _Overload, by: dict[str, Check], ctx: Context) -> dict[str, Any]:
    t0 = min((op.t0 for op in ctx.ops), default=0)
    return {"longest_blackout_ms": None, **o.p95,
            "tips": [{"time": round((t["time"] - t0) / 1e9, 2), "rule": t["rule"], "host": t["host"],
                      "vm": t["vm"], "action": t["action"], "target": t["target"], "reason": t["reason"],
                      "applied": any(e.get("type") == Rec.TIP_APPLIED and e["tip"] == t["id"] and e["ok"]
                                     for e in o.events)}
                     for t in o.tips]}


def check_dynamic(history: list[dict[str, Any]], events: list[dict[str, Any]], slo: SLO, rules: Sequence[RuleLike],
                  mode: str, interval_s: float, settle_s: float = 2.0) -> Results:
    ctx = Context(history, events, slo)
    o = _overload(ctx, rules, mode, interval_s, settle_s)
    return judge(ctx, {"history": evidence, "outcomes": outcomes, "lost-writes": lost_writes,
                       "tips": checker(OUTCOME)(partial(_tips, o)), "tip-latency": checker(TIMING)(partial(_tip_latency, o)),
                       "recovery": checker(TIMING)(partial(_recovery, o)), "latency": latency}, partial(_figures, o))


