"""A watch (runbook 50, `availlab watch`): did the clients notice what someone else's tool did?

The clients' checkers judge it as they judge availlab's own migrations; the windows are what the
watch knows of the mover: the operator's command (`command`), the pauses a read-only watcher saw
the hypervisor make (`paused`), and the operator's marks. Two checkers are the watch's own:

  outages   every interruption the clients saw that is longer than the run's quiet moments
            (`outage_floor_ms`: three times the 99th percentile of the gaps between the clients'
            completions, at least 50 ms), with what announced it (the operator's command, a mark)
            and the pauses the hypervisor made in it, and a restart of the database inside it
            (its start time moved between the identity reads); one nothing announced is named
            "unexplained", whatever the hypervisor or the database did. A figure: the SLO is the blackout check's,
            and it holds for every gap, announced or not.
  command   the operator's command ended with exit code 0 (a mover that failed proves nothing
            about availability while a VM moves).
  errors    the clients' errors told apart: lost connections (and whether each client came back)
            from failed statements (a figure; `outcomes` judges them).
"""

from __future__ import annotations

import bisect
import time
from itertools import pairwise
from typing import Any

from ..dialects import DEFAULT_DATABASE, dialect
from ..records import Rec, paused_windows, windows
from .client import (
    RESTART_TOLERANCE_S,
    blackout,
    latency,
    lost_writes,
    measured_from,
    never_back,
    outcomes,
    restarts,
    server,
)
from .core import (
    OUTCOME,
    SLO,
    TIMING,
    UNKNOWN,
    Check,
    Checker,
    Context,
    Results,
    checker,
    could_not,
    evidence,
    judge,
    percentile,
)
from .probe import probe, probe_times

FLOOR_MIN_MS = 50.0
MARK_BEFORE_S = 5.0  # an operator's mark this long before an outage began still announces it


def outage_floor_ms(gaps_ms: list[float]) -> float:
    return max(FLOOR_MIN_MS, 3 * (percentile(gaps_ms, 99) or 0.0))


def _label(w: dict[str, Any]) -> str:
    if w.get("type") == Rec.PAUSED:
        return f"paused on {w.get('host')} ({w.get('why')}), resumed on {w.get('resumed_on')}"
    if w.get("type") == Rec.COMMAND:
        argv = [str(a) for a in w.get("argv", [])]  # its program and first word: a URI would drown it
        return f"command ({' '.join([argv[0].rsplit('/', 1)[-1], *argv[1:2]]) if argv else '?'} …)"
    return str(w.get("type"))


def _utc_ms(epoch_s: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch_s)) + f".{int(epoch_s * 1000) % 1000:03d}"


def _restarts(ctx: Context, anchor: tuple[int, float] | None) -> list[tuple[int, str]]:
    """When the database started again, on the history's clock: each restart the identity reads
    show (checks.client.restarts), put on the clients' clock by the server's clock offset read
    with it (a guest's clock lags by as long as it was paused). Only two reads are made (before,
    after), so two restarts in one watch show as the last."""
    if anchor is None:
        return []
    walls = sorted({float(b["started_at"]) - float(b.get("clock_offset_s") or 0.0)
                    for _, b in restarts(ctx.marks(Rec.SERVER_IDENTITY))})
    return [(anchor[0] + int((wall - anchor[1]) * 1e9), _utc_ms(wall)) for wall in walls]


def _who_saw(ops: list[Any], pts: list[int], a: int, b: int) -> dict[str, Any]:
    """Who saw the outage [a, b]: the clients with an operation in flight or failing in it (none
    completed one inside it, or it would not be one), and the probe's own longest gap across it
    (None: no probe ran on both sides), a second witness at a finer resolution."""
    hit = sorted({o.client for o in ops if o.t0 < b and (o.t1 is None or o.t1 > a)})
    i, j = bisect.bisect_left(pts, a), bisect.bisect_right(pts, b)
    chain = pts[max(0, i - 1):j + 1]
    gap = max((y - x for x, y in pairwise(chain)), default=None) if i > 0 and j < len(pts) else None
    return {"clients": hit, "probe_gap_ms": None if gap is None else round(gap / 1e6, 1)}


@checker(TIMING, judged=False)
def outages(ctx: Context) -> Check:
    start, ops = measured_from(ctx), ctx.ops  # ops paired once: each outage asks who saw it
    oks = sorted(o.t1 for o in ops if o.type == Rec.OK and o.t1 is not None and (start is None or o.t1 >= start))
    if len(oks) < 2:
        return Check("outages", UNKNOWN, {}, "too few completions to find an outage", TIMING)
    gaps = list(pairwise(oks))
    floor = outage_floor_ms([(b - a) / 1e6 for a, b in gaps])
    marks = ctx.of_type(Rec.MARK)
    wall = {int(r["t"]): float(r["wall"]) for r in ctx.history if r.get("type") == Rec.CLOCK and "wall" in r}
    anchor = next(iter(wall.items()), None)
    restarts = _restarts(ctx, anchor)
    slack = int(RESTART_TOLERANCE_S * 1e9)
    pts = probe_times(ctx.history)
    found: list[dict[str, Any]] = []
    for a, b in gaps:
        if (b - a) / 1e6 <= floor:
            continue
        over = [w for w in ctx.windows if a <= w["t1"] and b >= w["t0"]]
        said = [_label(w) for w in over if w.get("type") != Rec.PAUSED]
        said += [f"mark: {m.get('text')}" for m in marks if a - MARK_BEFORE_S * 1e9 <= int(m["t"]) <= b]
        at = _utc_ms(anchor[1] + (a - anchor[0]) / 1e9) if anchor else None
        found.append({"t0": a, "t1": b, "ms": round((b - a) / 1e6, 1), "at": at, **_who_saw(ops, pts, a, b),
                      "announced_by": said,
                      "hypervisor": [_label(w) for w in over if w.get("type") == Rec.PAUSED],
                      "database": [], "explained": bool(said)})
    for t, at_s in restarts:  # each restart beside the one outage nearest to it, if near enough
        near = min(found, key=lambda o: max(o["t0"] - t, t - o["t1"], 0), default=None)
        if near is not None and near["t0"] - slack <= t <= near["t1"] + slack:
            near["database"].append(f"the database restarted (up again at {at_s})")
    unexplained = [o for o in found if not o["explained"]]
    figs = {"outage_floor_ms": round(floor, 1), "outages": found, "unexplained_outages": len(unexplained)}
    said_all = "; ".join(f"{'unexplained outage' if not o['explained'] else 'outage'} at {o['at'] or o['t0']} "
                         f"for {o['ms']} ms" + "".join(f" ({', '.join(x)})" for x in (o["announced_by"], o["hypervisor"],
                                                                                       o["database"]) if x)
                         for o in found)
    return Check("outages", True, figs, f"{len(found)} interruption(s) longer than {figs['outage_floor_ms']} ms"
                 + (f": {said_all}" if said_all else ""), TIMING)


@checker(OUTCOME)
def command(ctx: Context) -> Check:
    started, ended = ctx.of_type(Rec.COMMAND_START), ctx.of_type(Rec.COMMAND)
    if not started:
        return Check("command", UNKNOWN, {}, "the command was not started")
    if not ended:
        return Check("command", UNKNOWN, {"argv": started[0].get("argv")}, "the command never ended (the run was cut short)")
    c = ended[0]
    figs = {"argv": c.get("argv"), "exit_code": c.get("exit_code"), "command_ms": round((c["t1"] - c["t0"]) / 1e6, 1),
            "output": c.get("output")}
    if c.get("exit_code") != 0:
        return Check("command", False, figs, f"the command exited with {c.get('exit_code')}: {c.get('tail', '')[-300:]}")
    return Check("command", True, figs, f"the command ran {figs['command_ms']} ms and exited 0")


@checker(OUTCOME, judged=False)
def errors(ctx: Context) -> Check:
    """What the clients' errors were, told apart by the database's profile: lost connections (the
    server went away: a move, a restart) from failed statements (a real SQL error), and whether
    every client that lost its connection completed an operation afterwards. A figure: the
    outcomes check already fails on any error; this says which kind, for the report."""
    d = dialect(ctx.database or DEFAULT_DATABASE)
    bad = [o for o in ctx.ops if o.type != Rec.OK]
    lost = [o for o in bad if d.is_connection_error(o.sqlstate, o.error or "")]
    hit, lagging = never_back(ctx.ops, lost)
    statements = [o for o in bad if o not in lost]
    figs = {"lost_connections": len(lost), "statement_errors": len(statements), "clients_hit": sorted(hit),
            "clients_never_back": sorted(lagging),
            "examples": sorted({f"{o.sqlstate}: {(o.error or '')[:120]}" for o in bad})[:5]}
    if not bad:
        return Check("errors", True, figs, "no client saw an error")
    return Check("errors", not statements and not lagging, figs,
                 f"{len(lost)} lost connection(s) on client(s) {sorted(hit)}"
                 + (f", {len(lagging)} never back" if lagging else ", every one reconnected")
                 + f"; {len(statements)} statement error(s)")


def checkers(with_command: bool, read_only: bool = False) -> dict[str, Checker]:
    return {"history": evidence, "outcomes": outcomes, "blackout": blackout,
            "lost-writes": could_not("not run: a read-only watch writes nothing to lose", judged=False) if read_only else lost_writes,
            "latency": latency, "probe": probe, "outages": outages, "errors": errors, "server": server,
            **({"command": command} if with_command else {})}


def watch_figures(by: dict[str, Check], ctx: Context) -> dict[str, Any]:
    """What results.json and the report show of a watch: each outage with what it overlaps, the
    operator's command, and each pause the watcher saw beside the clients' longest gap in it."""
    gaps = [(o["t0"], o["t1"]) for o in by["outages"].figures.get("outages", [])] if "outages" in by else []
    jobs = sorted((e for e in ctx.of_type(Rec.WATCH_EVENT) if e.get("event") == "migration-completed"),
                  key=lambda e: e["t"])
    pauses = [{"host": w["host"], "resumed_on": w["resumed_on"], "why": w["why"], "paused_ms": w["ms"],
               # libvirt's own downtime, from the target's job statistics read just after it resumed
               "libvirt_downtime_ms": next((j.get("downtime_ms") for j in jobs
                                            if j["t"] >= w["t1"] and j.get("host") == w["resumed_on"]), None)
               if w["why"] == "migrated" else None,
               "client_gap_ms": max((round((b - a) / 1e6, 1) for a, b in gaps if a <= w["t1"] and b >= w["t0"]),
                                    default=None)}
              for w in paused_windows(ctx.events)]
    out = {"outages": by["outages"].figures.get("outages", []) if "outages" in by else [],
           "unexplained_outages": by["outages"].figures.get("unexplained_outages") if "outages" in by else None,
           "hypervisor_pauses": pauses, "watcher": next((e for e in ctx.of_type(Rec.WATCH_STOP)), None),
           "marks": [{"t": m["t"], "text": m.get("text")} for m in ctx.of_type(Rec.MARK)]}
    if "command" in by:
        out["command"] = by["command"].figures
    return out


def check_watch(history: list[dict[str, Any]], events: list[dict[str, Any]], slo: SLO,
                with_command: bool, read_only: bool = False) -> Results:
    ctx = Context(history, events, slo, windows=windows(events))
    return judge(ctx, checkers(with_command, read_only), watch_figures)
