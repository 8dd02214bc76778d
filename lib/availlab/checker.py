"""Checkers: pure functions of the recorded history -> verdict true | false | "unknown".

The history is on disk before any checker runs; a checker that crashes yields "unknown" with its
error, never a silent pass. Verdict: any false -> FAIL, else any unknown -> UNKNOWN, else PASS.

  outcomes    client-visible errors: fail (certainly not done) + info (outcome unknown); an op
              invoked but never completed (its client died) counts as info
  blackout    longest interval with no client completing an ok operation, from the end of the
              warm-up (the `warm` mark; at the latest once every client completed an operation:
              start-up and cold server caches are not an outage) to the end of the workload;
              also per client and per migration window
  lost-writes every acknowledged write must be in the final read; a read of an acknowledged key
              that finds nothing is a lost write too
  latency     p50/p95/p99/max of ok operations, inside vs outside migration windows (figures only)

Each check has a kind. An *outcome* (failed ops, lost writes, where the VM runs, data intact) is
the same on a fast host and a slow one; a *timing* verdict (blackout against `max_blackout_ms`,
how soon a tip acted) is judged against a duration, and a shared TCG host's durations vary 2-5x
from hour to hour. Both decide the verdict; results.json also gives the verdict of each kind,
so a user (and our own integration tests) can tell a broken guarantee from a missed SLO.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from .validation import build

UNKNOWN = "unknown"
OUTCOME, TIMING = "outcome", "timing"
KINDS = (OUTCOME, TIMING)


class SLO(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_blackout_ms: float = Field(1000.0, ge=0, description="longest client-observed gap allowed")
    max_failed_ops: int = Field(0, ge=0, description="client-visible errors allowed (fail + info)")
    max_lost_writes: int = Field(0, ge=0)


def slo(**kw: object) -> SLO:
    return build(SLO, kw, "SLO parameters")


@dataclass
class Op:
    client: int
    op: int
    f: str
    key: str
    t0: int
    t1: int | None
    type: str  # ok | fail | info
    latency_ms: float | None = None
    found: bool | None = None
    sqlstate: str | None = None
    error: str | None = None


@dataclass
class Check:
    name: str
    valid: bool | str
    figures: dict = field(default_factory=dict)
    message: str = ""
    kind: str = OUTCOME  # OUTCOME or TIMING (see the module docstring)


@dataclass
class Results:
    verdict: str
    checks: list[Check]
    figures: dict

    @property
    def verdict_by_kind(self) -> dict[str, str]:
        """{"outcome": PASS|FAIL|UNKNOWN, "timing": …}; a kind with no check is PASS."""
        return {k: verdict_of([c for c in self.checks if c.kind == k]) for k in KINDS}

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "verdict_by_kind": self.verdict_by_kind, "figures": self.figures,
                "checks": [asdict(c) for c in self.checks]}

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {c.name} | {c.kind} | **{c.valid}** | {c.message} |" for c in self.checks)
        by = self.verdict_by_kind
        return (f"### Verdict: {self.verdict} (outcomes {by[OUTCOME]}, timings {by[TIMING]})\n\n"
                f"| check | kind | valid | detail |\n|---|---|---|---|\n{rows}")


def pair_ops(history: list[dict]) -> list[Op]:
    """Join invoke and completion records; an invoke with no completion is an info op."""
    open_: dict[tuple[int, int], dict] = {}
    ops: list[Op] = []
    for r in history:
        kind = r.get("type")
        if kind == "invoke":
            open_[(r["client"], r["op"])] = r
        elif kind in ("ok", "fail", "info"):
            inv = open_.pop((r["client"], r["op"]), None)
            t0 = inv["t"] if inv else r.get("t0", r["t"])
            ops.append(Op(r["client"], r["op"], r["f"], r.get("key", ""), t0, r["t"], kind,
                          r.get("latency_ms"), r.get("found"), r.get("sqlstate"), r.get("error")))
    for inv in open_.values():
        ops.append(Op(inv["client"], inv["op"], inv["f"], inv.get("key", ""), inv["t"], None, "info",
                      error="no completion recorded (client stopped or died mid-operation)"))
    ops.sort(key=lambda o: o.t0)
    return ops


def _workload_end(history: list[dict], ops: list[Op]) -> int | None:
    stops = [r["t"] for r in history if r.get("type") == "workload-stop"]
    if stops:
        return max(stops)
    ends = [o.t1 for o in ops if o.t1 is not None]
    return max(ends) if ends else None


def check_outcomes(ops: list[Op], slo_: SLO) -> Check:
    failed = sum(o.type == "fail" for o in ops)
    info = sum(o.type == "info" for o in ops)
    ok = sum(o.type == "ok" for o in ops)
    figs = {"ops": len(ops), "ok_ops": ok, "failed_ops": failed, "info_ops": info,
            "reads": sum(o.f == "read" for o in ops), "writes": sum(o.f == "write" for o in ops)}
    if not ops:
        return Check("outcomes", UNKNOWN, figs, "no operations were recorded")
    errors = sorted({f"{o.sqlstate}: {o.error}" for o in ops if o.type != "ok"})[:5]
    valid = failed + info <= slo_.max_failed_ops
    msg = (f"{failed} failed + {info} indeterminate of {len(ops)} ops "
           f"(allowed {slo_.max_failed_ops})" + (f"; e.g. {errors}" if errors else ""))
    return Check("outcomes", valid, figs, msg)


def _gaps(times: list[int], end: int | None, start: int | None = None) -> list[tuple[int, int]]:
    pts = sorted(t for t in times if start is None or t >= start)
    if start is not None:
        pts.insert(0, start)
    if end is not None and pts and end > pts[-1]:
        pts.append(end)
    return list(zip(pts, pts[1:]))


def check_blackout(ops: list[Op], history: list[dict], migrations: list[dict], slo_: SLO) -> Check:
    oks = [o for o in ops if o.type == "ok" and o.t1 is not None]
    if not oks:
        return Check("blackout", UNKNOWN, {}, "no successful operation: blackout cannot be measured", TIMING)
    end = _workload_end(history, ops)
    clients = sorted({o.client for o in ops})
    firsts = {c: min((o.t1 for o in oks if o.client == c), default=None) for c in clients}
    if any(t is None for t in firsts.values()):
        never = [c for c, t in firsts.items() if t is None]
        # not a duration to compare with an SLO: these clients never had the service at all
        return Check("blackout", False, {"clients_without_ok": never},
                     f"client(s) {never} never completed an operation: a blackout for the whole run", OUTCOME)
    warm = [r["t"] for r in history if r.get("type") == "warm"]
    steady = max([*firsts.values(), *warm])  # every client connected and warmed up from here
    gaps = _gaps([o.t1 for o in oks], end, steady)
    worst = max(gaps, key=lambda g: g[1] - g[0]) if gaps else (steady, steady)
    per_client = {}
    for c in clients:
        g = _gaps([o.t1 for o in oks if o.client == c], end, steady)
        per_client[str(c)] = round(max((b - a for a, b in g), default=0) / 1e6, 1)
    per_migration = []
    for m in migrations:
        inside = [b - a for a, b in gaps if b >= m["t0"] and a <= m["t1"]]
        per_migration.append(round(max(inside, default=0) / 1e6, 1))
    max_ms = round((worst[1] - worst[0]) / 1e6, 1)
    figs = {"max_blackout_ms": max_ms, "blackout_t0": worst[0], "blackout_t1": worst[1],
            "steady_from": steady,
            "per_client_blackout_ms": per_client, "per_migration_blackout_ms": per_migration}
    valid = max_ms <= slo_.max_blackout_ms
    return Check("blackout", valid, figs,
                 f"longest client-observed gap {max_ms} ms (allowed {slo_.max_blackout_ms:g} ms)", TIMING)


def check_lost_writes(ops: list[Op], history: list[dict], slo_: SLO) -> Check:
    finals = [r for r in history if r.get("type") == "final-read"]
    acked = {o.key for o in ops if o.f == "write" and o.type == "ok"}
    figs: dict = {"acknowledged_writes": len(acked)}
    if not finals or not finals[-1].get("ok"):
        why = finals[-1].get("error") if finals else "no final read was recorded"
        return Check("lost-writes", UNKNOWN, figs, f"cannot check lost writes: {why}")
    present = set(finals[-1]["keys"])
    lost = sorted(acked - present)
    acked_at = {o.key: o.t1 for o in ops if o.f == "write" and o.type == "ok"}
    unread = sorted({o.key for o in ops if o.f == "read" and o.type == "ok" and o.found is False
                     and o.key in acked_at and o.t0 > acked_at[o.key]})
    indeterminate = {o.key for o in ops if o.f == "write" and o.type == "info"}
    figs.update(lost_writes=len(set(lost) | set(unread)), lost_keys=(lost + unread)[:20],
                reads_missing_acknowledged=len(unread),
                indeterminate_writes=len(indeterminate),
                indeterminate_writes_committed=len(indeterminate & present))
    n = figs["lost_writes"]
    return Check("lost-writes", n <= slo_.max_lost_writes, figs,
                 f"{n} acknowledged writes missing of {len(acked)} (allowed {slo_.max_lost_writes})")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no data."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return round(s[k], 2)


def _stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": round(max(values), 2) if values else None}


def check_latency(ops: list[Op], migrations: list[dict]) -> Check:
    oks = [o for o in ops if o.type == "ok" and o.latency_ms is not None]
    if not oks:
        return Check("latency", UNKNOWN, {}, "no successful operation", TIMING)
    inside = [o.latency_ms for o in oks if any(m["t0"] <= o.t0 <= m["t1"] for m in migrations)]
    outside = [o.latency_ms for o in oks if not any(m["t0"] <= o.t0 <= m["t1"] for m in migrations)]
    all_ = [o.latency_ms for o in oks]
    figs = {"latency_ms": _stats(all_), "latency_inside_migrations_ms": _stats(inside),
            "latency_outside_migrations_ms": _stats(outside)}
    return Check("latency", True, figs,
                 f"p50 {figs['latency_ms']['p50']} ms, p99 {figs['latency_ms']['p99']} ms "
                 f"(inside migrations p99 {figs['latency_inside_migrations_ms']['p99']} ms)", TIMING)


def guarded(name: str, fn: Callable[[], Check], kind: str = OUTCOME) -> Check:
    """`kind` is the kind of the check fn would have returned, so a crash is counted where the
    verdict would have been."""
    try:
        return fn()
    except Exception as exc:  # a crashing checker is "unknown", never a pass
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Check(name, UNKNOWN, {}, f"checker crashed: {tb}", kind)


def verdict_of(checks: list[Check]) -> str:
    if any(c.valid is False for c in checks):
        return "FAIL"
    if any(c.valid is not True for c in checks):
        return "UNKNOWN"
    return "PASS"


def check_run(history: list[dict], events: list[dict], slo_: SLO) -> Results:
    migrations = [e for e in events if e.get("type") == "migration"]
    ops: list[Op] = []
    checks = [guarded("history", lambda: _pair_into(history, ops))]
    checks += [
        guarded("outcomes", lambda: check_outcomes(ops, slo_)),
        guarded("blackout", lambda: check_blackout(ops, history, migrations, slo_), TIMING),
        guarded("lost-writes", lambda: check_lost_writes(ops, history, slo_)),
        guarded("latency", lambda: check_latency(ops, migrations), TIMING),
        guarded("migrations", lambda: check_migrations(migrations)),
    ]
    if any(r.get("type") == "server-identity" for r in history):
        checks.append(guarded("server", lambda: check_server(history)))
    return Results(verdict_of(checks), checks, summary_figures(checks, migrations))


def check_server(history: list[dict]) -> Check:
    """The same database server answered before and after (a migration moves the VM, it must not
    swap the server: a failover to a replica would pass every other check)."""
    ids = [r for r in history if r.get("type") == "server-identity"]
    seen = {(r.get("server"), r.get("version")) for r in ids}
    db = next((r.get("database") for r in history if r.get("type") == "workload-start"), None)
    figs = {"database": db, "server": ids[0].get("server"), "server_version": ids[0].get("version")}
    if len(ids) < 2:
        return Check("server", UNKNOWN, figs, "server identity recorded only once")
    return Check("server", len(seen) == 1, figs,
                 f"{db}: the same server answered before and after ({ids[0].get('server')})" if len(seen) == 1
                 else f"{db}: different servers answered: {sorted(map(str, seen))}")


def _pair_into(history: list[dict], out: list[Op]) -> Check:
    out.extend(pair_ops(history))
    return Check("history", True, {"records": len(history)}, f"{len(history)} records, {len(out)} ops")


def check_migrations(migrations: list[dict]) -> Check:
    failed = [m for m in migrations if not m.get("ok")]
    figs = {"migrations": len(migrations), "failed_migrations": len(failed)}
    if not migrations:
        return Check("migrations", UNKNOWN, figs, "no migration was recorded")
    return Check("migrations", not failed, figs,
                 f"{len(migrations) - len(failed)}/{len(migrations)} migrations completed"
                 + (f"; failed: {[m.get('error') for m in failed]}" if failed else ""))


def summary_figures(checks: list[Check], migrations: list[dict]) -> dict:
    """The stable top-level figures of results.json (see docs/results.md)."""
    by = {c.name: c.figures for c in checks}
    out = by.get("outcomes", {})
    bl = by.get("blackout", {})
    lw = by.get("lost-writes", {})
    lat = by.get("latency", {})
    per_m = bl.get("per_migration_blackout_ms", [None] * len(migrations))
    return {
        "database": by.get("server", {}).get("database"),
        "ops": out.get("ops"), "ok_ops": out.get("ok_ops"), "failed_ops": out.get("failed_ops"),
        "info_ops": out.get("info_ops"), "lost_writes": lw.get("lost_writes"),
        "max_blackout_ms": bl.get("max_blackout_ms"),
        "p50_latency_ms": (lat.get("latency_ms") or {}).get("p50"),
        "p99_latency_ms": (lat.get("latency_ms") or {}).get("p99"),
        "migrations": [
            {"vm": m["vm"], "source": m["source"], "target": m["target"], "ok": m.get("ok"),
             "downtime_ms": m.get("downtime_ms"), "client_blackout_ms": per_m[i] if i < len(per_m) else None,
             "total_ms": m.get("total_ms"), "setup_ms": (m.get("stats") or {}).get("setup_time"),
             "iterations": (m.get("stats") or {}).get("memory_iteration"),
             "transferred_mib": round((m.get("stats") or {}).get("memory_processed", 0) / 2**20, 1),
             "flags": m.get("flags", []), "error": m.get("error", "")}
            for i, m in enumerate(migrations)],
    }
