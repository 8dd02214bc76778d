"""The key durations `make test` prints at the end of the run (issue 26: a 50x slower template
start went unseen because nothing looked at durations)."""

from __future__ import annotations

import json

import pytest

from availlab import durations


def test_record_is_a_no_op_without_the_variable_and_appends_one_line_with_it(monkeypatch, tmp_path):
    monkeypatch.delenv(durations.ENV, raising=False)
    durations.record("lab_up", 0.4, "2 hosts")  # nowhere to write: nothing happens
    log = tmp_path / "d.jsonl"
    monkeypatch.setenv(durations.ENV, str(log))
    durations.record("lab_up", 0.4, "2 hosts")
    durations.record("vm_template_start", 1.234567)
    assert [json.loads(x) for x in log.read_text().splitlines()] == [
        {"path": "lab_up", "s": 0.4, "detail": "2 hosts"},
        {"path": "vm_template_start", "s": 1.235, "detail": ""}]


def test_an_unknown_path_is_a_programming_error_and_an_unwritable_file_is_not_the_works(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown duration path 'lab_upp'"):
        durations.record("lab_upp", 1.0)
    monkeypatch.setenv(durations.ENV, str(tmp_path / "missing" / "d.jsonl"))
    durations.record("lab_up", 1.0)  # the figure is lost, the lab up it measured is not failed


def test_summary_groups_by_path_and_detail_in_declared_order_with_min_median_max():
    lines = [json.dumps({"path": p, "s": s, "detail": d}) for p, s, d in [
        ("vm_template_start", 1.0, "postgresql"), ("lab_up", 2.3, "16 hosts"), ("lab_up", 0.4, "2 hosts"),
        ("vm_template_start", 105.8, "postgresql"), ("vm_template_start", 1.4, "postgresql"),
        ("migration_downtime", 0.116, ""), ("lab_up", 0.5, "2 hosts")]]
    lines += ["{torn", json.dumps({"path": "other", "s": 1}), json.dumps({"path": "lab_up"})]
    assert durations.summary(lines) == [
        "lab up: network and daemons (2 hosts): 400 / 450 / 500 ms (min / median / max of 2)",
        "lab up: network and daemons (16 hosts): 2.30 / 2.30 / 2.30 s (min / median / max of 1)",
        "VM template start -> database ready (postgresql): 1.00 / 1.40 / 105.80 s (min / median / max of 3)",
        "live migration, hypervisor downtime: 116 / 116 / 116 ms (min / median / max of 1)",
    ]
    assert durations.summary([]) == []
