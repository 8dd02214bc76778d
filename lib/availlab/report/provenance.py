"""The `environment` section of results.json: what produced the run, from the run's own records.

Put together from the history alone (the `environment` record under_load writes from the lab,
each client's `client-info` from its ODBC driver, the `server-identity` records, the workload's
spec) and the figures the checks derived (the probe's measured resolution), so a report rendered
again from a run folder says the same. What is missing is listed by name, never left out quietly.
The run's parameters are beside it in results.json (`parameters`).
"""

from __future__ import annotations

from typing import Any


def _first(history: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next((r for r in history if r.get("type") == kind), {})


def environment(history: list[dict[str, Any]], figures: dict[str, Any]) -> dict[str, Any]:
    env, info = _first(history, "environment"), _first(history, "client-info")
    ident, spec = _first(history, "server-identity"), _first(history, "workload-start").get("spec") or {}
    missing = [what for what, rec in (("environment record (availlab, accelerator, hosts)", env),
                                      ("client-info (ODBC driver, server version)", info),
                                      ("server identity", ident)) if not rec]
    return {
        "availlab": env.get("availlab"),
        "lab": env.get("lab"), "provider": env.get("provider"),
        "accel": env.get("accel"), "accel_reason": env.get("accel_reason"),
        "hosts": env.get("hosts"),
        "caveats": env.get("caveats"),
        "database": {"profile": figures.get("database"), "server": ident.get("server"),
                     "server_version": ident.get("version"), "dbms": info.get("dbms"),
                     "dbms_version": info.get("dbms_version"), "odbc_driver": info.get("odbc_driver"),
                     "odbc_driver_version": info.get("odbc_driver_version"),
                     "driver_manager_version": info.get("driver_manager_version")},
        "probe": {"interval_ms": spec.get("probe_interval_ms"), "idle_interval_ms": spec.get("probe_idle_interval_ms"),
                  "resolution_ms": figures.get("blackout_resolution_ms"), "noise_floor_ms": figures.get("noise_floor_ms")},
        "missing": missing,
    }


def flat(env: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """("availlab.commit", "4085cf2…"), … for JUnit properties and the report's table; None left out."""
    out: list[tuple[str, str]] = []
    for k, v in env.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += flat(v, name + ".")
        elif isinstance(v, list):
            if v:
                out.append((name, "; ".join(map(str, v))))
        elif v is not None:
            out.append((name, str(v)))
    return out
