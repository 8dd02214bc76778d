"""PRO-style tips: declarative rules over host/VM CPU samples -> tips -> (approved) actions.

A pure engine, fed one sample at a time, so it is tested on synthetic series. A rule fires when
its metric stays above the threshold for `sustained_s`; it re-arms only after the metric falls
below threshold - hysteresis, and a VM that was just moved is left alone for `cooldown_s`, so a
VM is not bounced back and forth. A `migrate` tip names the VM and the least-loaded host that
stays under the threshold after the move; when nothing fits it says so ("no host fits").

Sample: {"t": ns, "hosts": {host: {"cpu": percent of its capacity, "cores": n}},
                  "vms": {vm: {"host": host, "cpu": percent of one core}}}
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..validation import build


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "host-cpu-high"
    metric: Literal["cpu"] = "cpu"
    scope: Literal["host", "vm"] = "host"
    threshold: float = Field(60.0, gt=0, le=100, description="percent")
    sustained_s: float = Field(5.0, ge=0, le=3600)
    action: Literal["inform", "migrate", "start-vm"] = "migrate"


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["manual", "automatic"] = "automatic"
    cooldown_s: float = Field(60.0, ge=0)
    hysteresis: float = Field(10.0, ge=0, le=100, description="percent below threshold to re-arm")


def rule(**kw: object) -> Rule:
    return build(Rule, kw, "rule")


def policy(**kw: object) -> Policy:
    return build(Policy, kw, "tip policy")


@dataclass
class Tip:
    id: int
    time: int  # ns, the sample that fired it
    rule: str
    host: str
    vm: str | None
    action: str  # migrate | inform | start-vm | none
    target: str | None
    value: float
    reason: str
    applied: bool = False
    applied_at: int | None = None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Engine:
    def __init__(self, rules: list[Rule], pol: Policy):
        self.rules, self.policy = rules, pol
        self._since: dict[tuple[str, str], int] = {}  # (rule, subject) -> first t above threshold
        self._fired: set[tuple[str, str]] = set()      # disarmed until below threshold - hysteresis
        self._moved: dict[str, int] = {}               # vm -> t of its last move (cooldown)
        self._ids = itertools.count(1)
        self.tips: list[Tip] = []

    def note_moved(self, vm: str, t: int) -> None:
        self._moved[vm] = t

    def feed(self, sample: dict) -> list[Tip]:
        t = sample["t"]
        new: list[Tip] = []
        for r in self.rules:
            subjects = sample["hosts"] if r.scope == "host" else sample["vms"]
            for name, m in subjects.items():
                key, value = (r.name, name), float(m[r.metric])
                if value < r.threshold - self.policy.hysteresis:
                    self._fired.discard(key)
                if value <= r.threshold:
                    self._since.pop(key, None)
                    continue
                start = self._since.setdefault(key, t)
                if key in self._fired or (t - start) / 1e9 < r.sustained_s:
                    continue
                host = name if r.scope == "host" else m["host"]
                new.append(self._tip(r, host, name if r.scope == "vm" else None, value, sample))
                self._fired.add(key)  # one tip per episode, "no host fits" included
        self.tips += new
        return new

    def _tip(self, r: Rule, host: str, vm: str | None, value: float, sample: dict) -> Tip:
        tid, t = next(self._ids), sample["t"]
        if r.action == "inform":
            return Tip(tid, t, r.name, host, vm, "inform", None, value,
                       f"{host} CPU {value:.0f}% above {r.threshold:g}% for {r.sustained_s:g} s")
        if r.action == "start-vm":
            target = least_loaded(sample, exclude={host} | {h for h, m in sample["hosts"].items() if m.get("drained")})
            return Tip(tid, t, r.name, host, vm, "start-vm" if target else "none", target, value,
                       f"start another VM from the template on {target}" if target else "no host fits")
        # a host rule's target must stay under the same threshold; a VM rule's target needs room
        limit = r.threshold if r.scope == "host" else 100.0
        vm_, target, why = choose_move(sample, host, limit, vm, self._moved, t, self.policy.cooldown_s)
        return Tip(tid, t, r.name, host, vm_, "migrate" if target else "none", target, value, why)


def least_loaded(sample: dict, exclude: set[str]) -> str | None:
    hosts = [(m["cpu"], h) for h, m in sample["hosts"].items() if h not in exclude]
    return min(hosts)[1] if hosts else None


def choose_move(sample: dict, host: str, threshold: float, only_vm: str | None,
                moved: dict[str, int], t: int, cooldown_s: float) -> tuple[str | None, str | None, str]:
    """The VM to move off `host` and the least-loaded host that stays under the threshold with it."""
    hosts, vms = sample["hosts"], sample["vms"]
    on_host = sorted(((m["cpu"], v) for v, m in vms.items() if m["host"] == host and (only_vm in (None, v))),
                     reverse=True)
    cooling = [v for _, v in on_host if v in moved and (t - moved[v]) / 1e9 < cooldown_s]
    for cpu, v in on_host:
        if v in cooling:
            continue
        for load, h in sorted((m["cpu"], h) for h, m in hosts.items() if h != host and not m.get("drained")):
            projected = load + cpu / hosts[h].get("cores", 1)
            if projected < threshold:
                return v, h, (f"{host} CPU {hosts[host]['cpu']:.0f}% > {threshold:g}%: move {v} "
                              f"({cpu:.0f}% of a core) to {h} ({load:.0f}% now, {projected:.0f}% after)")
    why = "no host fits: no other host stays under the threshold with any VM of " + host
    if cooling and len(cooling) == len(on_host):
        why = f"no move: {', '.join(cooling)} moved less than {cooldown_s:g} s ago (cooldown)"
    return None, None, why
