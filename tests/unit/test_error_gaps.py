"""Damaged or foreign inputs end as an AvailLabError that names the place, never a traceback,
and damaged evidence is reported as such instead of being judged silently."""

from __future__ import annotations

import json

import pytest

from availlab.checks import SLO, check_run
from availlab.errors import AvailLabError, MigrationError, StateError
from availlab.history import read_jsonl
from availlab.lab import state

from .test_checker import MIG, final, keys_of, steady


def _write_state(tmp_path, monkeypatch, doc) -> None:
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    d = tmp_path / "old"
    d.mkdir(mode=0o700)
    (d / "state.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))


@pytest.mark.parametrize("doc, words", [
    ({"lab": "old", "status": "up", "topology": {}, "colour": "blue"}, "unknown field(s) colour"),
    ({"lab": "old", "topology": {}}, "missing field(s) status"),
    ({"lab": "old", "status": "up", "topology": {}, "vms": {"sql1": {"name": "sql1", "flavour": 1}}},
     "vms.sql1: unknown field(s) flavour"),
    ({"lab": "old", "status": "up", "topology": {}, "hosts": []}, "hosts: expected an object"),
    ("{not json", "not JSON"),
])
def test_a_state_file_of_another_version_is_refused_naming_the_field(tmp_path, monkeypatch, doc, words):
    _write_state(tmp_path, monkeypatch, doc)
    with pytest.raises(StateError) as e:
        state.load("old")
    assert words in str(e.value) and "state.json" in str(e.value)
    assert isinstance(e.value, AvailLabError)


def test_the_cli_reports_an_unreadable_state_without_a_traceback(tmp_path, monkeypatch, capsys):
    from availlab import cli

    _write_state(tmp_path, monkeypatch, {"lab": "old", "status": "up", "topology": {}, "colour": "blue"})
    assert cli.main(["--lab", "old", "lab", "status"]) == 1
    err = capsys.readouterr().err
    assert "unknown field(s) colour" in err and "Traceback" not in err


def test_a_torn_last_line_is_skipped_but_a_damaged_line_inside_is_reported(tmp_path):
    p = tmp_path / "history.jsonl"
    p.write_text('{"type":"a"}\n{broken\n[1, 2]\n{"type":"b"}\n{"type":"c","t":')
    recs = read_jsonl(p)
    assert [r["type"] for r in recs] == ["a", "unreadable", "unreadable", "b"]
    assert [r["line"] for r in recs if r["type"] == "unreadable"] == [2, 3]


def test_a_run_with_a_damaged_history_line_is_unknown_not_pass(tmp_path):
    h = steady()
    h = h + [final(keys_of(h))]
    p = tmp_path / "history.jsonl"
    lines = [json.dumps(r) for r in h]
    lines.insert(len(lines) // 2, '{"type": "ok", "client": 0, "op": 99, "f": "wri')  # a line cut mid-run
    p.write_text("\n".join(lines) + "\n")
    r = check_run(read_jsonl(p), MIG, SLO(max_blackout_ms=10_000))
    hist = next(c for c in r.checks if c.name == "history")
    assert hist.valid == "unknown" and "history.jsonl:" in hist.message and r.verdict == "UNKNOWN"


def test_an_interrupted_run_is_judged_against_its_own_slo(tmp_path):
    from availlab.scenarios.params import BackupRestore
    from availlab.scenarios.runbook import run_slo, write_incomplete

    # a runbook of ours: its model's defaults under the -p values
    default = BackupRestore.model_fields["max_blackout_ms"].default
    assert run_slo({"max_failed_ops": 3}, {}, "20-backup-restore") == \
        {"max_blackout_ms": default, "max_failed_ops": 3, "max_lost_writes": 0}
    # a notebook of one's own: its parameters cell's defaults
    declared = {"max_blackout_ms": {"default": "1500.0"}, "max_failed_ops": {"default": "0"}, "clients": {"default": "4"}}
    assert run_slo({"max_failed_ops": 3}, declared, "my-runbook") == {"max_blackout_ms": 1500.0, "max_failed_ops": 3}
    h = steady()
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in h))
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(m) + "\n" for m in MIG))
    write_incomplete(tmp_path, "20-backup-restore", {"max_failed_ops": 3}, declared)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["verdict"] == "INCOMPLETE"
    assert doc["slo"] == {"max_blackout_ms": default, "max_failed_ops": 3, "max_lost_writes": 0}
    # and by runbook 20's own checks, not runbook 10's
    assert {c["name"] for c in doc["checks"]} == {"history", "outcomes", "blackout", "latency", "rpo", "restore",
                                                   "probe"}


def test_a_failing_qemu_img_in_copy_storage_is_a_migration_error(tmp_path):
    from availlab.events.migration import _qemu_img

    with pytest.raises(MigrationError, match="sql1: copy_storage: qemu-img info failed"):
        _qemu_img("sql1", "info", "-U", "--output=json", str(tmp_path / "missing.qcow2"))


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="lab down needs root")
def test_lab_down_of_an_unreadable_state_removes_what_is_named_after_the_lab(tmp_path, monkeypatch):
    from availlab.lab import providers as lab

    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    d = tmp_path / "staleut"
    d.mkdir(mode=0o700)
    (d / "state.json").write_text('{"lab": "staleut", "status": "up", "topology": {}, "colour": "blue"}')
    outside = tmp_path / "elsewhere" / "vms"
    outside.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({"lab": "staleut", "colour": "blue", "owned": [str(outside)]}))
    lab.down("staleut")
    assert not d.exists() and state.load("staleut") is None
    assert outside.is_dir()  # an unreadable record is no warrant to delete outside the lab's directory


def test_a_line_of_invalid_bytes_is_an_unreadable_record_not_a_crash(tmp_path):
    p = tmp_path / "history.jsonl"
    p.write_bytes(b'{"type":"a"}\n\xff\xfe{"type":\n{"type":"b"}\n')
    assert [r["type"] for r in read_jsonl(p)] == ["a", "unreadable", "b"]


def test_a_state_file_of_invalid_bytes_is_a_state_error(tmp_path, monkeypatch):
    _write_state(tmp_path, monkeypatch, "")
    (tmp_path / "old" / "state.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(StateError, match="not JSON"):
        state.load("old")
