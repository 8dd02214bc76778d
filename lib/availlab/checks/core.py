"""The checker protocol: a checker is a pure function of the saved evidence -> one Check.

As in Jepsen's `checker.clj`, a scenario does not judge by hand: it names its checkers in a
mapping and `compose` runs each one guarded (a checker that crashes yields "unknown" with its
error, never a silent pass) under one verdict rule, `merge`: invalid beats unknown beats valid.
`judge` turns the composed checks into Results, with the headline figures every results.json
carries derived in one place (`headline`). Nothing here touches a lab: an import-linter contract
keeps `availlab.checks` free of libvirt, namespaces and state.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field

from ..history import unreadable
from ..records import COMPLETIONS, Rec
from ..validation import build

UNKNOWN: Literal["unknown"] = "unknown"
Valid = bool | Literal["unknown"]  # True: valid, False: invalid, "unknown": cannot tell
OUTCOME, TIMING = "outcome", "timing"
KINDS = (OUTCOME, TIMING)
VERDICTS: dict[Valid, str] = {True: "PASS", False: "FAIL", UNKNOWN: "UNKNOWN"}


class SLO(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_blackout_ms: float = Field(1000.0, ge=0, description="longest client-observed gap")
    max_failed_ops: int = Field(0, ge=0, description="client-visible errors (fail + indeterminate)")
    max_lost_writes: int = Field(0, ge=0, description="acknowledged writes missing afterwards")


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
    valid: Valid
    figures: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    kind: str = OUTCOME  # OUTCOME (same on a fast host and a slow one) or TIMING (judged against a duration)
    judged: bool = True  # False: figures only (latency, the probe): never part of a verdict, nor a JUnit case


def merge(valids: Iterable[Valid]) -> Valid:
    """The one verdict rule: any invalid -> invalid, else any unknown -> unknown, else valid."""
    vs = list(valids)
    if any(v is False for v in vs):
        return False
    if any(v is not True for v in vs):
        return UNKNOWN
    return True


def verdict_of(checks: Iterable[Check]) -> str:
    return VERDICTS[merge(c.valid for c in checks if c.judged)]


@dataclass
class Results:
    verdict: str
    checks: list[Check]
    figures: dict[str, Any]
    slo: dict[str, Any] = field(default_factory=dict)  # what it was judged against: the report says the same


    @property
    def verdict_by_kind(self) -> dict[str, str]:
        """{"outcome": PASS|FAIL|UNKNOWN, "timing": …}; a kind with no check is PASS."""
        return {k: verdict_of(c for c in self.checks if c.kind == k) for k in KINDS}

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "verdict_by_kind": self.verdict_by_kind, "figures": self.figures,
                "checks": [asdict(c) for c in self.checks]}

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {c.name} | {c.kind} | **{c.valid}** | {c.message} |" for c in self.checks)
        by = self.verdict_by_kind
        return (f"### Verdict: {self.verdict} (outcomes {by[OUTCOME]}, timings {by[TIMING]})\n\n"
                f"| check | kind | valid | detail |\n|---|---|---|---|\n{rows}")


def pair_ops(history: list[dict[str, Any]]) -> list[Op]:
    """Join invoke and completion records; an invoke with no completion is an info op."""
    open_: dict[tuple[int, int], dict[str, Any]] = {}
    ops: list[Op] = []
    for r in history:
        kind = r.get("type")
        if kind == Rec.INVOKE:
            open_[(r["client"], r["op"])] = r
        elif kind in COMPLETIONS:
            inv = open_.pop((r["client"], r["op"]), None)
            t0 = inv["t"] if inv else r.get("t0", r["t"])
            ops.append(Op(r["client"], r["op"], r["f"], r.get("key", ""), t0, r["t"], str(kind),
                          r.get("latency_ms"), r.get("found"), r.get("sqlstate"), r.get("error")))
    for inv in open_.values():
        ops.append(Op(inv["client"], inv["op"], inv["f"], inv.get("key", ""), inv["t"], None, Rec.INFO,
                      error="no completion recorded (client stopped or died mid-operation)"))
    ops.sort(key=lambda o: o.t0)
    return ops


@dataclass
class Context:
    """The evidence every checker of one judgement reads: the history and events as saved, the
    SLO, and the windows (migrations, backup freezes, a fault) that client gaps are attributed to."""
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]
    slo: SLO
    windows: list[dict[str, Any]] = field(default_factory=list)

    @cached_property
    def ops(self) -> list[Op]:
        return pair_ops(self.history)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def marks(self, kind: str) -> list[dict[str, Any]]:
        """The history's records of one type (of_type's twin for history.jsonl)."""
        return [r for r in self.history if r.get("type") == kind]

    @property
    def database(self) -> str | None:
        return next((r.get("database") for r in self.marks(Rec.WORKLOAD_START)), None)


class Checker(Protocol):
    kind: str

    def __call__(self, ctx: Context) -> Check: ...


def checker(kind: str = OUTCOME, judged: bool = True) -> Callable[[Callable[[Context], Check]], Checker]:
    """Mark a function of a Context as a checker of `kind`, the kind a crash of it is counted as;
    `judged=False`: it gives figures only, and its checks never weigh in a verdict."""
    def mark(fn: Callable[[Context], Check]) -> Checker:
        fn.kind = kind  # type: ignore[attr-defined]
        fn.judged = judged  # type: ignore[attr-defined]
        return cast(Checker, fn)
    return mark


def guarded(name: str, fn: Checker, ctx: Context) -> Check:
    try:
        c = fn(ctx)
    except Exception as exc:  # a crashing checker is "unknown", never a pass
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Check(name, UNKNOWN, {}, f"checker crashed: {tb}", getattr(fn, "kind", OUTCOME),
                     getattr(fn, "judged", True))
    c.name, c.judged = name, getattr(fn, "judged", True)
    return c


def could_not(why: str, judged: bool = True) -> Checker:
    """A check this run could not make, said so: UNKNOWN, never a pass. `judged` False keeps it
    out of the verdict (a check that does not apply, as lost writes in a read-only watch)."""
    @checker(OUTCOME, judged=judged)
    def unknown(ctx: Context) -> Check:
        return Check("", UNKNOWN, {}, why)
    return unknown


def compose(checkers: Mapping[str, Checker]) -> Callable[[Context], list[Check]]:
    """One checker made of several, each named by its key and run guarded, in order."""
    def run(ctx: Context) -> list[Check]:
        return [guarded(name, fn, ctx) for name, fn in checkers.items()]
    return run


def judge(ctx: Context, checkers: Mapping[str, Checker],
          figures: Callable[[dict[str, Check], Context], dict[str, Any]] | None = None) -> Results:
    """Compose, decide the verdict by `merge`, and derive the figures: the headline first, then
    the scenario's own (which may override a headline field it measures differently)."""
    checks = compose(checkers)(ctx)
    by = {c.name: c for c in checks}
    return Results(verdict_of(checks), checks, {**headline(by, ctx), **(figures(by, ctx) if figures else {})},
                   ctx.slo.model_dump())


@checker(OUTCOME)
def evidence(ctx: Context) -> Check:
    """The saved files are whole: a damaged line makes every other verdict doubtful."""
    bad = unreadable(ctx.history, ctx.events)
    if bad:
        return Check("history", UNKNOWN, {"records": len(ctx.history), "unreadable_lines": bad[:20]},
                     f"{len(bad)} unreadable line(s) in the saved evidence: {', '.join(bad[:5])}")
    return Check("history", True, {"records": len(ctx.history)},
                 f"{len(ctx.history)} records, {len(ctx.ops)} ops")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no data."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return round(s[k], 2)


def stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": round(max(values), 2) if values else None}


def _fig(by: dict[str, Check], name: str) -> dict[str, Any]:
    c = by.get(name)
    return c.figures if c else {}


def migration_rows(migrations: list[dict[str, Any]], blackouts: list[float | None],
                   probe_blackouts: list[float | None] | None = None,
                   explained: list[dict[str, Any] | None] | None = None,
                   brownouts: list[dict[str, Any] | None] | None = None) -> list[dict[str, Any]]:
    """One row per migration for results.json, with the client blackout seen in its window, the
    probe's, and the blackout around the pause explained (checks.probe)."""
    def at(xs: list[Any] | None, i: int) -> Any:
        return xs[i] if xs and i < len(xs) else None

    def row(i: int, m: dict[str, Any]) -> dict[str, Any]:
        s = m.get("stats") or {}
        # after post-copy libvirt keeps no completed statistics: the last sample is the nearest
        last = (m.get("samples") or [{}])[-1] if not s else {}
        return {"vm": m["vm"], "source": m["source"], "target": m["target"], "ok": m.get("ok"),
                "downtime_ms": m.get("downtime_ms"), "client_blackout_ms": blackouts[i] if i < len(blackouts) else None,
                "total_ms": m.get("total_ms"), "setup_ms": s.get("setup_time"),
                "iterations": s.get("memory_iteration", last.get("memory_iteration")),
                "transferred_mib": round(s.get("memory_processed", last.get("memory_processed", 0)) / 2**20, 1),
                "flags": m.get("flags", []), "error": m.get("error", ""),
                **({"downtime_source": m["downtime_source"]} if m.get("downtime_source") else {}),
                **({"postcopy": m["postcopy"]} if m.get("postcopy") else {}),
                **({"probe_blackout_ms": at(probe_blackouts, i)} if probe_blackouts else {}),
                **({"blackout_explained": at(explained, i)} if explained else {}),
                **({"postcopy_brownout": at(brownouts, i)} if at(brownouts, i) else {})}
    return [row(i, m) for i, m in enumerate(migrations)]


# results.json's fields are only ever added (docs/results.md): the measured longest gap was first
# named like the SLO that limits it (slo.max_blackout_ms); the report writes it under that name too,
# and the trends read an older run's figure from it
RENAMED_FIGURES = {"max_blackout_ms": "longest_blackout_ms"}  # first name -> the figure's name


def headline(by: dict[str, Check], ctx: Context) -> dict[str, Any]:
    """The stable top-level figures of results.json (docs/results.md), from whichever checks ran."""
    out, bl, lat = _fig(by, "outcomes"), _fig(by, "blackout"), _fig(by, "latency")
    lost = _fig(by, "lost-writes") or _fig(by, "rpo")
    migrations = ctx.of_type(Rec.MIGRATION)
    # the blackout per window is a migration's only when the windows were the migrations
    pr = _fig(by, "probe")
    by_migration = bool(ctx.windows) and all(w.get("type") == Rec.MIGRATION for w in ctx.windows)
    per_window = bl.get("per_window_blackout_ms", []) if by_migration else []
    probe_per_window = pr.get("per_window_probe_blackout_ms", []) if by_migration else []
    return {
        "database": ctx.database,
        "ops": out.get("ops"), "ok_ops": out.get("ok_ops"), "failed_ops": out.get("failed_ops"),
        "info_ops": out.get("info_ops"), "lost_writes": lost.get("lost_writes"),
        "longest_blackout_ms": bl.get("longest_blackout_ms"),
        "p50_latency_ms": (lat.get("latency_ms") or {}).get("p50"),
        "p99_latency_ms": (lat.get("latency_ms") or {}).get("p99"),
        # the probe (checks.probe): the resolution the blackout is measured at, and its noise floor
        "blackout_resolution_ms": pr.get("blackout_resolution_ms"), "noise_floor_ms": pr.get("noise_floor_ms"),
        "probe_max_blackout_ms": pr.get("probe_max_blackout_ms"),
        "migrations": migration_rows(migrations, per_window, probe_per_window,
                                     _fig(by, "explained").get("explained"),
                                     _fig(by, "explained").get("postcopy_brownout")),
    }

