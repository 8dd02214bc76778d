"""What the database clients saw: the checkers every scenario composes.

  outcomes    client-visible errors: fail (certainly not done) + info (outcome unknown); an op
              invoked but never completed (its client died) counts as info
  blackout    longest interval with no client completing an ok operation, from the end of the
              warm-up (the `warm` mark; at the latest once every client completed an operation:
              start-up and cold server caches are not an outage) to the end of the workload;
              also per client and per window (migration, backup freeze, fault)
  lost-writes every acknowledged write must be in the final read; a read of an acknowledged key
              that finds nothing is a lost write too
  latency     p50/p99/max of ok operations, inside vs outside the windows (figures only)
  server      the same database server answered before and after

An *outcome* (failed ops, lost writes) is the same on a fast host and a slow one; a *timing*
verdict (blackout against `max_blackout_ms`) is judged against a duration, and a shared TCG host's
durations vary 2-5x from hour to hour. results.json gives the verdict of each kind, so a user can
tell a broken guarantee from a missed SLO.
"""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

from ..dialects import DEFAULT_DATABASE, dialect
from ..records import Rec
from .core import OUTCOME, TIMING, UNKNOWN, Check, Checker, Context, Op, checker, stats


@checker(OUTCOME)
def outcomes(ctx: Context) -> Check:
    ops, allowed = ctx.ops, ctx.slo.max_failed_ops
    failed = sum(o.type == Rec.FAIL for o in ops)
    info = sum(o.type == Rec.INFO for o in ops)
    figs = {"ops": len(ops), "ok_ops": sum(o.type == Rec.OK for o in ops), "failed_ops": failed, "info_ops": info,
            "reads": sum(o.f == "read" for o in ops), "writes": sum(o.f == "write" for o in ops)}
    if not ops:
        return Check("outcomes", UNKNOWN, figs, "no operations were recorded")
    errors = sorted({f"{o.sqlstate}: {o.error}" for o in ops if o.type != Rec.OK})[:5]
    return Check("outcomes", failed + info <= allowed, figs,
                 f"{failed} failed + {info} indeterminate of {len(ops)} ops (allowed {allowed})"
                 + (f"; e.g. {errors}" if errors else ""))


def _workload_end(ctx: Context) -> int | None:
    stops = [int(r["t"]) for r in ctx.marks(Rec.WORKLOAD_STOP)]
    if stops:
        return max(stops)
    ends = [o.t1 for o in ctx.ops if o.t1 is not None]
    return max(ends) if ends else None


def _gaps(times: list[int], end: int | None, start: int | None = None) -> list[tuple[int, int]]:
    pts = sorted(t for t in times if start is None or t >= start)
    if start is not None:
        pts.insert(0, start)
    if end is not None and pts and end > pts[-1]:
        pts.append(end)
    return list(pairwise(pts))


def measured_from(ctx: Context) -> int | None:
    """Where gaps start to count: the `warm` mark (written once every client completed an
    operation and the warm-up ran), else the workload's start, and never after an event began. A
    client's first success is never the start: a client that connected late would hide what
    happened before it (issue 27)."""
    marks = ([int(r["t"]) for r in ctx.marks(Rec.WARM)]
             or [int(r["t"]) for r in ctx.marks(Rec.WORKLOAD_START)]
             or [o.t0 for o in ctx.ops])
    return min([*marks, *(int(w["t0"]) for w in ctx.windows)]) if marks else None


def blackout_checker(against_slo: bool = True) -> Checker:
    """The longest client-observed gap; `against_slo=False` gives the figures only (a fault's own
    timeouts set its gap: nothing to hold against the SLO). Evidence first: every window must be
    covered by a client that had already succeeded when it began, and a client that first
    succeeded only after a window began is named; either makes a gap within the SLO UNKNOWN."""
    @checker(TIMING)
    def blackout(ctx: Context) -> Check:
        oks = [o for o in ctx.ops if o.type == Rec.OK and o.t1 is not None]
        if not oks:
            return Check("blackout", UNKNOWN, {}, "no successful operation: blackout cannot be measured", TIMING)
        clients = sorted({o.client for o in ctx.ops})
        firsts = {c: min((o.t1 for o in oks if o.client == c and o.t1 is not None), default=None) for c in clients}
        never = [c for c, t in firsts.items() if t is None]
        if never:  # not a duration to compare with an SLO: these clients never had the service at all
            return Check("blackout", False, {"clients_without_ok": never},
                         f"client(s) {never} never completed an operation: a blackout for the whole run", OUTCOME)
        end = _workload_end(ctx)
        start = measured_from(ctx)
        assert start is not None  # there are operations
        gaps = _gaps([o.t1 for o in oks if o.t1 is not None], end, start)
        worst = max(gaps, key=lambda g: g[1] - g[0]) if gaps else (start, start)
        per_client = {}
        for c in clients:
            g = _gaps([o.t1 for o in oks if o.client == c and o.t1 is not None], end, start)
            per_client[str(c)] = round(max((b - a for a, b in g), default=0) / 1e6, 1)
        per_window = [_ms_or_none(max((b - a for a, b in gaps if b >= w["t0"] and a <= w["t1"]), default=None))
                      for w in ctx.windows]
        max_ms = round((worst[1] - worst[0]) / 1e6, 1)
        first = {c: t for c, t in firsts.items() if t is not None}
        doubts = _coverage(ctx.windows, first, end)
        figs = {"longest_blackout_ms": max_ms, "blackout_t0": worst[0], "blackout_t1": worst[1], "steady_from": start,
                "per_client_blackout_ms": per_client, "per_window_blackout_ms": per_window,
                **({"evidence_missing": doubts} if doubts else {})}
        allowed = ctx.slo.max_blackout_ms
        said = f"longest client-observed gap {max_ms} ms"
        if not against_slo:
            return Check("blackout", UNKNOWN if doubts else True, figs,
                         f"{said} (a figure)" + (f"; {'; '.join(doubts)}" if doubts else ""), TIMING)
        if max_ms > allowed:  # a breach that was measured stands, whatever else is missing
            return Check("blackout", False, figs, f"{said} (allowed {allowed:g} ms)", TIMING)
        if doubts:
            return Check("blackout", UNKNOWN, figs, f"{said}, but {'; '.join(doubts)}", TIMING)
        return Check("blackout", True, figs, f"{said} (allowed {allowed:g} ms)", TIMING)
    return blackout


def _ms_or_none(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 1)


def _coverage(windows: list[dict[str, Any]], first_ok: dict[int, int], end: int | None) -> list[str]:
    """What the blackout cannot vouch for: a window no client was already running in (nothing
    could see a gap there), one the workload stopped before it ended, a client whose first
    success came only after a window began (its view of that window is missing)."""
    doubts = []
    for i, w in enumerate(windows):
        what = f"{w.get('type', 'event')} {i + 1}"
        late = sorted(c for c, t in first_ok.items() if t > w["t0"])
        if len(late) == len(first_ok):
            doubts.append(f"no client had completed an operation when {what} began: nothing saw it")
        elif late:
            doubts.append(f"client(s) {late} first succeeded only after {what} began "
                          f"(the earliest {_ms_or_none(min(first_ok[c] for c in late) - w['t0'])} ms after)")
        if end is not None and w["t1"] > end:
            doubts.append(f"the workload stopped before {what} ended")
    return doubts


blackout = blackout_checker()


@checker(OUTCOME)
def lost_writes(ctx: Context) -> Check:
    ops, allowed = ctx.ops, ctx.slo.max_lost_writes
    finals = ctx.marks(Rec.FINAL_READ)
    acked = {o.key for o in ops if o.f == "write" and o.type == Rec.OK}
    figs: dict[str, Any] = {"acknowledged_writes": len(acked)}
    if not finals or not finals[-1].get("ok"):
        why = finals[-1].get("error") if finals else "no final read was recorded"
        return Check("lost-writes", UNKNOWN, figs, f"cannot check lost writes: {why}")
    present = set(finals[-1]["keys"])
    lost = sorted(acked - present)
    acked_at = {o.key: o.t1 for o in ops if o.f == "write" and o.type == Rec.OK and o.t1 is not None}
    unread = sorted({o.key for o in ops if o.f == "read" and o.type == Rec.OK and o.found is False
                     and o.key in acked_at and o.t0 > acked_at[o.key]})
    indeterminate = {o.key for o in ops if o.f == "write" and o.type == Rec.INFO}
    n = len(set(lost) | set(unread))
    figs.update(lost_writes=n, lost_keys=(lost + unread)[:20], reads_missing_acknowledged=len(unread),
                indeterminate_writes=len(indeterminate), indeterminate_writes_committed=len(indeterminate & present))
    return Check("lost-writes", n <= allowed, figs,
                 f"{n} acknowledged writes missing of {len(acked)} (allowed {allowed})")


def _inside(o: Op, windows: list[dict[str, Any]]) -> bool:
    return any(w["t0"] <= o.t0 <= w["t1"] for w in windows)


@checker(TIMING, judged=False)
def latency(ctx: Context) -> Check:
    inside_ms: list[float] = []
    outside_ms: list[float] = []
    for o in ctx.ops:
        if o.type == Rec.OK and o.latency_ms is not None:
            (inside_ms if _inside(o, ctx.windows) else outside_ms).append(o.latency_ms)
    if not inside_ms and not outside_ms:
        return Check("latency", UNKNOWN, {}, "no successful operation", TIMING)
    figs = {"latency_ms": stats(inside_ms + outside_ms), "latency_inside_migrations_ms": stats(inside_ms),
            "latency_outside_migrations_ms": stats(outside_ms)}
    inside = (f" (inside the {ctx.windows[0].get('type', 'event')} windows p99 "
              f"{figs['latency_inside_migrations_ms']['p99']} ms)" if ctx.windows else "")
    return Check("latency", True, figs,
                 f"p50 {figs['latency_ms']['p50']} ms, p99 {figs['latency_ms']['p99']} ms{inside}", TIMING)


RESTART_TOLERANCE_S = 2.0  # MariaDB's start time is now - Uptime: whole seconds, read at two moments


@checker(OUTCOME)
def server(ctx: Context) -> Check:
    """The same database server, never restarted, answered before and after. A migration moves
    the VM; it must not swap the server (a replica behind the same address would pass every other
    check) nor restart it (a guest that crashed and rebooted looks like lost connections only).
    Identity is what a replica or a restart cannot keep: the server's own instance id (PostgreSQL's
    system identifier, MariaDB's server id, SQL Server's name) and its start time; and where the lab
    owns the VM, the guest kernel's boot id (a reboot, whatever the database says) and what its
    console printed of a kernel failure (a panic names its cause; an oops may not even reboot)."""
    ids = ctx.marks(Rec.SERVER_IDENTITY)
    db = ctx.database
    first = ids[0] if ids else {}
    figs = {"database": db, "server": first.get("server"), "server_version": first.get("version"),
            "instance": first.get("instance"), "started_at": first.get("started_at"), "boot_id": first.get("boot_id")}
    if len(ids) < 2:
        return Check("server", UNKNOWN, figs, "server identity recorded only once" if ids else "no server identity")
    boots = [(a, b) for a, b in pairwise(ids) if a.get("boot_id") and b.get("boot_id") and a["boot_id"] != b["boot_id"]]
    crash = next((r["kernel_crash"] for r in ids[1:] if r.get("kernel_crash")), None)
    if crash:  # the guest kernel's own words on the console the lab keeps: the cause, not just the reboot
        figs["kernel_crash"] = crash
        rebooted = (f" and rebooted (boot id {boots[0][0]['boot_id']}, then {boots[0][1]['boot_id']})"
                    if boots else "")
        known = [c for r in ctx.marks(Rec.ENVIRONMENT) for c in r.get("caveats") or []]
        return Check("server", False, figs, f"{db}: the guest kernel crashed{rebooted}; its console says: "
                     + " / ".join(crash) + (f". A known cause on this lab's emulator: {known[0]}" if known else ""))
    names = {(r.get("server"), r.get("version"), r.get("instance")) for r in ids}
    if len(names) > 1:
        return Check("server", False, figs, f"{db}: different servers answered: {sorted(map(str, names))}")
    starts = [r.get("started_at") for r in ids]
    if any(s is None for s in starts) or first.get("instance") is None:
        return Check("server", UNKNOWN, figs, f"{db}: the same server name answered, but without its instance id "
                     "and start time a replica or a restart could not be told apart")
    if boots:  # the guest's own kernel says it: read through its agent where the lab owns the VM
        a, b = boots[0]
        return Check("server", False, {**figs, "boot_id_after": b["boot_id"]},
                     f"{db}: the guest rebooted (boot id {a['boot_id']} read {a.get('when', 'earlier')}, "
                     f"{b['boot_id']} {b.get('when', 'later')}): a crash, a reset or a restart")
    moved = restarts(ids)
    if moved:
        a, b = moved[0]
        return Check("server", False, {**figs, "restarted_at": b["started_at"]},
                     f"{db}: the database restarted at {_utc(float(b['started_at']))} (between the identity read "
                     f"{a.get('when', 'earlier')} and the one {b.get('when', 'later')}): a crash, a reboot or a failover")
    return Check("server", True, figs, f"{db}: the same server answered before and after ({first.get('server')}, "
                 f"instance {first.get('instance')}, up since {_utc(float(first['started_at']))})")


def restarts(ids: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The pairs of successive server-identity reads between which the server's start time moved
    (it restarted in between): what the server check fails on, and what a watch sets beside an
    outage. Reads without a start time are skipped."""
    known = [r for r in ids if r.get("started_at") is not None]
    return [(a, b) for a, b in pairwise(known) if abs(float(b["started_at"]) - float(a["started_at"])) > RESTART_TOLERANCE_S]


def _utc(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def never_back(ops: list[Op], errors: list[Op]) -> tuple[set[int], set[int]]:
    """The clients `errors` hit, and those of them that completed no operation after their last
    error: what connection_loss and a watch's errors figure both ask."""
    hit = {o.client for o in errors}
    last = {c: max(o.t1 or o.t0 for o in errors if o.client == c) for c in hit}
    back = {o.client for o in ops if o.type == Rec.OK and o.client in hit and o.t0 >= last[o.client]}
    return hit, hit - back


@checker(OUTCOME)
def connection_loss(ctx: Context) -> Check:
    """After the server ends the sessions: each error must be one the profile recognises as a
    lost connection (else a real statement error, or a wrongly judged write, hides in the noise),
    and every client that lost its connection must complete an operation after its last error."""
    ops = ctx.ops
    d = dialect(ctx.database or DEFAULT_DATABASE)
    bad = [o for o in ops if o.type != Rec.OK]
    unrecognised = [o for o in bad if not d.is_connection_error(o.sqlstate, o.error or "")]
    failed_writes = [o for o in bad if o.f == "write" and o.type == Rec.FAIL]
    hit, lagging = never_back(ops, bad)
    figs = {"ops": len(ops), "failed_ops": sum(o.type == Rec.FAIL for o in bad),
            "info_ops": sum(o.type == Rec.INFO for o in bad), "unrecognised": len(unrecognised),
            "clients_hit": len(hit), "errors": sorted({f"{o.sqlstate}: {(o.error or '')[:120]}" for o in bad})[:5]}
    if not ctx.windows or not ops:
        return Check("outcomes", UNKNOWN, figs, "no fault or no operation recorded")
    problems = ([f"{len(unrecognised)} errors not recognised as a lost connection: "
                 f"{sorted({(o.sqlstate or '', (o.error or '')[:80]) for o in unrecognised})[:3]}"] if unrecognised else [])
    problems += [f"{len(failed_writes)} writes judged failed"] if failed_writes else []
    problems += [f"clients {sorted(lagging)} never recovered"] if lagging else []
    msg = (f"{d.name}: {len(bad)} client-visible errors on {len(hit)} clients, all recognised as lost "
           f"connections; every client reconnected" if not problems else "; ".join(problems))
    return Check("outcomes", not problems, figs, msg)
