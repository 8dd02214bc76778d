"""The report's plots, each a base64 PNG (the page embeds them: no network needed to view it)."""

from __future__ import annotations

import base64
import io
from typing import Any

from ..checks import pair_ops
from ..records import Rec, windows

PHASE_COLOURS = {"prepare": "#c6dbef", "initial copy": "#9ecae1", "dirty-page iterations": "#6baed6",
                 "paused": "#fd8d3c", "resumed on target": "#a1d99b", "announced": "#31a354",
                 "post-copy": "#fdbf6f",
                 "db checkpoint": "#dadaeb", "frozen": "#e6550d", "copy": "#bcbddc",
                 "restore (RTO)": "#fdd0a2", "restore instant (RTO)": "#fdae6b", "move off the set": "#fee6ce", "fault: abort-migration": "#f4a582",
                 "fault: kill-dest-libvirtd": "#d6604d", "fault: kill-dest-qemu": "#b2182b",
                 "fault: cut-migration-link": "#92c5de"}


def _event_windows(events: list[dict]) -> list[tuple[int, int]]:
    """Intervals in which an event disturbed the guest: migrations, and backup freezes."""
    return [(w["t0"], w["t1"]) for w in windows(events)]


def _finish(fig, ax, title: str, xlabel: str, ylabel: str, legend_outside: bool = True) -> str:
    """Common axis dressing, then the figure as a base64 PNG (and the figure closed)."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not ax.get_legend_handles_labels()[1]:
        pass  # nothing labelled (a rollout cut short before any move): no empty legend box
    elif legend_outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    else:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plot_timeline(history: list[dict], events: list[dict], doc: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = pair_ops(history)
    phased = [e for e in events if e.get("phases")]
    t_zero = min([o.t0 for o in ops] + [p["t0"] for e in phased for p in e["phases"]] or [0])
    fig, ax = plt.subplots(figsize=(12, 4.2))
    seen = set()
    for m in phased:
        for p in m.get("phases", []):
            a, b = (p["t0"] - t_zero) / 1e9, (p["t1"] - t_zero) / 1e9
            label = p["phase"] if p["phase"] not in seen else None
            seen.add(p["phase"])
            if b - a < 0.01:
                ax.axvline(a, color=PHASE_COLOURS.get(p["phase"], "#999"), lw=1.5, label=label)
            else:
                ax.axvspan(a, b, color=PHASE_COLOURS.get(p["phase"], "#ddd"), alpha=0.55, lw=0, label=label)
    for kind, colour, marker, size in (("ok", "#1f4e79", ".", 4), ("info", "#d97706", "^", 30),
                                       ("fail", "#cf222e", "x", 30)):
        pts = [((o.t0 - t_zero) / 1e9, o.latency_ms or 0.0) for o in ops if o.type == kind]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=size, c=colour, marker=marker, label=f"{kind} ({len(pts)})", zorder=3)
    bl: dict[str, Any] = next((c["figures"] for c in doc["checks"] if c["name"] == "blackout"), {})
    if bl.get("blackout_t0") is not None:
        a, b = (bl["blackout_t0"] - t_zero) / 1e9, (bl["blackout_t1"] - t_zero) / 1e9
        ax.axvspan(a, b, facecolor="none", edgecolor="#cf222e", hatch="////", lw=1,
                   label=f"longest blackout {bl['longest_blackout_ms']} ms", zorder=4)
    ax.set_yscale("log")
    return _finish(fig, ax, "Every client operation, with the phases of each event",
                   "seconds since the workload started", "operation latency (ms, log)")


def plot_histogram(history: list[dict], events: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ops = [(o.t0, ms) for o in pair_ops(history) if o.type == Rec.OK and (ms := o.latency_ms)]
    wins = _event_windows(events)
    inside = [ms for t0, ms in ops if any(a <= t0 <= b for a, b in wins)]
    outside = [ms for t0, ms in ops if not any(a <= t0 <= b for a, b in wins)]
    fig, ax = plt.subplots(figsize=(12, 3.2))
    values = inside + outside
    if values:
        bins = np.logspace(np.log10(max(min(values), 0.1)), np.log10(max(values) * 1.05), 40)
        ax.hist([outside, inside], bins=bins.tolist(), stacked=True, color=["#1f4e79", "#fd8d3c"],
                label=[f"outside events ({len(outside)})", f"during migrations / freezes ({len(inside)})"])
        ax.set_xscale("log")
    return _finish(fig, ax, "Latency distribution", "latency of successful operations (ms, log)",
                   "operations", legend_outside=False)


def plot_host_cpu(events: list[dict], threshold: float | None) -> str:
    """Host CPU per host with the threshold, tips and migrations on the same time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [e for e in events if e.get("type") == Rec.SAMPLE]
    t_zero = samples[0]["t"] if samples else 0
    fig, ax = plt.subplots(figsize=(12, 3.6))
    for h in sorted({h for s in samples for h in s["hosts"]}):
        pts = [((s["t"] - t_zero) / 1e9, s["hosts"][h]["cpu"]) for s in samples if h in s["hosts"]]
        ax.plot(*zip(*pts, strict=True), label=f"{h} CPU %", lw=1.6)
    if threshold is not None:
        ax.axhline(threshold, color="#cf222e", ls="--", lw=1, label=f"threshold {threshold:g}%")
    for e in events:
        x = (e.get("t", 0) - t_zero) / 1e9
        if e.get("type") == Rec.TIP:
            ax.axvline(x, color="#9a6700", lw=1.2, ls=":")
            ax.annotate(f"tip {e['id']}", (x, 102), fontsize=8, color="#9a6700")
        elif e.get("type") == Rec.MIGRATION:
            ax.axvspan((e["t0"] - t_zero) / 1e9, (e["t1"] - t_zero) / 1e9, color="#a1d99b", alpha=0.5)
        elif e.get("type") == Rec.OVERLOAD_START:
            ax.annotate("noisy neighbour starts", (x, 92), fontsize=8)
            ax.axvline(x, color="#57606a", lw=1)
    ax.set_ylim(0, 110)
    return _finish(fig, ax, "Host load, tips (dotted) and migrations (green)",
                   "seconds since monitoring started", "host CPU (% of capacity)")


EXPLAINED_PARTS = (("before_pause_ms", "before the pause", "#bdbdbd"), ("paused_ms", "paused (lifecycle events)", "#fd8d3c"),
                   ("after_resume_ms", "after resume, until the first completion", "#74c476"))


def plot_explained(rows: list[dict | None]) -> str:
    """One stacked bar per migration: the blackout around its pause cut in three, with libvirt's
    own downtime marked and the TCP retransmissions written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(i, r) for i, r in enumerate(rows) if r]
    fig, ax = plt.subplots(figsize=(12, 0.9 + 0.5 * max(1, len(shown))))
    labels = [f"#{i + 1}" for i, _ in shown]
    lefts = [0.0] * len(shown)
    for key, label, colour in EXPLAINED_PARTS:
        widths = [r[key] for _, r in shown]
        ax.barh(labels, widths, left=lefts, color=colour, label=label, height=0.6)
        lefts = [a + w for a, w in zip(lefts, widths, strict=True)]
    marked = False
    for y, (_, r) in enumerate(shown):
        if r.get("libvirt_downtime_ms") is not None:
            x = r["before_pause_ms"] + r["libvirt_downtime_ms"]
            ax.plot([x, x], [y - 0.35, y + 0.35], color="#b2182b", lw=2,
                    label=None if marked else "end of libvirt's downtime")
            marked = True
        tcp = r.get("tcp") or {}
        note = f"{r['blackout_ms']:g} ms" + (f" · {tcp.get('retrans_segs', 0)} TCP retrans." if tcp else "")
        ax.annotate(note, (r["blackout_ms"], y), xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max([r["blackout_ms"] for _, r in shown] or [1]) * 1.35)
    source = shown[0][1]["source"] if shown else "probe"
    return _finish(fig, ax, f"The blackout around each pause, explained (completions seen by the {source})",
                   "ms from the last completion before the pause", "migration")
