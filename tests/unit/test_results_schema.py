"""results.json against the published schema (lib/availlab/report/results.schema.json): what every
runbook's judgement writes, an interrupted run's INCOMPLETE document, and one whose evidence lacks
its provenance. make test also validates every results.json its runs wrote (tests/conftest.py)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from availlab.report import SCHEMA_FILE, write_run
from availlab.scenarios.params import RUNBOOKS
from availlab.scenarios.runbook import write_incomplete

from .test_checker import MIG, final, keys_of, steady

SCHEMA = json.loads(SCHEMA_FILE.read_text())


def validate(doc: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)


def _history():
    h = steady()
    env = {"type": "environment", "t": 0, "availlab": {"version": "0.1.0", "commit": "abc", "dirty": False},
           "lab": "l", "provider": "local", "accel": "tcg", "accel_reason": "KVM hangs here",
           "hosts": {"h1": {"libvirt": "9.0.0", "qemu": "7.2.19", "cpu_model": "Skylake", "cpu_vendor": "Intel",
                            "arch": "x86_64"}}}
    info = {"type": "client-info", "client": 0, "t": 1, "odbc_driver": "psqlodbcw.so", "odbc_driver_version": "13.02.0000",
            "driver_manager_version": "03.52", "dbms": "PostgreSQL", "dbms_version": "15.8"}
    ident = {"type": "server-identity", "t": 2, "server": "10.0.0.101:5432", "version": "PostgreSQL 15.8"}
    return [env, info, ident, {"type": "workload-start", "t": 0, "database": "postgresql",
                               "spec": {"probe_interval_ms": 5.0, "probe_idle_interval_ms": 100.0}}] + h + [final(keys_of(h))]


@pytest.mark.parametrize("stem", sorted(RUNBOOKS))
def test_every_runbooks_results_validate_with_their_environment(stem, tmp_path):
    model = RUNBOOKS[stem]
    history = _history()
    results = model.parse({}).judge(history, MIG)
    write_run(tmp_path, stem, results, history, MIG, {"lab": "l"}, 0.0)
    doc = json.loads((tmp_path / "results.json").read_text())
    validate(doc)
    f = doc["figures"]  # the figure under its name, and under its first name for older readers
    assert f["max_blackout_ms"] == f["longest_blackout_ms"] and "longest_blackout_ms" not in doc["slo"]
    env = doc["environment"]
    assert env["availlab"]["commit"] == "abc" and env["accel"] == "tcg" and env["missing"] == []
    assert env["database"]["odbc_driver"] == "psqlodbcw.so" and env["hosts"]["h1"]["qemu"] == "7.2.19"
    page = (tmp_path / "report.html").read_text()
    assert "data-env='availlab.commit'>abc<" in page and "data-env='hosts.h1.qemu'>7.2.19<" in page
    junit = (tmp_path / "junit.xml").read_text()
    assert 'name="environment:accel" value="tcg"' in junit


def test_evidence_without_its_provenance_says_what_is_missing_and_still_validates(tmp_path):
    h = [r for r in steady() if r["type"] != "server-identity"]
    results = RUNBOOKS["10-live-migration"].parse({}).judge(h + [final(keys_of(h))], MIG)
    write_run(tmp_path, "10-live-migration", results, h, MIG, {}, 0.0)
    doc = json.loads((tmp_path / "results.json").read_text())
    validate(doc)
    assert len(doc["environment"]["missing"]) == 3 and doc["environment"]["availlab"] is None
    assert doc["verdict"] == "UNKNOWN"  # no identity: the server check cannot vouch for the server


def test_an_interrupted_runs_incomplete_document_validates(tmp_path):
    history = _history()[:-1]  # cut off before the final read
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in MIG))
    write_incomplete(tmp_path, "10-live-migration", {"lab": "l"})
    doc = json.loads((tmp_path / "results.json").read_text())
    validate(doc)
    assert doc["verdict"] == "INCOMPLETE" and doc["parameters"]["interrupted"] is True


def test_a_rollout_cut_short_gets_an_incomplete_report_from_each_vms_folder(tmp_path):
    """Runbook 60 keeps each VM's evidence in a folder of its own and no history.jsonl of the run:
    a Ctrl-C mid-rollout still leaves a report, every verdict INCOMPLETE, the rollout unfinished."""
    history = _history()[:-1]
    (tmp_path / "sql1").mkdir()
    (tmp_path / "sql1" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (tmp_path / "sql1" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in MIG))
    (tmp_path / "events.jsonl").write_text(json.dumps(
        {"type": "host-drain", "t": 5, "t0": 1, "t1": 5, "host": "h1", "ok": True, "moves": []}) + "\n")
    write_incomplete(tmp_path, "60-rolling-maintenance", {"lab": "l", "vms": {"sql1": "postgresql", "sql2": "mariadb"}})
    doc = json.loads((tmp_path / "results.json").read_text())
    validate(doc)
    assert doc["verdict"] == "INCOMPLETE" and doc["parameters"]["interrupted"] is True
    rollout = next(c for c in doc["checks"] if c["name"] == "rollout")
    assert rollout["valid"] == "unknown" and "cut short" in rollout["message"]
    assert (tmp_path / "report.html").is_file() and (tmp_path / "sql1" / "report.html").is_file()
    assert json.loads((tmp_path / "sql1" / "results.json").read_text())["verdict"] == "INCOMPLETE"
    assert not (tmp_path / "sql2").exists()  # its clients never started: nothing of it to judge


def test_the_schema_refuses_what_a_reader_could_not_trust(tmp_path):
    h = _history()
    write_run(tmp_path, "10-live-migration", RUNBOOKS["10-live-migration"].parse({}).judge(h, MIG), h, MIG, {}, 0.0)
    good = json.loads((tmp_path / "results.json").read_text())
    for spoil in (lambda d: d.update(verdict="MAYBE"), lambda d: d.pop("environment"),
                  lambda d: d["checks"][0].update(valid="perhaps"), lambda d: d["figures"].update(lost_writes=-1)):
        doc = json.loads(json.dumps(good))
        spoil(doc)
        with pytest.raises(jsonschema.ValidationError):
            validate(doc)


@pytest.mark.parametrize("stem", sorted(RUNBOOKS))
def test_the_results_carry_the_slo_they_were_judged_against(stem, tmp_path):
    """Issue 29: the SLO went to the checks and, separately, to write_report: the two could
    disagree. Results carry theirs now, and results.json says that one."""
    model = RUNBOOKS[stem].parse({})
    history = _history()
    results = model.judge(history, MIG)
    from availlab.checks import SLO

    assert results.slo == getattr(model, "slo", SLO()).model_dump(), stem  # the smoke runbook: the default SLO
    write_run(tmp_path, stem, results, history, MIG, {}, 0.0)
    assert json.loads((tmp_path / "results.json").read_text())["slo"] == results.slo
