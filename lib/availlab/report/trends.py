"""`availlab report RUNS…`: one page over many runs, what a team looks at before a change board.

Each run folder's results.json is the only input (the page recomputes nothing a run judged):
verdicts over time, the share of migrations that completed, the distributions of hypervisor
downtime and client blackout over every migration, and runs grouped by the tuning that differs
between them (post-copy against pre-copy, one bandwidth against another) side by side. Runs are
grouped by `--by` parameters, or else by every tuning parameter whose value differs across the
runs. A folder that is not a readable run is named on the page, never silently dropped.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks.core import RENAMED_FIGURES
from ..errors import UsageError
from ..records import RunFiles
from .page import VERDICT_COLOURS, _env
from .plots import _finish, _png

# parameters that change how a migration or a backup runs (not where, not for how long)
TUNINGS = ("database", "plan", "clients", "rate", "read_fraction", "postcopy", "postcopy_after_s", "auto_converge",
           "bandwidth_mib_s", "max_downtime_ms", "parallel_connections", "compressed", "copy_storage",
           "dirty_memory_mib", "backup_mode", "copy_mib_s", "crash_consistent", "probe_interval_ms")


@dataclass
class RunRow:
    folder: Path
    runbook: str
    started: _dt.datetime
    verdict: str
    parameters: dict[str, Any]
    figures: dict[str, Any]
    group: str = ""
    migrations: list[dict[str, Any]] = field(default_factory=list)
    freezes: dict[str, list[float]] = field(default_factory=dict)  # runbook 20: per backup freeze


def _num(v: Any) -> float | None:
    """A figure as a number, or None (a results.json edited by hand, or from another schema)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


RUN_FIGURES = ("ops", "failed_ops", "info_ops", "lost_writes", "longest_blackout_ms")
MIGRATION_FIGURES = ("downtime_ms", "client_blackout_ms")
FREEZE_FIGURES = ("freeze_windows_ms", "freeze_blackout_ms")  # the freeze window; the clients' gap over it


def _row(folder: Path, doc: dict[str, Any]) -> RunRow:
    figs: dict[str, Any] = doc["figures"] if isinstance(doc.get("figures"), dict) else {}
    figs = {**{new: figs[old] for old, new in RENAMED_FIGURES.items() if old in figs}, **figs}  # an older run's
    migrations = [{"ok": m.get("ok") is True, **{k: _num(m.get(k)) for k in MIGRATION_FIGURES}}
                  for m in (figs.get("migrations") or []) if isinstance(m, dict)]
    params: dict[str, Any] = doc["parameters"] if isinstance(doc.get("parameters"), dict) else {}
    started = _dt.datetime.strptime(doc["started_at"], "%Y-%m-%dT%H:%M:%SZ")  # always UTC
    freezes = {k: [x for x in map(_num, figs[k]) if x is not None] if isinstance(figs.get(k), list) else []
               for k in FREEZE_FIGURES}
    return RunRow(folder, str(doc.get("runbook", "")), started, str(doc["verdict"]), dict(params),
                  {k: _num(figs.get(k)) for k in RUN_FIGURES}, migrations=migrations, freezes=freezes)


def find_runs(paths: list[Path]) -> tuple[list[RunRow], list[str]]:
    """Every run folder under `paths` (a run folder itself, or a folder of them), oldest first;
    and what could not be read, as `folder: why`."""
    folders: list[Path] = []
    bad: list[str] = []
    for p in paths:
        if not p.is_dir():
            raise UsageError(f"report: {p} is not a folder")
        if (p / "results.json").exists():
            folders.append(p.resolve())
            continue
        if RunFiles(p).exist():
            bad.append(f"{p}: no results.json (the run did not finish)")
            continue
        for q in sorted(x for x in p.iterdir() if x.is_dir() and not x.is_symlink()):  # not latest -> a run
            if (q / "results.json").exists():
                folders.append(q.resolve())
            elif RunFiles(q).exist():
                bad.append(f"{q}: no results.json (the run did not finish)")
    rows = []
    for f in dict.fromkeys(folders):
        try:
            rows.append(_row(f, json.loads((f / "results.json").read_text())))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            bad.append(f"{f}: {type(exc).__name__}: {exc}")
    if not rows:
        raise UsageError("report: no run folder with a readable results.json in "
                         + ", ".join(map(str, paths)) + (f" ({'; '.join(bad[:3])})" if bad else
                                                         " (give run folders, or a runbook's folder of them, "
                                                         "e.g. runs/10-live-migration)"))
    rows.sort(key=lambda r: r.started)
    return rows, bad


def group_runs(rows: list[RunRow], by: list[str] | None = None,
               normalize: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> list[str]:
    """Label each run with the tuning it ran with; returns the parameters grouped by. An
    interrupted run's results.json keeps only its `-p` values, as typed: `normalize(runbook,
    parameters)` gives them the runbook's defaults and types. An older run's missing parameters are
    left out of its group's name rather than borrowing today's defaults."""
    for r in rows:
        if r.parameters.get("interrupted") and normalize is not None:
            r.parameters = normalize(r.runbook, r.parameters)
    unknown = [k for k in by or [] if not any(k in r.parameters for r in rows)]
    if unknown:
        raise UsageError(f"report --by: no run has parameter {', '.join(map(repr, unknown))} "
                         f"(e.g. {', '.join(sorted({k for r in rows for k in r.parameters} & set(TUNINGS)))})")
    keys = by or [k for k in TUNINGS if len({json.dumps(r.parameters[k], default=str)
                                             for r in rows if k in r.parameters}) > 1]
    if not by and len({r.runbook for r in rows}) > 1:  # one runbook's figures never pool with another's
        keys = ["runbook", *keys]
        for r in rows:
            r.parameters["runbook"] = r.runbook
    for r in rows:
        # a parameter the run does not have (another runbook's, or newer than the run) is left out
        r.group = (", ".join(f"{k}={r.parameters[k]}" for k in keys if k in r.parameters)
                   or (f"({', '.join(keys)} not recorded)" if keys else "all runs"))
    return keys


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def _values(rows: list[RunRow], key: str) -> list[float]:
    return [float(m[key]) for r in rows for m in r.migrations if m["ok"] and m[key] is not None]


def group_table(rows: list[RunRow]) -> list[dict[str, Any]]:
    out = []
    for g in dict.fromkeys(r.group for r in rows):
        rs = [r for r in rows if r.group == g]
        ms = [m for r in rs for m in r.migrations]
        bl = sorted(_values(rs, "client_blackout_ms"))
        out.append({"group": g, "runs": len(rs), "passed": sum(r.verdict == "PASS" for r in rs),
                    "migrations": len(ms), "completed": sum(bool(m.get("ok")) for m in ms),
                    "success_rate": round(sum(bool(m.get("ok")) for m in ms) / len(ms), 3) if ms else None,
                    "median_downtime_ms": _median(_values(rs, "downtime_ms")),
                    "median_blackout_ms": _median(bl),
                    "p95_blackout_ms": bl[max(0, -(-95 * len(bl) // 100) - 1)] if bl else None,
                    "median_freeze_ms": _median([x for r in rs for x in r.freezes.get("freeze_windows_ms", [])]),
                    "median_freeze_gap_ms": _median([x for r in rs for x in r.freezes.get("freeze_blackout_ms", [])]),
                    "failed_ops": int(sum((r.figures["failed_ops"] or 0) + (r.figures["info_ops"] or 0) for r in rs)),
                    "lost_writes": int(sum(r.figures["lost_writes"] or 0 for r in rs))})
    return out


def _horizontal(version: str) -> dict[str, Any]:
    """boxplot's horizontal switch: `orientation` since matplotlib 3.10, `vert` before it."""
    major, minor = (int(x) for x in version.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _plots(rows: list[RunRow]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(12, 3.4))
    measured = [r for r in rows if r.figures["longest_blackout_ms"] is not None]  # none: not drawn at 0
    for verdict in dict.fromkeys([*VERDICT_COLOURS, *(r.verdict for r in rows)]):
        pts = [(r.started, r.figures["longest_blackout_ms"]) for r in measured if r.verdict == verdict]
        if pts:
            when, gap = zip(*pts, strict=True)
            ax.scatter(when, gap, c=VERDICT_COLOURS.get(verdict, "#57606a"), s=40, label=f"{verdict} ({len(pts)})",
                       zorder=3)
    if measured:  # datetimes go through matplotlib's unit converters, which its type stubs do not know
        ax.plot([r.started for r in measured], [r.figures["longest_blackout_ms"] for r in measured],  # type: ignore[arg-type]
                color="#8c959f", lw=0.8)
    fig.autofmt_xdate()
    out["verdicts"] = _finish(fig, ax, "Verdicts over time", "run started (UTC)", "max client blackout (ms)")

    fig, ax = plt.subplots(figsize=(12, 3.0))
    xs = list(range(len(rows)))  # one bar per run, even for two runs started in the same second
    done = [sum(bool(m.get("ok")) for m in r.migrations) for r in rows]
    failed = [len(r.migrations) - d for r, d in zip(rows, done, strict=True)]
    ax.bar(xs, done, color="#1a7f37", label="completed")
    ax.bar(xs, failed, bottom=done, color="#cf222e", label="failed")
    ax.set_xticks(xs, [r.started.strftime("%m-%d %H:%M:%S") for r in rows], rotation=60, fontsize=7)
    total = sum(len(r.migrations) for r in rows)
    rate = f"{sum(done) / total:.1%} of {total}" if total else "none"
    out["success"] = _finish(fig, ax, f"Migrations per run: completed {rate}", "run", "migrations")

    if any(r.migrations for r in rows):
        out["tunings"] = _side_by_side(
            rows, "Per completed migration, by tuning (n = migrations with a downtime / with a blackout)",
            (("hypervisor downtime (ms)", lambda rs: _values(rs, "downtime_ms")),
             ("client blackout (ms)", lambda rs: _values(rs, "client_blackout_ms"))))
    if any(r.freezes.get("freeze_windows_ms") for r in rows):
        out["backups"] = _side_by_side(
            rows, "Per backup freeze, by tuning (n = freeze windows / client gaps over them)",
            (("freeze window (ms)", lambda rs: [x for r in rs for x in r.freezes.get("freeze_windows_ms", [])]),
             ("clients' longest gap over the freeze (ms)",
              lambda rs: [x for r in rs for x in r.freezes.get("freeze_blackout_ms", [])])))
    return out


def _side_by_side(rows: list[RunRow], title: str,
                  panels: tuple[tuple[str, Callable[[list[RunRow]], list[float]]], ...]) -> str:
    """One box per group on each panel, every group on both panels in the same order, so one set
    of labels (with each panel's count) names both."""
    import matplotlib
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(r.group for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 1.2 + 0.7 * max(2, len(groups))), sharey=True)
    counts = []
    for ax, (xlabel, values) in zip(axes, panels, strict=True):
        data = [values([r for r in rows if r.group == g]) for g in groups]
        counts.append([len(d) for d in data])
        if any(data):
            ax.boxplot([d or [float("nan")] for d in data], **_horizontal(matplotlib.__version__))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(1, len(groups) + 1),
                       [f"{g} (n={'/'.join(str(c[i]) for c in counts)})" for i, g in enumerate(groups)], fontsize=8)
    fig.suptitle(title)
    out = _png(fig)
    plt.close(fig)
    return out


def render_trends(rows: list[RunRow], bad: list[str], keys: list[str], out: Path) -> str:
    plots = _plots(rows)
    runs = [{"when": r.started.strftime("%Y-%m-%d %H:%M:%S"), "runbook": r.runbook, "verdict": r.verdict,
             "colour": VERDICT_COLOURS.get(r.verdict, "#57606a"), "group": r.group,
             "ops": r.figures.get("ops"), "failed": r.figures.get("failed_ops"), "lost": r.figures.get("lost_writes"),
             "longest_blackout_ms": r.figures.get("longest_blackout_ms"),
             "migrations": f"{sum(bool(m.get('ok')) for m in r.migrations)}/{len(r.migrations)}",
             "link": urllib.parse.quote(Path(os.path.relpath(r.folder / "report.html", out.parent)).as_posix())}
            for r in rows]
    return _env.get_template("trends.html.j2").render(
        runs=runs, groups=group_table(rows), keys=keys, bad=bad, plots=plots,
        first=runs[0]["when"], last=runs[-1]["when"], passed=sum(r.verdict == "PASS" for r in rows))


def write_trends(paths: list[Path], out: Path | None = None, by: list[str] | None = None,
                 normalize: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
                 ) -> tuple[Path, list[RunRow], list[str]]:
    """Write the page; returns (its path, the runs on it, folders that could not be read)."""
    rows, bad = find_runs(paths)
    keys = group_runs(rows, by, normalize)
    first = paths[0].resolve()
    out = (out or (first.parent if (first / "results.json").exists() else first) / "trends.html").resolve()
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"report --out {out}: " + ("is a folder" if out.is_dir() else f"no folder {out.parent}"))
    out.write_text(render_trends(rows, bad, keys, out))
    return out, rows, bad
