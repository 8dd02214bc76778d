"""Runbook parameters: declared, typed and validated before the lab is touched."""

from pathlib import Path

import pytest

from availlab import steps
from availlab.errors import UsageError
from availlab.runbook import declared_parameters, parse_value, validate_parameters

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
LM = RUNBOOKS / "10-live-migration.ipynb"


def test_parameter_list_matches_the_notebook():
    assert tuple(declared_parameters(LM)) == steps.LIVE_MIGRATION_PARAMETERS


def test_every_parameter_is_typed():
    for nb in RUNBOOKS.glob("*.ipynb"):
        untyped = [n for n, p in declared_parameters(nb).items() if p["inferred_type_name"] == "None"]
        assert not untyped, f"{nb.name}: untyped parameters {untyped}"


def test_defaults_make_a_valid_config():
    defaults = {n: parse_value(p["default"]) for n, p in declared_parameters(LM).items()}
    cfg = steps.live_migration_config(**{k: defaults[k] for k in steps.LIVE_MIGRATION_PARAMETERS})
    assert cfg.workload.clients == 4 and cfg.slo.max_failed_ops == 0 and cfg.slo.max_lost_writes == 0


@pytest.mark.parametrize("params, msg", [
    ({"colour": "red"}, "parameter 'colour': 10-live-migration.ipynb has no such parameter"),
    ({"clients": "four"}, "parameter 'clients': expected int"),
    ({"auto_converge": 1}, "parameter 'auto_converge': expected bool"),
    ({"max_blackout_ms": "fast"}, "parameter 'max_blackout_ms': expected float"),
])
def test_bad_parameters_are_refused(params, msg):
    with pytest.raises(UsageError, match=msg):
        validate_parameters(LM, params)


@pytest.mark.parametrize("kw, msg", [
    ({"plan": "warp"}, "plan: unknown plan"),
    ({"plan": "single", "clients": 0}, "clients"),
    ({"plan": "single", "read_fraction": 1.5}, "read_fraction"),
    ({"plan": "single", "parallel_connections": 1}, "parallel_connections"),
    ({"plan": "single", "max_blackout_ms": -1}, "max_blackout_ms"),
    ({"plan": "single", "database": "oracle"}, "database: 'oracle' is not a known profile"),
])
def test_bad_values_name_the_field(kw, msg):
    with pytest.raises(UsageError, match=msg):
        steps.live_migration_config(**kw)


def test_every_database_profile_is_a_valid_parameter():
    for db in ("postgresql", "mariadb", "sqlserver"):  # sqlserver: a remote cluster's VM
        assert steps.live_migration_config(plan="single", database=db).parameters["database"] == db


def test_parse_value():
    assert parse_value("8") == 8 and parse_value("0.5") == 0.5 and parse_value("True") is True
    assert parse_value("ping-pong") == "ping-pong"


def test_backup_runbook_parameters_match_and_validate():
    nb = RUNBOOKS / "20-backup-restore.ipynb"
    assert tuple(declared_parameters(nb)) == steps.BACKUP_RESTORE_PARAMETERS
    defaults = {n: parse_value(p["default"]) for n, p in declared_parameters(nb).items()}
    cfg = steps.backup_restore_config(**defaults)
    assert cfg.slo.max_lost_writes == 0
    with pytest.raises(UsageError, match="between_s: must not be negative"):
        steps.backup_restore_config(**{**defaults, "between_s": -1})
    with pytest.raises(UsageError, match="vm name 'Bad Name'"):
        steps.backup_restore_config(**{**defaults, "restore_name": "Bad Name"})


def test_dynamic_runbook_parameters_match_and_validate():
    nb = RUNBOOKS / "30-dynamic-resources.ipynb"
    assert tuple(declared_parameters(nb)) == steps.DYNAMIC_PARAMETERS
    defaults = {n: parse_value(p["default"]) for n, p in declared_parameters(nb).items()}
    cfg = steps.dynamic_config(**defaults)
    assert cfg.rules[0].threshold == 60.0 and cfg.policy.mode == "automatic"
    with pytest.raises(UsageError, match="mode"):
        steps.dynamic_config(**{**defaults, "mode": "sometimes"})
    with pytest.raises(UsageError, match="threshold"):
        steps.dynamic_config(**{**defaults, "threshold": 0})
    with pytest.raises(UsageError, match="hog: must be another VM"):
        steps.dynamic_config(**{**defaults, "hog": "sql1"})


def test_fault_matrix_parameters_match_and_validate():
    nb = RUNBOOKS / "40-fault-matrix.ipynb"
    assert tuple(declared_parameters(nb)) == steps.FAULT_MATRIX_PARAMETERS
    defaults = {n: parse_value(p["default"]) for n, p in declared_parameters(nb).items()}
    cfg = steps.fault_matrix_config(**defaults)
    assert cfg.faults == ["abort-migration", "kill-dest-libvirtd", "kill-dest-qemu", "cut-migration-link",
                          "agent-hang-during-freeze", "backup-storage-full", "kill-db-sessions"]
    with pytest.raises(UsageError, match="faults: unknown"):
        steps.fault_matrix_config(**{**defaults, "faults": ["meteor"]})
    with pytest.raises(UsageError, match="at least one fault"):
        steps.fault_matrix_config(**{**defaults, "faults": []})
