"""The record vocabulary (availlab.records) is the one place a record type is spelled (issue 29)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from availlab.records import CLOSES, OPENS, Rec, RunFiles, freeze_windows, windows

PKG = Path(__file__).resolve().parents[2] / "lib" / "availlab"
VALUES = {r.value for r in Rec}
SPELLED = re.compile(r'(?<!`{)(?:"type": |get\("type"\) ?[!=]= ?|\["type"\] ?[!=]= ?|of_type\(|\.type ?[!=]= ?|kind ?[!=]= ?)'
                     r'"([a-z-]+)"')


def test_no_record_type_is_spelled_outside_the_vocabulary():
    found = [f"{p.relative_to(PKG)}:{n}: {m.group(1)}" for p in sorted(PKG.rglob("*.py")) if p.name != "records.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) for m in SPELLED.finditer(line)
             if m.group(1) in VALUES]
    assert found == [], "name these records by availlab.records.Rec: " + "; ".join(found)


def test_a_member_is_its_string_in_json_and_equal_to_it():
    """Histories written before the vocabulary stay readable, and new ones read the same."""
    assert json.loads(json.dumps({"type": Rec.FINAL_READ})) == {"type": "final-read"}
    assert {"type": "migration"}.get("type") == Rec.MIGRATION
    assert len(VALUES) == len(Rec), "two members share a string"


def test_windows_are_the_migrations_and_the_backups_frozen_phases():
    events = [{"type": "migration", "t0": 1, "t1": 2},
              {"type": "backup", "t0": 3, "t1": 9, "phases": [{"phase": "frozen", "t0": 4, "t1": 5},
                                                             {"phase": "copy", "t0": 5, "t1": 9}]},
              {"type": "restore", "t0": 10, "t1": 20}]
    assert [(w["t0"], w["t1"]) for w in windows(events)] == [(1, 2), (4, 5)]
    assert freeze_windows(events) == [{"type": Rec.FREEZE, "t0": 4, "t1": 5}]
    assert set(OPENS.values()) == set(CLOSES.values()) == {Rec.MIGRATION, Rec.BACKUP, Rec.COMMAND}


def test_a_watch_adds_the_command_and_the_pauses_a_watcher_saw():
    from availlab.records import paused_windows

    ev = [{"type": "command", "t0": 100, "t1": 900, "argv": ["virsh", "migrate"]},
          {"type": "watch-event", "t": 200, "host": "h2", "event": "started", "detail": "migrated"},
          {"type": "watch-event", "t": 500, "host": "h1", "event": "suspended", "detail": "migrated"},
          {"type": "watch-event", "t": 510, "host": "h1", "event": "stopped", "detail": "migrated"},
          {"type": "watch-event", "t": 620, "host": "h2", "event": "resumed", "detail": "migrated"},
          {"type": "watch-event", "t": 2000, "host": "h2", "event": "suspended", "detail": "paused"}]
    assert [(w["type"], w["t0"], w["t1"]) for w in windows(ev)] == [("command", 100, 900), ("paused", 500, 620)]
    p = paused_windows(ev)[0]  # the target's `started` is no resume; a pause still open is no window
    assert (p["host"], p["resumed_on"], p["why"], p["ms"]) == ("h1", "h2", "migrated", 0.0)


def test_run_files(tmp_path):
    files = RunFiles(tmp_path)
    assert not files.exist()
    files.events.write_text("")
    assert files.exist() and files.history == tmp_path / "history.jsonl"
