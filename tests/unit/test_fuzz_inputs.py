"""No input, however odd, gives a traceback: topology files and runbook parameters either parse
or raise one UsageError that names a field (fuzzed with hypothesis)."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from availlab.errors import UsageError
from availlab.lab.topology import RemoteTopology, Topology, parse_topology
from availlab.scenarios.params import DynamicResources, LiveMigration
from availlab.scenarios.runbook import validate_parameters

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"

scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)
host = st.fixed_dictionaries({}, optional={"name": scalars | st.sampled_from(["h1", "h2", "client"]),
                                           "cores": scalars, "memory_mib": scalars,
                                           "site": scalars | st.sampled_from(["primary", "dr"])})
topologies = st.fixed_dictionaries({}, optional={
    "name": scalars, "accel": scalars | st.sampled_from(["auto", "tcg", "kvm"]),
    "hosts": st.lists(host, max_size=18) | values, "network": st.dictionaries(st.sampled_from(["cidr", "x"]), scalars),
    "storage": values, "vm": values, "extra": values,
    "kind": scalars | st.sampled_from(["local", "remote"]), "vms": values, "client_namespace": scalars})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(topologies, values))
def test_topology_parser_never_tracebacks(data):
    try:
        assert isinstance(parse_topology(data, "fuzz.yaml"), (Topology, RemoteTopology))
    except UsageError as exc:
        assert str(exc).startswith("invalid topology fuzz.yaml") and "\n  " in str(exc) or "mapping" in str(exc)


@FUZZ
@given(st.dictionaries(st.sampled_from(list(LiveMigration.model_fields) + ["bogus", ""]), scalars, max_size=8))
def test_runbook_parameters_never_traceback(params):
    nb = RUNBOOKS / "10-live-migration.ipynb"
    try:
        validate_parameters(nb, params)
    except UsageError as exc:
        assert ":" in str(exc)  # names the parameter or field


@FUZZ
@given(st.dictionaries(st.sampled_from(list(DynamicResources.model_fields)), scalars, max_size=8))
def test_dynamic_parameters_never_traceback(params):
    try:
        validate_parameters(RUNBOOKS / "30-dynamic-resources.ipynb", params)
    except UsageError:
        pass
