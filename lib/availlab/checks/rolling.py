"""A rolling maintenance (runbook 60): each VM judged as runbook 10 judges one, and the rollout's
own claims judged from the run's events.

  rollout     every host of the plan was drained, found empty, maintained and resumed; a host
              that failed names its step, and the hosts never reached are listed (not done)
  empty       no VM ran on a host while it was maintained: its `host-empty` record listed nothing,
              and no migration of any VM ended on it inside its maintenance window
  placement   every VM ended where it ran before the rollout (each host got back what it had); with
              `resume rebalance`, every VM runs and no host of the rollout runs more than one of
              them more than another
  <vm>: …     every check of each VM, named by the VM (`sql1: lost-writes`), so the verdict is
              every VM's as well as the rollout's

Pure: over the saved evidence only, as every checker.
"""

from __future__ import annotations

from typing import Any

from ..records import Rec
from .core import SLO, UNKNOWN, Check, Results, verdict_of
from .migration import check_run

VmEvidence = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # (history, events) of one VM


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == kind]


def rollout_check(events: list[dict[str, Any]]) -> Check:
    done = _of(events, Rec.ROLLOUT)
    if not done:
        return Check("rollout", UNKNOWN, {}, "no rollout record: the run was cut short before the rollout ended")
    r = done[-1]
    figs = {k: r.get(k) for k in ("order", "action", "done", "failed", "not_done")}
    if r.get("failed") or r.get("not_done"):
        failed = "; ".join(f"{h}: {why}" for h, why in (r.get("failed") or {}).items())
        return Check("rollout", False, figs, f"{len(r.get('done') or [])}/{len(r.get('order') or [])} host(s) "
                     f"maintained; failed: {failed or 'none'}; not done: {', '.join(r.get('not_done') or []) or 'none'}")
    return Check("rollout", True, figs, f"every host maintained in turn ({', '.join(r.get('order') or [])}), "
                 f"action {r.get('action')}")


def empty_check(events: list[dict[str, Any]]) -> Check:
    maint = _of(events, Rec.MAINTENANCE)
    if not maint:
        return Check("empty", UNKNOWN, {}, "no host was maintained")
    seen = {e["host"]: e.get("running") for e in _of(events, Rec.HOST_EMPTY)}
    arrived = [m for m in _of(events, Rec.MIGRATION) if m.get("ok")]
    bad = []
    for w in maint:
        h = w["host"]
        ran: list[str] | None = seen.get(h)
        if ran != []:
            bad.append(f"{h}: {'not proven empty' if ran is None else 'ran ' + ', '.join(ran)}")
        bad += [f"{h}: {m['vm']} arrived during its maintenance" for m in arrived
                if m.get("target") == h and w["t0"] <= int(m["t1"]) <= w["t1"]]
    figs = {"maintained": [w["host"] for w in maint], "problems": bad}
    if bad:
        return Check("empty", False, figs, "a host was maintained while a VM ran on it: " + "; ".join(bad))
    return Check("empty", True, figs, f"{len(maint)} host(s) maintained, each empty throughout")


def placement_check(events: list[dict[str, Any]]) -> Check:
    done = _of(events, Rec.ROLLOUT)
    if not done:
        return Check("placement", UNKNOWN, {}, "no rollout record")
    planned, where = done[-1].get("planned") or {}, done[-1].get("where") or {}
    figs = {"planned": planned, "where": where, "resume": done[-1].get("resume", "back")}
    if figs["resume"] == "rebalance":
        gone = sorted(v for v in planned if v not in where)
        count = {h: sum(1 for v in planned if where.get(v) == h) for h in done[-1].get("order") or []}
        spread = f"VMs per host {', '.join(f'{h} {n}' for h, n in count.items())}"
        if gone or (count and max(count.values()) - min(count.values()) > 1):
            return Check("placement", False, figs, (f"not running: {', '.join(gone)}; " if gone else "")
                         + f"not balanced after the rebalance: {spread}")
        return Check("placement", True, figs, f"every VM runs, spread evenly: {spread}")
    off = {v: f"{where.get(v, 'nowhere (not running)')}, not {h}" for v, h in planned.items() if where.get(v) != h}
    if off:
        return Check("placement", False, figs, "not back where it ran: " + "; ".join(f"{v} on {w}" for v, w in off.items()))
    return Check("placement", True, figs, "every VM back where it ran: " + ", ".join(f"{v} {h}" for v, h in planned.items()))


def host_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per host, in the order maintained: how long its drain, maintenance and resume took, and how
    long it stood empty (its drain's end to its resume's start)."""
    def by_host(kind: str) -> dict[str, dict[str, Any]]:
        return {e["host"]: e for e in _of(events, kind)}
    drains, maint, resumes = by_host(Rec.HOST_DRAIN), by_host(Rec.MAINTENANCE), by_host(Rec.HOST_RESUME)
    order = (_of(events, Rec.ROLLOUT) or [{}])[-1].get("order") or list(drains)

    def ms(e: dict[str, Any] | None) -> float | None:
        return round((e["t1"] - e["t0"]) / 1e6, 1) if e else None
    rows = []
    for h in order:
        d, m, r = drains.get(h), maint.get(h), resumes.get(h)
        rows.append({"host": h, "drain_ms": ms(d), "moved": [x["vm"] for x in (d or {}).get("moves", []) if x.get("ok")],
                     "action": (m or {}).get("action"), "maintenance": (m or {}).get("done") or (m or {}).get("error"),
                     "maintenance_ms": ms(m), "resume_ms": ms(r),
                     "empty_s": round((r["t0"] - d["t1"]) / 1e9, 2) if d and r else None,
                     "window": [d["t0"], r["t1"]] if d and r else None})
    return rows


def check_rolling(events: list[dict[str, Any]], per_vm: dict[str, VmEvidence], slo: SLO) -> tuple[Results, dict[str, Results]]:
    """The run's verdict (the rollout's checks and every VM's, named by VM) and each VM's own."""
    mine = {vm: check_run(h, e, slo) for vm, (h, e) in per_vm.items()}
    checks = [rollout_check(events), empty_check(events), placement_check(events)]
    for vm, res in mine.items():
        checks += [Check(f"{vm}: {c.name}", c.valid, c.figures, c.message, c.kind, c.judged) for c in res.checks]
    figs = _summary(mine)
    rows = {vm: list(res.figures.get("migrations") or []) for vm, res in mine.items()}
    migrations = [rows[str(m.get("vm"))].pop(0) for m in _of(events, Rec.MIGRATION) if rows.get(str(m.get("vm")))]
    hosts = host_rows(events)
    starts = [e["t0"] for e in _of(events, Rec.HOST_DRAIN)]
    ends = [e["t1"] for e in (_of(events, Rec.HOST_RESUME) or _of(events, Rec.MAINTENANCE) or _of(events, Rec.HOST_DRAIN))]
    figs.update({"migrations": migrations, "hosts": hosts,
                 "rollout_s": round((max(ends) - min(starts)) / 1e9, 2) if starts and ends else None})
    return Results(verdict_of(checks), checks, figs, slo.model_dump()), mine


def _summary(mine: dict[str, Results]) -> dict[str, Any]:
    """The headline over every VM (sums, the longest blackout) and one row per VM."""
    def total(key: str) -> int | None:
        vals: list[Any] = [r.figures.get(key) for r in mine.values()]
        return None if None in vals else int(sum(vals))  # one VM's unknown makes the total unknown
    blackouts: list[Any] = [r.figures.get("longest_blackout_ms") for r in mine.values()]
    longest = None if not blackouts or None in blackouts else float(max(blackouts))
    rows = {vm: {"verdict": r.verdict, **{k: r.figures.get(k) for k in ("database", "ops", "failed_ops", "info_ops",
                                                                         "lost_writes", "longest_blackout_ms")},
                 "migrations": len(r.figures.get("migrations") or [])} for vm, r in mine.items()}
    return {"ops": total("ops"), "ok_ops": total("ok_ops"), "failed_ops": total("failed_ops"),
            "info_ops": total("info_ops"), "lost_writes": total("lost_writes"),
            "longest_blackout_ms": longest,
            "p50_latency_ms": None, "p99_latency_ms": None, "vms": rows}


__all__ = ["check_rolling", "host_rows"]
