"""The probe's checkers: the blackout at a known resolution, and each migration's blackout explained.

The workload clients' gaps mix an outage with their own statements' latency. The probe
(availlab.clients.probe) runs the cheapest statement every few ms on a connection of its own, so:

  probe      it runs fast (every `probe_interval_ms`) inside every migration and backup and for
             the last 2 s of the warm-up (its calibration), slowly otherwise (it costs the workload). Its fast
             spacing outside any event is the resolution a blackout is measured at
             (`blackout_resolution_ms`, the median); its longest fast gap outside any event is the
             noise floor (a blackout no longer than that is indistinguishable from a quiet moment);
             its longest gap inside each window is the blackout at that resolution
  explained  per migration, the gap that spans the pause cut in three on one clock: before the
             pause (the last completion -> libvirt suspends the source), paused (-> the target
             resumes, both from libvirt's lifecycle events), after resume (-> the first completion:
             TCP resending what the pause lost, and on TCG the target translating the guest's code
             afresh; KubeVirt's downtime excludes it, clients do not), with
             libvirt's own `downtime` / `downtime_net` and the client namespace's TCP
             retransmissions during the migration beside it; after a post-copy switch, the
             clients' latency in the post-copy phase (the brownout) against the rest of the run

Both are figures, never a verdict: the SLO is judged on what the clients saw (checks.client).
Without a probe (probe_interval_ms 0) `explained` uses the clients' completions instead.
"""

from __future__ import annotations

import bisect
from itertools import pairwise
from typing import Any

from ..records import Rec
from .core import TIMING, Check, Context, Op, checker, percentile, stats


def probe_times(history: list[dict[str, Any]]) -> list[int]:
    return sorted(int(r["t"]) for r in history if r.get("type") == Rec.PROBE and r.get("ok"))


def _overlaps(a: int, b: int, t0: int, t1: int) -> bool:
    return a <= t1 and b >= t0


def _ms(ns: float) -> float:
    return round(ns / 1e6, 1)


def fast_spans(history: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """When the probe ran at its fast period: from its `probe-mode` records (fast inside the run's
    events and while calibrating at the end of the warm-up). A span ends at a switch to slow, at
    the probe's stop, or, for a probe that was killed, at its last record; a probe that records no
    modes at all ran fast throughout."""
    kinds = (Rec.PROBE_START, Rec.PROBE_MODE, Rec.PROBE_STOP, Rec.PROBE, Rec.TCP)
    recs = sorted((r for r in history if r.get("type") in kinds), key=lambda r: int(r["t"]))
    if not any(r["type"] == Rec.PROBE_MODE for r in recs):
        return [(int(recs[0]["t"]), int(recs[-1]["t"]))] if recs else []
    spans: list[tuple[int, int]] = []
    since: int | None = None
    last = 0
    for r in recs:
        t, kind = int(r["t"]), r["type"]
        if kind == Rec.PROBE_START and since is not None:  # the previous probe ended unrecorded
            spans.append((since, last))
            since = None
        elif kind == Rec.PROBE_MODE and r.get("fast") and since is None:
            since = t
        elif (kind == Rec.PROBE_MODE and not r.get("fast") or kind == Rec.PROBE_STOP) and since is not None:
            spans.append((since, t))
            since = None
        last = t
    if since is not None:
        spans.append((since, last))
    return spans


def _within(a: int, b: int, spans: list[tuple[int, int]], starts: list[int]) -> bool:
    i = bisect.bisect_right(starts, a) - 1  # spans are sorted and do not overlap
    return i >= 0 and b <= spans[i][1]


def event_spans(ctx: Context, after_ns: int = 500 * 10**6) -> list[tuple[int, int]]:
    """Every event's whole interval (a migration, a whole backup, a fault), and the judged windows,
    each with `after_ns` more: a quiet moment is one with no event and none just ended."""
    spans = [(int(e["t0"]), int(e["t1"]) + after_ns) for e in ctx.events
             if isinstance(e.get("t0"), int) and isinstance(e.get("t1"), int)]
    return sorted(spans + [(int(w["t0"]), int(w["t1"]) + after_ns) for w in ctx.windows])


@checker(TIMING, judged=False)
def probe(ctx: Context) -> Check:
    """Figures, never a verdict (a probe that failed must not turn a run the clients passed into
    UNKNOWN): what it could not measure, it says."""
    started = ctx.marks(Rec.PROBE_START)
    runs = ctx.marks(Rec.PROBE)
    if not started and not runs:
        return Check("probe", True, {}, "no probe ran (probe_interval_ms 0)", TIMING)
    interval = started[0].get("interval_ms") if started else None
    failed = sum(not r.get("ok") for r in runs)
    spans = fast_spans(ctx.history)
    starts = [a for a, _ in spans]
    pts = probe_times(ctx.history)
    figs: dict[str, Any] = {"probe_interval_ms": interval, "probes": len(runs), "probe_failures": failed,
                            "probe_fast_s": round(sum(b - a for a, b in spans) / 1e9, 2)}
    # only gaps with both ends in a fast span measure anything: a slow one is the probe resting
    gaps = [(a, b) for a, b in pairwise(pts) if _within(a, b, spans, starts)]
    if not gaps:
        return Check("probe", True, figs, f"the probe completed no two statements in a row at its fast period "
                     f"({len(runs)} statements, {failed} failed): no resolution to state", TIMING)
    busy = event_spans(ctx)
    outside = [b - a for a, b in gaps if not any(_overlaps(a, b, e0, e1) for e0, e1 in busy)]
    spacing = outside or [b - a for a, b in gaps]
    worst = max(gaps, key=lambda g: g[1] - g[0])
    per_window = [max((b - a for a, b in gaps if _overlaps(a, b, w["t0"], w["t1"])), default=None) for w in ctx.windows]
    figs.update(blackout_resolution_ms=percentile([x / 1e6 for x in spacing], 50),
                probe_spacing_p99_ms=percentile([x / 1e6 for x in spacing], 99),
                noise_floor_ms=_ms(max(outside)) if outside else None,
                probe_max_blackout_ms=_ms(worst[1] - worst[0]), probe_blackout_t0=worst[0], probe_blackout_t1=worst[1],
                per_window_probe_blackout_ms=[_ms(g) if g is not None else None for g in per_window])
    floor = f", noise floor {figs['noise_floor_ms']} ms outside any event" if outside else ""
    return Check("probe", True, figs,
                 f"probe every {interval} ms in events and calibration ({figs['probe_fast_s']} s): resolution "
                 f"{figs['blackout_resolution_ms']} ms{floor}; longest probe gap {figs['probe_max_blackout_ms']} ms; "
                 f"{failed} probe statements failed", TIMING)


def tcp_samples(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((r for r in history if r.get("type") == Rec.TCP), key=lambda r: int(r["t"]))


def tcp_delta(samples: list[dict[str, Any]], t0: int, t1: int) -> dict[str, int] | None:
    """Growth of the client namespace's TCP counters over [t0, t1]: from the last sample (of
    `tcp_samples`) at or before t0 to the first at or after t1 (the probe samples every 100 ms);
    None without both."""
    ts = [int(r["t"]) for r in samples]
    i, j = bisect.bisect_right(ts, t0) - 1, bisect.bisect_left(ts, t1)
    if i < 0 or j >= len(samples):
        return None
    a, b = samples[i], samples[j]
    return {k: int(b[k]) - int(a[k]) for k in b if k not in ("type", "t") and k in a}


def explain_one(m: dict[str, Any], pts: list[int], tcp: list[dict[str, Any]], source: str) -> dict[str, Any] | None:
    """One migration's blackout cut in three (see the module's docstring), or None when it has no
    pause on record (it failed, or libvirt's lifecycle events were not seen) or no completion
    before it."""
    paused = next((p for p in m.get("phases", []) if p.get("phase") == "paused"), None)
    if not m.get("ok") or paused is None:
        return None
    suspended, resumed = int(paused["t0"]), int(paused["t1"])
    i = bisect.bisect_left(pts, suspended)
    if i == 0 or i >= len(pts):
        return None
    a, b = pts[i - 1], pts[i]  # the gap the pause falls in
    stats = m.get("stats") or {}
    return {"source": source, "blackout_ms": _ms(b - a), "before_pause_ms": _ms(suspended - a),
            "paused_ms": _ms(min(resumed, b) - suspended), "after_resume_ms": _ms(max(0, b - resumed)),
            "libvirt_downtime_ms": m.get("downtime_ms"), "downtime_net_ms": stats.get("downtime_net"),
            "tcp": tcp_delta(tcp, int(m["t0"]), int(m["t1"]))}


def brownout(m: dict[str, Any], ops: list[Op]) -> dict[str, Any] | None:
    """After a post-copy switch the target runs while it faults each missing page from the source:
    no blackout, a brownout. The clients' latency inside that phase against the rest of the run
    says how deep it was; None for a migration without a post-copy phase."""
    phase = next((p for p in m.get("phases", []) if p.get("phase") == "post-copy"), None)
    if phase is None:
        return None
    a, b = int(phase["t0"]), int(phase["t1"])
    oks = [o for o in ops if o.type == Rec.OK and o.latency_ms is not None]
    inside = [o.latency_ms for o in oks if a <= o.t0 <= b and o.latency_ms is not None]
    outside = [o.latency_ms for o in oks if not a <= o.t0 <= b and o.latency_ms is not None]
    return {"phase_ms": _ms(b - a), "latency_ms": stats(inside), "latency_elsewhere_ms": stats(outside),
            "failed_ops": sum(o.type != Rec.OK and a <= o.t0 <= b for o in ops)}


@checker(TIMING, judged=False)
def explained(ctx: Context) -> Check:
    migrations = ctx.of_type(Rec.MIGRATION)
    spans = fast_spans(ctx.history)
    starts = [a for a, _ in spans]
    # the probe's completions at its fast period only: its 100 ms rest would cut coarsely
    pts, source = [t for t in probe_times(ctx.history) if _within(t, t, spans, starts)], "probe"
    if len(pts) < 2:
        pts = sorted(o.t1 for o in ctx.ops if o.type == Rec.OK and o.t1 is not None)
        source = "clients"
    tcp = tcp_samples(ctx.history)
    rows = [explain_one(m, pts, tcp, source) for m in migrations]
    figs: dict[str, Any] = {"explained": rows, "postcopy_brownout": [brownout(m, ctx.ops) for m in migrations]}
    if not migrations:
        return Check("explained", True, figs, "no migration to explain", TIMING)
    # a figure, never a verdict: a migration that failed, or whose lifecycle events were not
    # seen, has nothing to cut in three, and says so
    parts = "; ".join(f"#{i + 1} " + (f"{r['before_pause_ms']} + {r['paused_ms']} paused + {r['after_resume_ms']} after resume"
                                      + (f", {r['tcp'].get('retrans_segs', 0)} TCP retransmissions" if r["tcp"] else "")
                                      if r else "not explained (failed, or no pause on record)")
                      for i, r in enumerate(rows))
    brown = "".join(f"; #{i + 1} post-copy phase {b['phase_ms']} ms: client p99 {b['latency_ms']['p99']} ms "
                    f"(elsewhere {b['latency_elsewhere_ms']['p99']})"
                    for i, b in enumerate(figs["postcopy_brownout"]) if b)
    return Check("explained", True, figs, f"blackout around each pause ({source}), ms: {parts}{brown}", TIMING)
