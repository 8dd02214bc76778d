"""`availlab report` over many runs, on crafted run folders: grouping by the tuning that differs,
success rates, unreadable folders named, escaping (Chromium renders real runs in
tests/integration/test_live_migration_runbook.py)."""

import json

import pytest

from availlab.errors import UsageError
from availlab.report.trends import find_runs, group_runs, group_table, write_trends


def run_folder(root, name, verdict="PASS", postcopy=False, migrations=((True, 80, 250.0),), started="2026-11-28T10:00:00Z",
               **params):
    d = root / name
    d.mkdir(parents=True)
    doc = {"runbook": "10-live-migration", "verdict": verdict, "started_at": started,
           "parameters": {"postcopy": postcopy, "plan": "ping-pong", **params},
           "figures": {"ops": 100, "failed_ops": 0, "info_ops": 0, "lost_writes": 0, "longest_blackout_ms": 300.0,
                       "migrations": [{"ok": ok, "downtime_ms": d_, "client_blackout_ms": b} for ok, d_, b in migrations]}}
    (d / "results.json").write_text(json.dumps(doc))
    return d


def test_runs_are_grouped_by_the_tuning_that_differs_and_compared(tmp_path):
    run_folder(tmp_path, "a", started="2026-11-28T10:00:00Z", migrations=((True, 80, 250.0), (True, 90, 300.0)))
    run_folder(tmp_path, "b", postcopy=True, started="2026-11-28T09:00:00Z",
               migrations=((True, 60, 900.0), (False, None, None)))
    run_folder(tmp_path, "c", postcopy=True, verdict="FAIL", started="2026-11-28T11:00:00Z")
    rows, bad = find_runs([tmp_path])
    assert [r.folder.name for r in rows] == ["b", "a", "c"] and not bad  # oldest first
    assert group_runs(rows) == ["postcopy"]  # plan is the same everywhere
    table = {g["group"]: g for g in group_table(rows)}
    pre, post = table["postcopy=False"], table["postcopy=True"]
    assert (pre["runs"], pre["completed"], pre["migrations"], pre["success_rate"]) == (1, 2, 2, 1.0)
    assert (post["runs"], post["passed"], post["completed"], post["migrations"], post["success_rate"]) == (2, 1, 2, 3, 0.667)
    assert post["median_blackout_ms"] == 575.0 and pre["median_downtime_ms"] == 85.0


def test_the_page_names_what_it_could_not_read_and_escapes_everything(tmp_path):
    run_folder(tmp_path, "ok1")
    run_folder(tmp_path, "ok2", plan="<script>alert(1)</script>")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "history.jsonl").write_text("")
    out, rows, bad = write_trends([tmp_path])
    page = out.read_text()
    assert out == tmp_path / "trends.html" and len(rows) == 2 and len(bad) == 2
    assert "no results.json (the run did not finish)" in page and "broken: JSONDecodeError" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert page.count('class="plot"') == 3 and 'data-runs="2"' in page


def test_an_interrupted_run_takes_its_runbooks_defaults_and_bad_input_is_a_usage_error(tmp_path):
    run_folder(tmp_path, "full", postcopy=False)
    d = tmp_path / "cut"
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"runbook": "10-live-migration", "verdict": "INCOMPLETE",
                                                 "started_at": "2026-11-28T10:00:00Z", "figures": {},
                                                 "parameters": {"interrupted": True}}))
    rows, _ = find_runs([tmp_path])
    assert group_runs(rows, normalize=lambda rb, p: {**p, "postcopy": False, "plan": "ping-pong"}) == []
    with pytest.raises(UsageError, match="no run has parameter 'warp'"):
        group_runs(rows, by=["warp"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no run folder"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(UsageError, match="is not a folder"):
        find_runs([tmp_path / "nowhere"])


def test_odd_results_are_figures_unknown_not_a_crash_and_runbooks_never_pool(tmp_path):
    run_folder(tmp_path, "a", started="2026-11-28T10:00:00Z")
    run_folder(tmp_path, "b", started="2026-11-28T10:00:00Z", migrations=((False, None, None),))  # same second
    d = run_folder(tmp_path, "c", started="2026-11-28T10:00:00Z")
    doc = json.loads((d / "results.json").read_text())
    doc["runbook"], doc["figures"]["failed_ops"], doc["figures"]["longest_blackout_ms"] = "20-backup-restore", "n/a", "x"
    doc["figures"]["migrations"] = [None, {"ok": True, "downtime_ms": "fast", "client_blackout_ms": None}]
    (d / "results.json").write_text(json.dumps(doc))
    rows, bad = find_runs([tmp_path])
    assert not bad and len(rows) == 3
    assert group_runs(rows)[0] == "runbook"  # 10 and 20 never share a group
    table = {g["group"]: g for g in group_table(rows)}
    assert sorted(table) == ["runbook=10-live-migration", "runbook=20-backup-restore"]
    assert table["runbook=10-live-migration"]["completed"] == 1 and table["runbook=10-live-migration"]["migrations"] == 2
    assert table["runbook=20-backup-restore"]["median_downtime_ms"] is None
    out, rows, _ = write_trends([tmp_path], out=tmp_path / "t.html")
    assert len(rows) == 3 and out.read_text().count('class="plot"') == 3
    with pytest.raises(UsageError, match="no folder"):
        write_trends([tmp_path], out=tmp_path / "nowhere" / "t.html")
    with pytest.raises(UsageError, match="is a folder"):
        write_trends([tmp_path], out=tmp_path / "a")


def test_backup_runs_compare_their_freeze_windows_by_tuning(tmp_path):
    for name, mode, freezes, gaps in (("p1", "pull", [150.0, 170.0], [90.0, 100.0]),
                                      ("p2", "push", [400.0, 380.0], [700.0, 650.0])):
        d = run_folder(tmp_path, name, migrations=(), backup_mode=mode)
        doc = json.loads((d / "results.json").read_text())
        doc["runbook"] = "20-backup-restore"
        doc["figures"].update(freeze_windows_ms=freezes, freeze_blackout_ms=gaps + ["n/a"])
        (d / "results.json").write_text(json.dumps(doc))
    rows, _ = find_runs([tmp_path])
    assert group_runs(rows) == ["backup_mode"]
    table = {g["group"]: g for g in group_table(rows)}
    assert table["backup_mode=pull"]["median_freeze_ms"] == 160.0 and table["backup_mode=push"]["median_freeze_gap_ms"] == 675.0
    page = write_trends([tmp_path])[0].read_text()
    assert page.count('class="plot"') == 3 and "median freeze window (ms)" in page  # no migration: no such plot
    assert 'id="backups"' in page and 'id="tunings"' not in page
    run_folder(tmp_path / "mig", "m")
    assert write_trends([tmp_path / "mig"])[0].read_text().count('class="plot"') == 3  # no backups: no plot


def test_report_json_says_the_page_the_runs_and_their_verdicts(tmp_path, capsys):
    """Issue 32: --json on every verb that prints a result; `report` too."""
    from availlab.cli import main

    run_folder(tmp_path, "a")
    run_folder(tmp_path, "b", verdict="FAIL")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "history.jsonl").write_text("")  # a run that never finished
    assert main(["report", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["page"] == str(tmp_path / "trends.html") and doc["runs"] == 2
    assert doc["verdicts"] == {"FAIL": 1, "PASS": 1} and len(doc["unreadable"]) == 1


def test_a_run_written_before_the_figure_was_renamed_is_still_drawn(tmp_path):
    """results.json's fields are only ever added: the longest gap was first `max_blackout_ms`,
    the SLO's name; a run folder from then is read under the new name."""
    d = run_folder(tmp_path, "old")
    doc = json.loads((d / "results.json").read_text())
    doc["figures"]["max_blackout_ms"] = doc["figures"].pop("longest_blackout_ms")
    (d / "results.json").write_text(json.dumps(doc))
    rows, bad = find_runs([tmp_path])
    assert not bad and rows[0].figures["longest_blackout_ms"] == 300.0
