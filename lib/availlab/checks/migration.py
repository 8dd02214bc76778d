"""Runbook 10 (and the soak): did the clients notice the live migrations?"""

from __future__ import annotations

from typing import Any

from ..records import Rec
from .client import blackout, latency, lost_writes, outcomes, server
from .core import OUTCOME, SLO, UNKNOWN, Check, Checker, Context, Results, checker, evidence, judge
from .probe import explained, probe


@checker(OUTCOME)
def migrations(ctx: Context) -> Check:
    ms = ctx.of_type(Rec.MIGRATION)
    failed = [m for m in ms if not m.get("ok")]
    figs = {"migrations": len(ms), "failed_migrations": len(failed)}
    if not ms:
        return Check("migrations", UNKNOWN, figs, "no migration was recorded")
    return Check("migrations", not failed, figs,
                 f"{len(ms) - len(failed)}/{len(ms)} migrations completed"
                 + (f"; failed: {[m.get('error') for m in failed]}" if failed else ""))


def checkers(history: list[dict[str, Any]]) -> dict[str, Checker]:
    # the server check always: a run without identity evidence is UNKNOWN, never a check left out
    return {"history": evidence, "outcomes": outcomes, "blackout": blackout, "lost-writes": lost_writes,
            "latency": latency, "migrations": migrations, "probe": probe, "explained": explained, "server": server}


def check_run(history: list[dict[str, Any]], events: list[dict[str, Any]], slo: SLO) -> Results:
    ctx = Context(history, events, slo, windows=[e for e in events if e.get("type") == Rec.MIGRATION])
    return judge(ctx, checkers(history))
