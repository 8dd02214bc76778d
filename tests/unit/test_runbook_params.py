"""Runbook parameters: one model per runbook (availlab.scenarios.params) gives the list, the types, the
defaults and the checks; `-p` values and the notebooks' parameters cells derive from it."""

import json
from pathlib import Path

import pytest

from availlab.errors import UsageError
from availlab.scenarios import cells, params
from availlab.scenarios.runbook import declared_parameters, parse_value, validate_parameters

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
LM = RUNBOOKS / "10-live-migration.ipynb"


def _cell(nb: Path) -> str:
    doc = json.loads(nb.read_text())
    return "".join(next(c for c in doc["cells"] if "parameters" in c["metadata"].get("tags", []))["source"])


@pytest.mark.parametrize("stem", sorted(params.RUNBOOKS))
def test_each_runbook_has_a_model_and_its_parameters_cell_is_written_from_it(stem):
    """Not a second list kept by hand: the cell is generated (python -m availlab.scenarios.cells --write)."""
    model = params.RUNBOOKS[stem]
    assert _cell(RUNBOOKS / f"{stem}.ipynb") == cells.parameters_cell(model), \
        f"{stem}: run `python -m availlab.scenarios.cells --write`"
    # papermill reads the same names, in the cell's order, each typed
    declared = declared_parameters(RUNBOOKS / f"{stem}.ipynb")
    assert set(declared) == set(model.model_fields)
    assert all(p["inferred_type_name"] != "None" for p in declared.values())


def test_every_notebook_in_runbooks_has_a_model():
    assert {nb.stem for nb in RUNBOOKS.glob("*.ipynb")} == set(params.RUNBOOKS)


def test_notebooks_pass_config_only_after_it_is_built():
    """Every cell after the config cell reads config.X, never a raw parameter global."""
    for stem, model in params.RUNBOOKS.items():
        doc = json.loads((RUNBOOKS / f"{stem}.ipynb").read_text())
        code = ["".join(c["source"]) for c in doc["cells"] if c["cell_type"] == "code"
                and "parameters" not in c["metadata"].get("tags", [])]
        import ast

        for src in code:
            loads = {n.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert not loads & set(model.model_fields), f"{stem}: a cell reads {loads & set(model.model_fields)}"


def test_defaults_make_a_valid_config():
    cfg = params.LiveMigration()
    assert cfg.workload.clients == 4 and cfg.slo.max_failed_ops == 0 and cfg.slo.max_lost_writes == 0
    assert cfg.tuning.timeout_s == 300.0  # migration_timeout_s
    assert params.BackupRestore().slo.max_blackout_ms == 500.0  # docs/slo.md
    d = params.DynamicResources()
    assert d.rules[0].threshold == 60.0 and d.policy.mode == "automatic" and d.policy.cooldown_s == 60.0
    assert params.FaultMatrix().faults[0] == "abort-migration" and len(params.FaultMatrix().faults) == 7


@pytest.mark.parametrize("given, msg", [
    ({"colour": "red"}, "parameter 'colour': 10-live-migration.ipynb has no such parameter"),
    ({"clients": "four"}, "clients: Input should be a valid integer"),
    ({"auto_converge": "perhaps"}, "auto_converge: Input should be a valid boolean"),
    ({"max_blackout_ms": "fast"}, "max_blackout_ms: Input should be a valid number"),
    ({"plan": "warp"}, "plan: Input should be 'single', 'ping-pong', 'round-robin' or 'drain'"),
    ({"clients": 0}, "clients"),
    ({"read_fraction": 1.5}, "read_fraction"),
    ({"parallel_connections": 1}, "parallel_connections"),
    ({"max_blackout_ms": -1}, "max_blackout_ms"),
    ({"warmup_s": -1}, "warmup_s: Input should be greater than or equal to 0"),
    ({"dirty_memory_mib": 5000}, "dirty_memory_mib"),
    ({"database": "oracle"}, "database: 'oracle' is not a known profile"),
    ({"lab": "Bad Lab"}, "parameter 'lab'"),
    ({"migrations": True}, "migrations: a number, not True"),
    ({"max_blackout_ms": False}, "max_blackout_ms: a number, not False"),
])
def test_bad_parameters_are_refused_naming_the_parameter(given, msg):
    with pytest.raises(UsageError, match=msg):
        validate_parameters(LM, given)


def test_values_are_given_on_as_the_model_reads_them():
    """`-p auto_converge true` is a bool in the notebook, as people type it."""
    assert validate_parameters(LM, {"auto_converge": "true", "clients": 8.0, "postcopy": 1}) == \
        {"auto_converge": True, "clients": 8, "postcopy": True}


def test_every_database_profile_is_a_valid_parameter():
    for db in ("postgresql", "mariadb", "sqlserver"):  # sqlserver: a remote cluster's VM
        assert params.LiveMigration.parse({"database": db}).parameters["database"] == db


def test_parse_value():
    assert parse_value("8") == 8 and parse_value("0.5") == 0.5 and parse_value("True") is True
    assert parse_value("ping-pong") == "ping-pong"


def test_backup_runbook_parameters_validate():
    with pytest.raises(UsageError, match="between_s"):
        params.BackupRestore.parse({"between_s": -1})
    with pytest.raises(UsageError, match="vm name 'Bad Name'"):
        params.BackupRestore.parse({"restore_name": "Bad Name"})
    with pytest.raises(UsageError, match="restore_name.*a drill restores beside the VM"):
        params.BackupRestore.parse({"drill": True, "vm": "sql1", "restore_name": "sql1"})
    assert params.BackupRestore.parse({"drill": True, "restore_name": "other"}).restore_name == "other"


def test_dynamic_runbook_parameters_validate():
    with pytest.raises(UsageError, match="mode"):
        params.DynamicResources.parse({"mode": "sometimes"})
    with pytest.raises(UsageError, match="threshold"):
        params.DynamicResources.parse({"threshold": 0})
    with pytest.raises(UsageError, match="hog: must be another VM"):
        params.DynamicResources.parse({"hog": "sql1"})
    with pytest.raises(UsageError, match="interval_s"):  # the controller's own limits, before the lab
        params.DynamicResources.parse({"interval_s": 0.1})
    with pytest.raises(UsageError, match="'cooldown_s': 30-dynamic-resources.ipynb has no such parameter.*tip_cooldown_s"):
        params.DynamicResources.parse({"cooldown_s": 0.0})


def test_fault_matrix_parameters_validate():
    with pytest.raises(UsageError, match="faults: unknown"):
        params.FaultMatrix.parse({"faults": ["meteor"]})
    with pytest.raises(UsageError, match="at least one fault"):
        params.FaultMatrix.parse({"faults": []})


def test_a_notebook_of_ones_own_is_checked_by_its_cell(tmp_path):
    nb = json.loads(LM.read_text())
    mine = tmp_path / "my-runbook.ipynb"
    mine.write_text(json.dumps(nb))
    with pytest.raises(UsageError, match="parameter 'clients': expected int"):
        validate_parameters(mine, {"clients": "four"})
    assert validate_parameters(mine, {"clients": 8}) == {"clients": 8}


def test_the_runbook_facing_api_says_why():
    """Every public function and class a runbook cell calls has a docstring."""
    import ast

    lib = Path(__file__).resolve().parents[2] / "lib" / "availlab" / "scenarios"
    missing = []
    for mod in ("steps", "lab_view", "run", "dr", "dynamic", "matrix", "soak", "params", "runbook"):
        for node in ast.parse((lib / f"{mod}.py").read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_") \
                    and not ast.get_docstring(node) and node.name not in ("VerdictError",):
                missing.append(f"{mod}.{node.name}")
    assert not missing, missing


def test_scenario_steps_take_the_lab_loaded_at_the_edge():
    """No step re-reads the lab by name: state.json is read by ensure_lab / Lab.load, and again
    only by Lab.refresh after a step that changed the lab."""
    lib = Path(__file__).resolve().parents[2] / "lib" / "availlab" / "scenarios"
    # runbook.py is `availlab run`'s edge: its preflight reads whether the lab is up, before papermill
    found = [f"{p.name}:{i}" for p in sorted(lib.glob("*.py"))
             if p.name not in ("lab_view.py", "dynamic.py", "runbook.py")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if "state.require_up(" in line or "state.load(" in line and "def " not in line]
    # steps.ensure_lab is the edge: it reads whether the lab is up at all
    assert found == ["steps.py:" + str(next(i for i, line in enumerate(
        (lib / "steps.py").read_text().splitlines(), 1) if "state.load(" in line))]


def test_the_backup_runbook_takes_the_databases_it_can_dump():
    assert params.BackupRestore.parse({"database": "mariadb"}).database == "mariadb"
    with pytest.raises(UsageError, match="database: the runbook verifies the database's own dump"):
        params.BackupRestore.parse({"database": "sqlserver"})  # a profile, but no dump tool here
    assert params.LiveMigration.parse({"database": "sqlserver"}).database == "sqlserver"
    for model in (params.BackupRestore, params.LiveMigration, params.FaultMatrix):
        with pytest.raises(UsageError, match="database: 'oracle' is not a known profile"):
            model.parse({"database": "oracle"})


def test_the_names_a_backup_run_restores_under_are_checked_before_it_starts():
    long_vm = "a" * 26  # fits (31 at most), but "<vm>-drill" and "<vm>-instant" do not
    assert params.BackupRestore.parse({"vm": long_vm, "instant_restore": False}).restored_names() == ("", "")
    with pytest.raises(UsageError, match=f"vm: the run would restore it as '{long_vm}-instant'"):
        params.BackupRestore.parse({"vm": long_vm})
    with pytest.raises(UsageError, match=f"'{long_vm}-drill'"):
        params.BackupRestore.parse({"vm": long_vm, "drill": True, "instant_restore": False})
    assert params.BackupRestore.parse({"drill": True}).restored_names() == ("sql1-drill", "sql1-drill-instant")


def test_a_drill_replaces_only_a_leftover_restore_of_its_own_name(monkeypatch):
    from types import SimpleNamespace

    from availlab.scenarios import dr

    monkeypatch.setattr(dr.providers, "running_host", lambda st, vm: "h1")

    def lab(**vms):
        return SimpleNamespace(st=SimpleNamespace(vms={k: SimpleNamespace(restored_from=v) for k, v in vms.items()}))

    drill = params.BackupRestore.parse({"drill": True})
    assert dr.restore_names(lab(), drill) == dr.RestoreAs("sql1-drill", True, "sql1-drill-instant")
    assert dr.restore_names(lab(**{"sql1-drill": "sql1-2026-full"}), drill).replace is True
    with pytest.raises(UsageError, match="VM 'sql1-drill' exists and is not a restore"):
        dr.restore_names(lab(**{"sql1-drill": ""}), drill)  # made by `vm create`: never replaced
    named = params.BackupRestore.parse({"drill": True, "restore_name": "mine"})
    with pytest.raises(UsageError, match="VM 'mine' exists: the run will not replace it"):
        dr.restore_names(lab(mine="sql1-2026-full"), named)  # a name the user chose is never replaced
    # a disaster restores under the VM's own name: the VM exists now, and the disaster takes it
    assert dr.restore_names(lab(sql1=""), params.BackupRestore.parse({})).name == ""
    # the host the VM runs on is lost in a disaster, and keeps the original in a drill: refused now
    for drills in (False, True):
        with pytest.raises(UsageError, match="restore_host: 'h1' is where sql1 runs"):
            dr.restore_names(lab(), params.BackupRestore.parse({"restore_host": "h1", "drill": drills}))


HOST_PARAMS = [(stem, f) for stem, m in sorted(params.RUNBOOKS.items()) for f in m.HOST_FIELDS]


@pytest.mark.parametrize("stem, field", HOST_PARAMS)
def test_every_host_parameter_is_checked_against_the_lab_before_anything_changes(stem, field, monkeypatch):
    """Issue 28: runbook 20 with `-p restore_host h9` once failed only after it had destroyed the
    VM. Every parameter naming a host is checked in the preflight: by `availlab run` before
    papermill when the lab is up, and by the notebook's first step (steps.prepare_lab)."""
    from availlab.lab import state
    from availlab.lab.state import HostState, LabState
    from availlab.scenarios import steps

    model = params.RUNBOOKS[stem]
    config = model.parse({field: "h9"})
    with pytest.raises(UsageError, match=f"parameter '{field}': 'h9' is not a host of lab 'default'.*h1, h2"):
        config.preflight(["h1", "h2"])
    model.parse({field: "h2"}).preflight(["h1", "h2"])

    up = LabState(lab="default", status="up", topology={},
                  hosts={h: HostState(h, "", "", "", "") for h in ("h1", "h2")})
    monkeypatch.setattr(state, "load", lambda lab: up)
    with pytest.raises(UsageError, match=f"'{field}'"):
        validate_parameters(RUNBOOKS / f"{stem}.ipynb", {field: "h9"})

    class _Lab:
        st = up

    monkeypatch.setattr(steps, "ensure_lab", lambda name, hosts: _Lab())
    with pytest.raises(UsageError, match=f"'{field}'"):
        steps.prepare_lab(config)


def test_every_runbook_runs_its_preflight_as_its_lab_step():
    for stem in params.RUNBOOKS:
        src = (RUNBOOKS / f"{stem}.ipynb").read_text()
        # a watch brings nothing up: its lab step only loads the lab and runs the preflight
        step = "steps.observed_lab(config)" if stem == "50-watch" else "steps.prepare_lab(config)"
        assert step in src and "steps.ensure_lab(" not in src, stem


def test_every_runbook_is_judged_by_its_models_one_judge():
    """Issue 29: five per-scenario check() wrappers with four signatures; an interrupted run went
    through the model's judge, a finished one through the wrapper. Now both use the model's."""
    for stem in params.RUNBOOKS:
        src = (RUNBOOKS / f"{stem}.ipynb").read_text()
        if "results =" in src:
            assert "results = steps.judge(run, config)" in src and ".check(run" not in src, stem
            assert "steps.write_report(run, results)" in src, stem  # the SLO is the one results carry


def test_a_lab_that_is_not_up_is_built_only_when_told_how(monkeypatch):
    """Issue 28: `-p lab prod` may name a remote cluster that is not up yet; `availlab run` builds
    a local lab of another name than `default` only with `-p hosts N`."""
    from availlab.lab import state

    monkeypatch.setattr(state, "load", lambda lab: None)
    with pytest.raises(UsageError, match=r"lab 'prod' is not up.*-p hosts N"):
        validate_parameters(LM, {"lab": "prod"})
    assert validate_parameters(LM, {"lab": "prod", "hosts": 3}) == {"lab": "prod", "hosts": 3}
    assert validate_parameters(LM, {"lab": "default"}) == {"lab": "default"}


def test_a_runbooks_slo_fields_are_the_slos():
    """Issue 29: the SLO's fields were declared again, by hand, in four runbook models. Each is
    now made from checks.core.SLO (slo_field): the same name, its meaning, said for the runbook."""
    from availlab.checks import SLO

    for stem, model in params.RUNBOOKS.items():
        for name in set(model.model_fields) & set(SLO.model_fields):
            f = model.model_fields[name]
            assert f.description.startswith("SLO"), (stem, name)
            assert model.parse({}).slo.model_dump()[name] == f.default, (stem, name)  # the model's SLO is built from it
