"""report.html from jinja2 templates: the page, and one section per kind of evidence.

Autoescaped: a VM name, an error message or a parameter value can never become markup. A
section is shown when the figures hold what it draws; a scenario with new evidence adds its
section with `register(Section(...))` and a template in templates/sections/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2

from .provenance import flat

VERDICT_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "UNKNOWN": "#9a6700", "INCOMPLETE": "#9a6700"}
HEADLINE = ("ops", "ok_ops", "failed_ops", "info_ops", "lost_writes", "longest_blackout_ms", "p50_latency_ms",
            "p99_latency_ms")
PROBE_HEADLINE = ("blackout_resolution_ms", "noise_floor_ms", "probe_max_blackout_ms")  # shown when the probe ran


@dataclass(frozen=True)
class Section:
    name: str  # templates/sections/NAME.html.j2
    shown: Callable[[dict[str, Any]], bool]  # of results.json's figures


SECTIONS: list[Section] = []


def register(section: Section) -> Section:
    SECTIONS.append(section)
    return section


for _s in (Section("migrations", lambda f: bool(f.get("migrations"))),
           Section("backups", lambda f: bool(f.get("backups"))),
           Section("tips", lambda f: "tips" in f),
           Section("faults", lambda f: bool(f.get("faults"))),
           Section("hostcpu", lambda f: bool(f.get("_hostcpu_png"))),
           Section("explained", lambda f: bool(f.get("_explained_png"))),
           Section("dr", lambda f: "rto_s" in f),
           Section("watch", lambda f: "hypervisor_pauses" in f),
           Section("rollout", lambda f: "hosts" in f and "vms" in f)):
    register(_s)


def fmt(v: object) -> str:
    """How a figure reads: n/a for none, floats without trailing zeros."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


_env = jinja2.Environment(loader=jinja2.PackageLoader("availlab.report", "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                          lstrip_blocks=True, keep_trailing_newline=True)
_env.filters["fmt"] = fmt


def render_html(doc: dict[str, Any], timeline_png: str, histogram_png: str, files: list[str],
                hostcpu_png: str | None = None, explained_png: str | None = None) -> str:
    f = doc["figures"]
    verdict = doc["verdict"]
    shown = [s.name for s in SECTIONS if s.shown({**f, "_hostcpu_png": hostcpu_png, "_explained_png": explained_png})]
    return _env.get_template("report.html.j2").render(
        doc=doc, f=f, verdict=verdict, colour=VERDICT_COLOURS.get(verdict, "#57606a"),
        headline=HEADLINE + tuple(k for k in PROBE_HEADLINE if f.get(k) is not None),
        by_kind=(doc.get("verdict_by_kind") or {}) if verdict != "INCOMPLETE" else {},  # a cut-off run has none
        sections=shown, timeline_png=timeline_png, histogram_png=histogram_png, hostcpu_png=hostcpu_png,
        explained_png=explained_png,
        files=files, parameters=json.dumps(doc.get("parameters", {}), indent=1, default=str),
        environment=flat(doc.get("environment") or {}))
